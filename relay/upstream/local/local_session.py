"""Sans-I/O core of the local Realtime server: one connection's session, conversation,
input audio buffer, turn detection and responses (answers and function calls).

Feed it client messages with :meth:`LocalSession.receive_message` (or already parsed events
with :meth:`LocalSession.receive_event`); each call returns the server events to send, in
order. Response audio is pulled separately with :meth:`LocalSession.next_response_chunk`,
so the driver alone decides the pacing. Speech work (recognizing a turn's words, speaking
the assistant's reply) is asked for with jobs from :meth:`LocalSession.take_jobs`, which
the driver runs where they cannot stall anything and hands back. Nothing here blocks,
sleeps or touches a socket::

    session = LocalSession()
    send(session.start())                      # session.created
    send(session.receive_message(text))        # for every client message
    for job in session.take_jobs():            # after every call into the session
        run(job) then send(session.transcription_done(job, words))   # or synthesis_done...
    while (chunk := session.next_response_chunk()) is not None:
        send(chunk.events)                     # then wait chunk.audio_ms / speed
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...errors import InvalidRequest, RelayError
from ...protocol.energy_vad import EnergyVad, SpeechStarted, SpeechStopped, VadEvent
from ...protocol.events import Event, error_event, parse_event, random_id
from ...protocol.realtime.session_config import (
    DEFAULT_MODEL,
    DEFAULT_TRANSCRIPTION_MODEL,
    INCLUDE_LOGPROBS,
    PCM24K,
    TRANSCRIPTION,
    Session,
    default_session,
    default_transcription_session,
    named_type,
)
from .. import LOCAL_MODES, LocalMode
from .assistant import (
    SpeechJob,
    Synthesize,
    Transcribe,
    reply,
    transcription_events,
    transcription_failed_event,
    transcription_model,
)
from .buffer import InputBuffer
from .conversation import (
    BYTES_PER_MS,
    Conversation,
    Item,
    decode_audio,
    item_from_client,
    latest_user_audio,
    new_item_id,
    user_audio_item,
)
from .denoise import NoiseReducer, reducer_for
from .event_shapes import check_event
from .field_checks import check_response
from .idle_clock import IdleClock
from .mcp_catalog import McpCatalog, check_approval
from .mcp_responses import ApprovalResponse, McpCallResponse
from .mcp_tools import (
    CallMcpTool,
    ListMcpTools,
    McpJob,
    McpOutcome,
    json_object,
    without_credentials,
)
from .response import (
    BEEP_TRANSCRIPT,
    IDLE_PROMPT,
    TOOL_TONE_HZ,
    BaseResponse,
    FunctionCallResponse,
    PendingResponse,
    Response,
    ResponseChunk,
    ResponseOptions,
    ResponsePlan,
    beep,
    change_speed,
    describe_parrot,
    server_event,
)
from .session_update import (
    TurnDetection,
    apply_transcription_update,
    apply_update,
    is_pcm24k,
    turn_detection,
)
from .synthesizer import espeak_voice, words_per_minute
from .tools import (
    McpApproval,
    McpToolCall,
    Step,
    ToolCall,
    ToolReport,
    call_names,
    check_output,
    check_tools,
    choose,
    latest_user_message,
)
from .truncation import fit_context

logger = logging.getLogger(__name__)


#: The hosted service refuses to commit less audio than this.
MIN_COMMIT_MS = 100

Handler = Callable[[Event], list[Event]]
#: Work the session asks the driver to do off its loop: speech, and MCP requests.
Job = SpeechJob | McpJob


class LocalSession:
    """One connection's Realtime session: an assistant, a parrot or an echo that needs no
    model.

    ``mode="assistant"`` answers each user turn with its words, spoken ("You said: ..."):
    it has each user audio item transcribed (:class:`Transcribe` jobs), announces its
    response at once and speaks the reply once it is synthesized (:class:`Synthesize`).
    ``mode="parrot"`` answers each user turn by playing its audio back; ``mode="echo"``
    turns every ``input_audio_buffer.append`` straight into an output delta of one
    long-lived response (for measuring the relay's own latency). ``delta_ms`` is the length
    of each audio delta.

    In assistant and parrot modes a response may call a function tool instead, by the
    rules of :mod:`.tools`: a named ``tool_choice`` calls that function, ``"required"`` the
    first function tool, ``"auto"`` one that the user's latest message names (in text, or
    in its transcript), ``"none"`` nothing. Once the client adds the call's
    ``function_call_output``, the next response says it used the tool, output included
    ("I used get_weather: ..."): the assistant speaks it, the parrot reads it over a tone.
    Any mode but echo transcribes committed turns when ``audio.input.transcription`` asks.

    MCP tools (:mod:`.mcp_tools`) are listed and called through jobs too
    (:class:`ListMcpTools`, :class:`CallMcpTool`), on the servers ``mcp_urls`` (URL
    prefixes, ``*`` any) allows; a session naming another is refused.

    A transcription session (``intent="transcription"``, or a ``session.update`` whose
    ``session.type`` is ``"transcription"``) is the same in every mode: its turns are
    detected, committed and transcribed (deltas, then ``completed``; logprobs when
    ``include`` asks), and nothing answers: ``response.*`` events are refused.
    """

    def __init__(self, *, mode: LocalMode = "parrot", model: str = DEFAULT_MODEL,
                 delta_ms: int = 100, mcp_urls: Sequence[str] = (),
                 intent: str | None = None) -> None:
        if mode not in LOCAL_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode: LocalMode = mode
        self.delta_ms = delta_ms
        self.config: Session = (default_transcription_session() if intent == TRANSCRIPTION
                                else default_session(model))
        self.conversation = Conversation()
        self.conversation_id = random_id("conv_")
        self._buffer = InputBuffer()
        self._vad: EnergyVad | None = None
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0
        self._response: BaseResponse | None = None
        #: A response announced whose output awaits speech work (assistant mode).
        self._preparing: PendingResponse | None = None
        self._queued_response = False
        self._jobs: list[Job] = []
        self._mcp_urls = tuple(mcp_urls)
        self._mcp = McpCatalog()
        #: Input tokens of the context the response about to open saw (see _proceed).
        self._context_tokens: tuple[int, int] | None = None
        #: ``audio.input.noise_reduction``'s filter, when it is on.
        self._denoiser: NoiseReducer | None = None
        #: User items whose transcription is under way.
        self._transcribing: set[str] = set()
        self._idle = IdleClock()
        self._sync_vad()
        self._handlers: dict[str, Handler] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit_buffer,
            "input_audio_buffer.clear": self._clear_buffer,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.truncate": self._item_truncate,
            "conversation.item.delete": self._item_delete,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    # -- the driver's interface ----------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id (``sess_...``), for logs."""
        return str(self.config["id"])

    @property
    def response_active(self) -> bool:
        """Whether a response is in progress (being prepared, or under way)."""
        return self._response is not None or self._preparing is not None

    @property
    def has_pending_chunk(self) -> bool:
        """Whether :meth:`next_response_chunk` has something to hand out."""
        return self._response is not None and self._response.has_more()

    def start(self) -> list[Event]:
        """The events to send as soon as the connection opens: ``session.created``."""
        return [server_event("session.created", session=without_credentials(self.config))]

    def receive_message(self, data: str | bytes) -> list[Event]:
        """Handle one raw WebSocket message; malformed JSON becomes an ``error`` event."""
        try:
            event = parse_event(data)
        except RelayError as exc:
            return [error_event(exc)]
        return self.receive_event(event)

    def receive_event(self, event: Mapping[str, Any]) -> list[Event]:
        """Handle one client event. Errors become ``error`` events naming its event_id,
        and leave the session as it was; a field of the wrong JSON type is one
        (:mod:`.event_shapes`)."""
        event = dict(event)
        client_id = event.get("event_id")
        client_id = client_id if isinstance(client_id, str) else None
        kind = event.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        try:
            if self.transcribing_only and isinstance(kind, str) and kind.startswith(
                    ("response.", "output_audio_buffer.")):
                raise InvalidRequest(
                    f"{kind} is not supported in a transcription session: it transcribes "
                    "the input audio and creates no responses.",
                    code="invalid_value", param="type")
            if handler is None:
                raise InvalidRequest(
                    f"Invalid value: '{kind}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in self._handlers) + ".",
                    code="invalid_value", param="type",
                )
            check_event(event)
            return handler(event)
        except RelayError as exc:
            return [error_event(exc, client_id)]
        except Exception:
            # A bug of this server's, not the client's fault: the event is refused and
            # the session (and the call on it) goes on.
            logger.exception("local realtime %s: handling %s failed", self.id, kind)
            return [error_event(RelayError(f"The server failed to handle {kind}.",
                                           code="server_error"), client_id)]

    def next_response_chunk(self) -> ResponseChunk | None:
        """The next chunk of the response in progress, or None when there is nothing to
        send. The driver sends ``chunk.events`` and waits ``chunk.audio_ms / speed``."""
        response = self._response
        if response is None or not response.has_more():
            return None
        chunk = response.next_chunk(self._previous_of(response))
        self._idle.played(chunk.response_id, chunk.audio_ms, self._buffer.end // BYTES_PER_MS)
        if chunk.final:
            self._response = None
            chunk.events.extend(self._start_queued())
        return chunk

    def close(self) -> list[Event]:
        """Events that end the session cleanly: an open echo response completes, any other
        response in progress is cancelled."""
        if self.mode == "echo" and self._response is not None:
            return self._finish("completed", None)
        if not self.response_active:
            return []
        return self._cancel("client_cancelled")

    # -- speech work --------------------------------------------------------------------

    def take_jobs(self) -> list[Job]:
        """The speech work asked for since the last call, in order. The driver runs each
        off its event loop and hands the result back to :meth:`transcription_done` /
        :meth:`transcription_failed` or :meth:`synthesis_done` / :meth:`synthesis_failed`."""
        jobs, self._jobs = self._jobs, []
        return jobs

    def transcription_done(self, job: Transcribe, transcript: str,
                           scored: list[tuple[str, float]] | None = None) -> list[Event]:
        """A user item's words are known (``scored``: with their log probabilities, when
        the job asked for them): record them on the item, send the transcription events
        (when the session asked for them), and carry on a response waiting for them."""
        self._transcribing.discard(job.item_id)
        item = self.conversation.get(job.item_id)
        events: list[Event] = []
        if item is not None:
            item.set_transcript(job.content_index, transcript)
            if job.model is not None:
                events += transcription_events(job, transcript, len(job.audio) // BYTES_PER_MS,
                                               scored)
        return events + self._advance()

    def transcription_failed(self, job: Transcribe, message: str) -> list[Event]:
        """A user item could not be transcribed: say so (when the session asked for
        transcription); a response waiting for it answers as to silence."""
        self._transcribing.discard(job.item_id)
        events: list[Event] = []
        if job.model is not None and self.conversation.get(job.item_id) is not None:
            events.append(transcription_failed_event(job, message))
        return events + self._advance()

    def synthesis_done(self, job: Synthesize, pcm: bytes) -> list[Event]:
        """The reply of a pending response is spoken: open it; :meth:`next_response_chunk`
        hands out its audio from now on. Speech for a response cancelled since is
        dropped."""
        pending = self._preparing
        if pending is None or pending.id != job.response_id:
            return []
        self._preparing = None
        self._context_tokens = pending.context_tokens
        plan = ResponsePlan(pcm, job.text, input_audio_ms=pending.input_audio_ms)
        return self._open(Response(plan, pending.options, delta_ms=self.delta_ms,
                                   response_id=pending.id), announced=True)

    def synthesis_failed(self, job: Synthesize, message: str) -> list[Event]:
        """The reply could not be spoken: the pending response fails, saying why."""
        pending = self._preparing
        if pending is None or pending.id != job.response_id:
            return []
        self._preparing = None
        logger.warning("session %s: response %s failed: %s", self.id, pending.id, message)
        error = {"type": "server_error", "code": "speech_failed", "message": message}
        events = pending.finish("failed", {"type": "failed", "error": error})
        return events + self._start_queued()

    # -- MCP work -----------------------------------------------------------------------

    def mcp_tools_listed(self, job: ListMcpTools, tools: list[dict[str, Any]]) -> list[Event]:
        """An MCP server's tools are known: show them, and carry on a response that
        waited for them."""
        return self._mcp.done(job, tools, self.conversation) + self._advance()

    def mcp_list_failed(self, job: ListMcpTools, error: dict[str, Any]) -> list[Event]:
        """An MCP server could not be listed: say so; a response that waited goes on
        without its tools."""
        logger.info("session %s: MCP server %r not listed: %s", self.id, job.server.label,
                    error.get("message"))
        return self._mcp.failed(job, error) + self._advance()

    def mcp_call_done(self, job: CallMcpTool, outcome: McpOutcome) -> list[Event]:
        """An MCP tool answered: close its call's response, then answer with what it
        gave in a response of its own. An answer for a response cancelled since is
        dropped."""
        response = self._response
        if not isinstance(response, McpCallResponse) or response.id != job.response_id:
            return []
        self._response = None
        events = response.finish_call(outcome, self._previous_of(response))
        return events + self._follow_up()

    def _follow_up(self) -> list[Event]:
        """After an MCP call: the response that reports it (or a queued turn's)."""
        self._queued_response = False
        return self._start_response(None)

    def _request_transcript(self, item: Item) -> None:
        """Ask for the words of a user item's audio, when anyone wants them: the session
        (``audio.input.transcription``) or the assistant, which answers them."""
        model = transcription_model(self.config)
        if model is None and self.transcribing_only:
            model = DEFAULT_TRANSCRIPTION_MODEL  # transcribing is all such a session does
        if model is None and self.mode != "assistant":
            return
        logprobs = INCLUDE_LOGPROBS in (self.config.get("include") or ())
        self._transcribing.add(item.id)
        self._jobs.append(Transcribe(item.id, item.audio, model, item.audio_part_index(),
                                     logprobs=logprobs))

    @property
    def transcribing_only(self) -> bool:
        """Whether this is a transcription session (it transcribes, never answers)."""
        return self.config.get("type") == TRANSCRIPTION

    # -- session ------------------------------------------------------------------------

    def _session_update(self, event: Event) -> list[Event]:
        update = event.get("session")
        if isinstance(update, Mapping) and (named_type(update) == TRANSCRIPTION or (
                self.transcribing_only and "type" not in update)):
            updated = apply_transcription_update(self.config, {**update, "type": TRANSCRIPTION})
        elif self.transcribing_only and isinstance(update, Mapping):
            raise InvalidRequest(
                "This is a transcription session: session.type must be 'transcription'.",
                code="invalid_value", param="session.type")
        else:
            updated = apply_update(self.config, update, self._mcp_urls)
        before = turn_detection(self.config)
        noise = updated["audio"]["input"].get("noise_reduction")
        if noise != self.config["audio"]["input"].get("noise_reduction"):
            self._denoiser = reducer_for(noise)
        self.config = updated
        if turn_detection(updated) != before:
            self._sync_vad()
        events = [server_event("session.updated", session=without_credentials(self.config))]
        return events + self._list_mcp(self.config.get("tools"))

    def _list_mcp(self, tools: Any) -> list[Event]:
        """Start listing the MCP servers among ``tools`` not listed yet (echo mode
        calls no tools, so lists none)."""
        if self.mode == "echo":
            return []
        events, jobs = self._mcp.sync(tools, self.conversation)
        self._jobs += jobs
        return events

    def _turn(self) -> TurnDetection | None:
        if self.transcribing_only:
            turn = turn_detection(self.config)
            # Turns are committed and transcribed; there is nothing to answer or cut off.
            return None if turn is None else dataclasses.replace(
                turn, create_response=False, interrupt_response=False)
        return turn_detection(self.config) if self.mode != "echo" else None

    def _sync_vad(self) -> None:
        """(Re)build the detector at the session's current audio position."""
        turn = self._turn()
        self._speech_item_id = None
        self._idle.reset()
        if turn is None:
            self._vad = None
            return
        end = self._buffer.end
        self._vad = EnergyVad(
            threshold=turn.threshold,
            prefix_padding_ms=turn.prefix_padding_ms,
            silence_duration_ms=turn.silence_duration_ms,
            start_sample=end // 2,
        )
        if end % 2:
            # Half a sample is pending: hand it over so later windows stay aligned.
            self._vad.feed(self._buffer.slice(end - 1, end))

    # -- input audio buffer -------------------------------------------------------------

    def _append(self, event: Event) -> list[Event]:
        encoded = event.get("audio")
        pcm = decode_audio(encoded, "audio")
        if self.mode == "echo" and not self.transcribing_only:
            return self._echo(pcm, str(encoded))
        before_ms = self._buffer.end // BYTES_PER_MS
        if self._denoiser is not None:  # filtered before the VAD and the model, as hosted
            pcm = self._denoiser.process(pcm)
        self._buffer.append(pcm)
        if self._vad is None:
            return []
        events: list[Event] = []
        for found in self._vad.feed(pcm):
            events += self._on_vad(found)
        events += self._check_idle(before_ms)
        if self._vad is not None:
            self._buffer.drop_before(self._vad.retain_from_ms() * BYTES_PER_MS)
        return events

    def _check_idle(self, since_ms: int) -> list[Event]:
        """``server_vad``'s ``idle_timeout_ms``: once the user has been silent that long
        since the last response played out, say so (``input_audio_buffer.timeout_triggered``),
        commit the silent audio as a user turn and answer it, as the hosted service does.
        ``since_ms`` is where the audio just appended began: silence counts from there
        when nothing was being counted."""
        turn = self._turn()
        vad = self._vad
        if turn is None or turn.idle_timeout_ms is None or vad is None:
            return []
        now = self._buffer.end // BYTES_PER_MS
        start = self._idle.due(since_ms=since_ms, now_ms=now, timeout_ms=turn.idle_timeout_ms,
                               busy=self.response_active or vad.in_speech)
        if start is None:
            return []
        item_id = new_item_id()
        audio = self._buffer.slice(start * BYTES_PER_MS, now * BYTES_PER_MS)
        self._buffer.drop_before(now * BYTES_PER_MS)
        self._reset_vad()
        events = [server_event("input_audio_buffer.timeout_triggered", audio_start_ms=start,
                               audio_end_ms=now, item_id=item_id)]
        events += self._commit(item_id, audio)
        return events + self._start_response(None, prompt=IDLE_PROMPT)

    def _on_vad(self, found: VadEvent) -> list[Event]:
        turn = self._turn()
        assert turn is not None
        if isinstance(found, SpeechStarted):
            self._speech_item_id = new_item_id()
            self._speech_start_ms = found.audio_start_ms
            events = [server_event("input_audio_buffer.speech_started",
                             audio_start_ms=found.audio_start_ms, item_id=self._speech_item_id)]
            if self.response_active and turn.interrupt_response:
                events += self._cancel("turn_detected")
            return events
        assert isinstance(found, SpeechStopped)
        item_id = self._speech_item_id or new_item_id()
        self._speech_item_id = None
        events = [server_event("input_audio_buffer.speech_stopped",
                         audio_end_ms=found.audio_end_ms, item_id=item_id)]
        end = found.audio_end_ms * BYTES_PER_MS
        audio = self._buffer.slice(self._speech_start_ms * BYTES_PER_MS, end)
        self._buffer.drop_before(end)
        events += self._commit(item_id, audio)
        if turn.create_response:
            if not self.response_active:
                events += self._start_response(None)
            else:
                self._queued_response = True
        return events

    def _commit_buffer(self, event: Event) -> list[Event]:
        held_ms = len(self._buffer) / BYTES_PER_MS
        if held_ms < MIN_COMMIT_MS:
            raise InvalidRequest(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {held_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        item_id = self._speech_item_id or new_item_id()
        audio = self._buffer.slice(0, self._buffer.end)
        self._buffer.clear()
        self._reset_vad()
        return self._commit(item_id, audio)

    def _clear_buffer(self, event: Event) -> list[Event]:
        self._buffer.clear()
        self._reset_vad()
        return [server_event("input_audio_buffer.cleared")]

    def _reset_vad(self) -> None:
        self._speech_item_id = None
        if self._vad is not None:
            self._vad.reset()

    def _commit(self, item_id: str, audio: bytes) -> list[Event]:
        previous = self.conversation.last_id()
        item = user_audio_item(item_id, audio)
        self.conversation.insert(item)
        self._request_transcript(item)
        return [
            server_event("input_audio_buffer.committed", previous_item_id=previous,
                         item_id=item_id),
            server_event("conversation.item.added", previous_item_id=previous, item=item.public()),
            server_event("conversation.item.done", previous_item_id=previous, item=item.public()),
        ]

    # -- conversation -------------------------------------------------------------------

    def _item_create(self, event: Event) -> list[Event]:
        item = item_from_client(event.get("item"))
        check_output(item, self.conversation)
        check_approval(item, self.conversation)
        if "previous_item_id" in event:
            previous = self.conversation.insert(item, event["previous_item_id"])
        else:
            previous = self.conversation.insert(item)
        if item.has_input_audio():
            self._request_transcript(item)
        events = [
            server_event("conversation.item.added", previous_item_id=previous, item=item.public()),
            server_event("conversation.item.done", previous_item_id=previous, item=item.public()),
        ]
        if item.data.get("type") == "mcp_approval_response" and self.mode != "echo":
            # The user answered an approval request: the model goes on by itself, as the
            # hosted one does (agents-js sends no response.create after its answer).
            if self.response_active:
                self._queued_response = True
            else:
                events += self._start_response(None)
        return events

    def _item_retrieve(self, event: Event) -> list[Event]:
        item = self._item(event)
        return [server_event("conversation.item.retrieved", item=item.public(with_audio=True))]

    def _item_delete(self, event: Event) -> list[Event]:
        item = self._item(event)
        self.conversation.delete(item.id)
        return [server_event("conversation.item.deleted", item_id=item.id)]

    def _item_truncate(self, event: Event) -> list[Event]:
        item = self._item(event)
        if item.role != "assistant" or not _has_audio(item, self._response):
            raise InvalidRequest("Only assistant messages with audio can be truncated.",
                                 code="invalid_value", param="item_id")
        if event.get("content_index", 0) != 0:
            raise InvalidRequest("Invalid value for 'content_index': the item has one part.",
                                 code="invalid_value", param="content_index")
        end_ms = event.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise InvalidRequest("audio_end_ms must be a non-negative integer",
                                 code="invalid_value", param="audio_end_ms")
        duration = item.audio_ms()
        if end_ms > duration:
            raise InvalidRequest(
                f"Audio content of {duration}ms is already shorter than {end_ms}ms",
                code="invalid_value", param="audio_end_ms",
            )
        events: list[Event] = []
        if self._response is not None and self._response.item is item:
            # Truncating what is still being generated stops the generation first.
            events += self._finish("cancelled", "client_cancelled")
        _truncate(item, end_ms, duration)
        events.append(server_event("conversation.item.truncated", item_id=item.id,
                             content_index=0, audio_end_ms=end_ms))
        return events

    def _item(self, event: Event) -> Item:
        item_id = event.get("item_id")
        item = self.conversation.get(item_id)
        if item is None:
            raise InvalidRequest(f"Item with item_id '{item_id}' not found.",
                                 code="invalid_value", param="item_id")
        return item

    # -- responses ----------------------------------------------------------------------

    def _response_create(self, event: Event) -> list[Event]:
        active = self._preparing or self._response
        if active is not None:
            raise InvalidRequest(
                "Conversation already has an active response in progress: "
                f"{active.id}. Wait until the response is finished before creating "
                "a new one.", code="conversation_already_has_active_response",
            )
        overrides = event.get("response")
        if overrides is not None and not isinstance(overrides, Mapping):
            raise InvalidRequest("response must be an object", code="invalid_type",
                                 param="response")
        if overrides is not None:
            check_response(overrides)
        if self.mode == "echo":
            return self._open_echo()
        return self._start_response(overrides)

    def _response_cancel(self, event: Event) -> list[Event]:
        wanted = event.get("response_id")
        active = self._preparing or self._response
        if active is None or (wanted is not None and wanted != active.id):
            raise InvalidRequest("Cancellation failed: no active response found",
                                 code="response_cancel_not_active")
        return self._cancel("client_cancelled")

    def _start_response(self, overrides: Mapping[str, Any] | None, *,
                        prompt: str | None = None) -> list[Event]:
        """Start a response over the conversation (or ``response.input``); ``prompt``,
        when given, is what it says unless a tool is called (the idle timeout's)."""
        opts = dict(overrides or {})
        options = self._response_options(opts)
        source = self._response_input(opts)
        tools = opts.get("tools", self.config["tools"])
        choice = opts.get("tool_choice", self.config["tool_choice"])
        check_tools(tools, choice, "response", self._mcp_urls)
        events = self._list_mcp(tools)
        latest = latest_user_audio(source)
        pending = PendingResponse(options, source, tools, choice,
                                  input_audio_ms=latest.audio_ms() if latest else 0)
        pending.prompt = prompt
        if self.mode == "assistant" or self._mcp.pending(tools):
            # Announced now; it goes on once its words (or its tools) are known.
            self._preparing = pending
            return events + pending.created() + self._advance()
        return events + self._proceed(pending, announced=False)

    def _response_options(self, opts: Mapping[str, Any]) -> ResponseOptions:
        """The session's response settings under ``response.create``'s, checked."""
        modalities = opts.get("output_modalities", self.config["output_modalities"])
        if modalities not in (["audio"], ["text"]):
            raise InvalidRequest("output_modalities must be ['audio'] or ['text']",
                                 code="invalid_value", param="response.output_modalities")
        conversation = opts.get("conversation", "auto")
        if conversation not in ("auto", "none"):
            raise InvalidRequest("conversation must be 'auto' or 'none'",
                                 code="invalid_value", param="response.conversation")
        output = self.config["audio"]["output"]
        audio_opts = ((opts.get("audio") or {}).get("output") or {})
        if not is_pcm24k(audio_opts.get("format", output["format"])):
            raise InvalidRequest(f"This server only supports audio/pcm at {PCM24K['rate']} Hz.",
                                 code="invalid_value", param="response.audio.output.format")
        return ResponseOptions(
            audio=modalities == ["audio"],
            conversation_id=self.conversation_id if conversation == "auto" else None,
            output_format=dict(PCM24K),
            voice=audio_opts.get("voice", output.get("voice")),
            speed=output.get("speed", 1.0),
            metadata=opts.get("metadata"),
            max_output_tokens=opts.get("max_output_tokens", self.config["max_output_tokens"]),
        )

    def _response_input(self, opts: Mapping[str, Any]) -> list[Item]:
        """The items a response answers: ``response.input`` when given, else the
        conversation. Tool outputs given inline must answer calls known by then."""
        if "input" not in opts:
            return list(self.conversation)
        if not isinstance(opts["input"], list):
            raise InvalidRequest("response.input must be a list", code="invalid_type",
                                 param="response.input")
        source = self.conversation.resolve(opts["input"])
        for index, item in enumerate(source):
            if self.conversation.get(item.id) is not item:
                check_output(item, [*self.conversation, *source[:index]])
        return source

    def _open_echo(self) -> list[Event]:
        """Open the long-lived echo response that appended audio flows into."""
        options = ResponseOptions(
            audio=True, conversation_id=self.conversation_id, output_format=dict(PCM24K),
            voice=self.config["audio"]["output"].get("voice"),
        )
        return self._open(Response(None, options, delta_ms=self.delta_ms))

    def _advance(self) -> list[Event]:
        """Carry the response being prepared as far as it can go: once the words it
        answers are known, call a tool, or say the reply (in text at once; in audio once
        it is synthesized)."""
        pending = self._preparing
        if pending is None or pending.reply is not None:
            return []
        latest = latest_user_message(pending.source)
        if latest is not None and latest.id in self._transcribing:
            return []
        if self._mcp.pending(pending.tools):
            return []
        self._preparing = None
        return self._proceed(pending, announced=True)

    def _proceed(self, pending: PendingResponse, *, announced: bool) -> list[Event]:
        """Open the response ``pending`` stands for, now that all it needs is known:
        call a tool (or ask to), or answer: the parrot at once, the assistant in text at
        once and in audio once its reply is synthesized."""
        context = fit_context(pending.source, self.config, pending.options.max_output_tokens)
        pending.context_tokens = (context.text_tokens, context.audio_tokens)
        if context.overflow:  # truncation "disabled", and the conversation does not fit
            return self._overflow(pending, announced)
        pending.source = context.items
        self._context_tokens = pending.context_tokens
        step = self._choose(pending)
        options, rid = pending.options, pending.id
        opened = self._open_tool_step(step, options, rid, announced)
        if opened is not None:
            return opened
        if self.mode != "assistant":
            if step is None and pending.prompt is not None:
                plan = ResponsePlan(beep(), pending.prompt)
            else:
                plan = _plan(pending.source, step if isinstance(step, ToolReport) else None)
            plan.audio = change_speed(plan.audio, options.speed)
            return self._open(Response(plan, options, delta_ms=self.delta_ms, response_id=rid),
                              announced=announced)
        if isinstance(step, ToolReport):
            text = step.transcript
        else:
            text = pending.prompt if pending.prompt is not None else reply(pending.source)
        if not options.audio:
            plan = ResponsePlan(b"", text, input_audio_ms=pending.input_audio_ms)
            return self._open(Response(plan, options, delta_ms=self.delta_ms, response_id=rid),
                              announced=announced)
        pending.reply = text
        self._preparing = pending
        self._context_tokens = None  # taken from pending when its speech is ready
        self._jobs.append(Synthesize(rid, text, espeak_voice(options.voice),
                                     words_per_minute(options.speed)))
        return [] if announced else pending.created()

    def _overflow(self, pending: PendingResponse, announced: bool) -> list[Event]:
        """Fail a response whose conversation does not fit a window it may not cut."""
        error = {"type": "invalid_request_error", "code": "context_length_exceeded",
                 "message": "The conversation exceeds the model's context window and "
                            "truncation is disabled."}
        events = [] if announced else pending.created()
        events += pending.finish("failed", {"type": "failed", "error": error})
        return events + self._start_queued()

    def _choose(self, pending: PendingResponse) -> Step:
        known = call_names([*self.conversation, *pending.source])
        return choose(pending.source, pending.tools, pending.choice, known,
                      self._mcp.listed(pending.tools))

    def _open_tool_step(self, step: Step, options: ResponseOptions, rid: str,
                        announced: bool) -> list[Event] | None:
        """Open the response of a tool step (a function call, an MCP call or an approval
        request), or None when the step is an answer."""
        if isinstance(step, ToolCall):
            return self._open(FunctionCallResponse(step.name, step.arguments, options,
                                                   response_id=rid), announced=announced)
        if isinstance(step, McpApproval):
            return self._open(ApprovalResponse(step.server, step.name, step.arguments,
                                               options, response_id=rid), announced=announced)
        if not isinstance(step, McpToolCall):
            return None
        call = McpCallResponse(step.server, step.name, step.arguments, options,
                               approval_request_id=step.approval_request_id, response_id=rid)
        events = self._open(call, announced=announced)
        if call.cut:  # max_output_tokens holds not even the arguments: no call is made
            return events + self._finish("incomplete", "max_output_tokens")
        self._jobs.append(CallMcpTool(rid, call.item.id, step.server, step.name,
                                      json_object(step.arguments)))
        return events

    def _open(self, response: BaseResponse, *, announced: bool = False) -> list[Event]:
        response.context_tokens, self._context_tokens = self._context_tokens, None
        previous = self.conversation.last_id()
        if response.in_conversation:
            self.conversation.insert(response.item)
        self._response = response
        logger.debug("session %s: response %s started", self.id, response.id)
        return response.start(previous, announced=announced)

    def _echo(self, pcm: bytes, encoded: str) -> list[Event]:
        events = self._open_echo() if self._response is None else []
        if pcm:
            # In echo mode every response is the open echo response.
            assert isinstance(self._response, Response)
            events.append(self._response.audio_delta(pcm, encoded))
        return events

    def _start_queued(self) -> list[Event]:
        """A turn committed while the last response was under way: answer it now."""
        if not self._queued_response:
            return []
        self._queued_response = False
        return self._start_response(None)

    def _cancel(self, reason: str) -> list[Event]:
        """Cancel the response in progress, prepared or under way."""
        pending = self._preparing
        if pending is None:
            return self._finish("cancelled", reason)
        self._preparing = None
        self._queued_response = False  # as in _finish
        logger.debug("session %s: response %s cancelled", self.id, pending.id)
        return pending.finish("cancelled", {"type": "cancelled", "reason": reason})

    def _finish(self, status: str, reason: str | None) -> list[Event]:
        response = self._response
        assert response is not None
        self._response = None
        if status == "cancelled":
            # A cancelled response takes any answer queued behind it along: the user is
            # talking or the client said stop, and the next turn will be answered anew.
            self._queued_response = False
        logger.debug("session %s: response %s %s", self.id, response.id, status)
        return response.finish(status, reason, self._previous_of(response))

    def _previous_of(self, response: BaseResponse) -> str | None:
        if not response.in_conversation:
            return None
        return self.conversation.previous_id(response.item.id)


def _plan(items: list[Item], report: ToolReport | None) -> ResponsePlan:
    """Report what the tools gave (over a tone), else parrot the user's latest audio, or
    beep when there is none."""
    if report is not None:
        return ResponsePlan(beep(TOOL_TONE_HZ), report.transcript)
    source = latest_user_audio(items)
    if source is None:
        return ResponsePlan(beep(), BEEP_TRANSCRIPT)
    ms = source.audio_ms()
    return ResponsePlan(source.audio, describe_parrot(ms), input_audio_ms=ms)


def _has_audio(item: Item, active: BaseResponse | None) -> bool:
    if active is not None and active.item is item:
        return active.is_audio
    return item.output_bytes > 0 or any(
        isinstance(part, Mapping) and part.get("type") == "output_audio"
        for part in item.data.get("content", [])
    )


def _truncate(item: Item, end_ms: int, duration_ms: int) -> None:
    """Cut an assistant item's audio to ``end_ms`` and its transcript in proportion,
    at a word boundary, so the context holds nothing the user did not hear."""
    item.output_bytes = min(item.output_bytes, end_ms * BYTES_PER_MS)
    for part in item.data.get("content", []):
        if isinstance(part, dict) and isinstance(part.get("transcript"), str):
            text: str = part["transcript"]
            keep = len(text) * end_ms // duration_ms if duration_ms else 0
            cut = text[:keep]
            if keep < len(text) and not text[keep].isspace():
                cut = cut[:cut.rfind(" ")] if " " in cut else ""
            part["transcript"] = cut.rstrip()

