"""Asyncio driver of the local Realtime server: a WebSocket listener that runs one
:class:`~relay.upstream.local.local_session.LocalSession` per connection.

All protocol decisions live in the session; this module only moves messages, paces
response audio and runs the speech work the session asks for. Each connection owns a
writer task (the only sender, so events go out in exactly the order the session produced
them), a pacer task (hands out response chunks at ``speed`` times real time against the
loop's clock) and a task per speech job in flight, all cancelled when it closes.

Speech jobs run in the server's :class:`~.workers.SpeechWorkers` (processes: recognition
holds the GIL for a whole utterance), so no call's audio waits for another's words.
Without the ``speech`` extra, the server says so once, answers as a parrot in place of the
assistant, and a session that asks for transcription gets ``...transcription.failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ...errors import RelayError, SpeechError
from ...protocol.events import Event, dumps, error_event, parse_event
from ...protocol.realtime.session_config import DEFAULT_MODEL
from .. import LOCAL_MODES, LocalMode
from .assistant import Transcribe
from .live import LiveLocalSession
from .local_session import Job, LocalSession
from .mcp_tools import CallMcpTool, ListMcpTools
from .workers import SpeechWorkers, speech_missing

logger = logging.getLogger(__name__)


class _ProbeFilter(logging.Filter):
    """Drops websockets' "opening handshake failed" for a connection closed before it sent
    a request: a TCP health probe (the relay's /readyz probe, a load balancer's), not a
    failure. Logging each one with its traceback stalled this server every probe."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, EOFError):
                return False
            exc = exc.__cause__
        return True


#: The logger websockets reports this server's connections on.
_ws_logger = logging.getLogger(f"{__name__}.websockets")
_ws_logger.addFilter(_ProbeFilter())

#: Largest client message taken (base64 audio appends can be large).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: How long a closing server waits for a connection's last events to go out.
DRAIN_TIMEOUT_S = 1.0


SpeechSource = Callable[[], SpeechWorkers]
#: The path of the GPT-Live face; every other path is the Realtime face.
LIVE_PATH = "/v1/live/sessions"
#: Sees each client event a session receives: (session id, the parsed event).
Observer = Callable[[str, Event], None]


class _Connection:
    """One client connection: its session, its outbox and the tasks that serve it.
    ``speech`` gives the workers that run its speech jobs (or raises SpeechError)."""

    def __init__(self, ws: ServerConnection, session: LocalSession | LiveLocalSession,
                 speed: float,
                 speech: SpeechSource, observer: Observer | None) -> None:
        self._ws = ws
        self._session = session
        self._speed = speed
        self._speech = speech
        self._observer = observer
        self._outbox: asyncio.Queue[Event] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        #: A Live session has closed: the socket closes once its last events are out.
        self._ending = False

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        sid = self._session.id
        logger.info("local realtime %s: connected (%s)", sid, self._ws.request.path
                    if self._ws.request else "?")
        self._pump(self._session.start())
        self._tasks = [
            asyncio.create_task(self._write(), name=f"local-realtime-writer-{sid}"),
            asyncio.create_task(self._pace(), name=f"local-realtime-pacer-{sid}"),
        ]
        try:
            async for message in self._ws:
                self._pump(self._receive(message))
        except ConnectionClosed:
            pass
        finally:
            tasks = [*self._tasks, *self._jobs]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            logger.info("local realtime %s: closed", sid)

    async def shutdown(self) -> None:
        """Server-side close: end the session's open response, flush, then close."""
        self._emit(self._session.close())
        if self._tasks and not self._tasks[0].done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), DRAIN_TIMEOUT_S)
        await self._ws.close(1001, "server shutting down")

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self._outbox.put_nowait(event)

    def _receive(self, message: str | bytes) -> list[Event]:
        if self._observer is None:
            return self._session.receive_message(message)
        try:
            event = parse_event(message)
        except RelayError as exc:
            return [error_event(exc)]
        self._observer(self._session.id, event)
        return self._session.receive_event(event)

    def _pump(self, events: list[Event]) -> None:
        """Send what the session said, start the speech jobs it asked for, and wake the
        pacer if a response has audio to hand out."""
        self._emit(events)
        for job in self._session.take_jobs():
            task = asyncio.create_task(self._run_job(job),
                                       name=f"local-realtime-speech-{self._session.id}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        if self._session.has_pending_chunk:
            self._wake.set()
        if isinstance(self._session, LiveLocalSession) and self._session.finished \
                and not self._ending:
            self._ending = True
            # session.closed is the last event: close once it has gone out.
            self._tasks.append(asyncio.create_task(
                self._close_after_outbox(), name=f"local-live-close-{self._session.id}"))

    async def _close_after_outbox(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), DRAIN_TIMEOUT_S)
        await self._ws.close(1000, "session closed")

    async def _run_job(self, job: Job) -> None:
        """Run one job (speech in the workers, MCP requests here) and hand its outcome
        to the session."""
        session = self._session
        if isinstance(job, ListMcpTools | CallMcpTool):
            # Only a Realtime session asks for MCP work (a Live one has no tools).
            assert isinstance(session, LocalSession)
            self._pump(await _run_mcp(session, job))
            return
        try:
            workers = self._speech()
            scored: list[tuple[str, float]] | None = None
            if isinstance(job, Transcribe) and job.logprobs:
                scored = await workers.transcribe_scored(job.audio)
                words = " ".join(word for word, _ in scored)
            elif isinstance(job, Transcribe):
                words = await workers.transcribe(job.audio)
            else:
                speech = await workers.synthesize(job.text, job.voice, job.rate)
        except SpeechError as exc:
            logger.debug("local realtime %s: %s failed: %s", session.id, type(job).__name__,
                         exc.message)
            self._pump(session.transcription_failed(job, exc.message)
                       if isinstance(job, Transcribe)
                       else session.synthesis_failed(job, exc.message))
            return
        if not isinstance(job, Transcribe):
            self._pump(session.synthesis_done(job, speech))
        elif scored is not None and isinstance(session, LocalSession):
            # Only a Realtime session's include asks for logprobs.
            self._pump(session.transcription_done(job, words, scored))
        else:
            self._pump(session.transcription_done(job, words))

    async def _write(self) -> None:
        try:
            while True:
                event = await self._outbox.get()
                try:
                    await self._ws.send(dumps(event))
                finally:
                    self._outbox.task_done()
        except ConnectionClosed:
            pass

    async def _pace(self) -> None:
        """Hand out response chunks: each one ``audio_ms / speed`` after the previous,
        measured from the response's first chunk so waits do not accumulate drift."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            current: str | None = None
            deadline = loop.time()
            while (chunk := self._session.next_response_chunk()) is not None:
                if chunk.response_id != current:
                    current = chunk.response_id
                    deadline = loop.time()
                self._pump(chunk.events)
                deadline += chunk.audio_ms / 1000.0 / self._speed
                delay = deadline - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)


async def _run_mcp(session: LocalSession, job: ListMcpTools | CallMcpTool) -> list[Event]:
    """List an MCP server's tools or call one (the ``mcp`` package is imported only
    here: a server whose sessions name no MCP tool never loads it)."""
    from . import mcp_client

    if isinstance(job, CallMcpTool):
        outcome = await mcp_client.call_tool(job.server, job.name, job.arguments)
        return session.mcp_call_done(job, outcome)
    try:
        tools = await mcp_client.list_tools(job.server)
    except mcp_client.McpFailure as failure:
        return session.mcp_list_failed(job, failure.error)
    return session.mcp_tools_listed(job, tools)


class LocalRealtimeServer:
    """An offline Realtime API (GA) WebSocket server that answers each user turn (and calls
    function tools by the rules in :mod:`relay.upstream.local`).

    ``mode="assistant"`` speaks a reply to what it heard ("You said: ..."), with the
    ``speech`` extra; without it, the server logs why once and parrots instead.
    ``mode="parrot"`` plays each turn back; ``mode="echo"`` returns every appended input
    chunk at once as output audio of one long-lived response. Response audio goes out in
    ``delta_ms`` deltas at ``speed`` times real time. Any path and any (or no)
    ``Authorization`` header are accepted; ``?model=`` names the session's model.

    Speech runs in ``speech``, a :class:`~.workers.SpeechWorkers` the caller owns (tests
    share one), or else in one the server starts when first needed and closes with itself.

    ``observer``, when given, is called with a session's id and each client event it
    receives (parsed; malformed messages are not passed), before the session handles it:
    a test sees exactly what reached the upstream, e.g. every ``conversation.item.truncate``.

    ``mcp_urls`` lists the URL prefixes of the MCP servers a session's ``mcp`` tools may
    name (``*``: any); the server connects to no other (none by default).
    """

    def __init__(
        self,
        mode: LocalMode = "parrot",
        *,
        delta_ms: int = 100,
        speed: float = 4.0,
        model: str = DEFAULT_MODEL,
        speech: SpeechWorkers | None = None,
        observer: Observer | None = None,
        mcp_urls: Sequence[str] = (),
    ) -> None:
        if mode not in LOCAL_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if delta_ms <= 0 or speed <= 0:
            raise ValueError("delta_ms and speed must be positive")
        #: Why there is no speech here, once looked up (None: it is here, or not needed yet).
        self._speech_missing: str | None = None
        self._speech_checked = speech is not None
        if mode == "assistant" and self._no_speech() is not None:
            logger.warning("local realtime server: no speech, so it parrots instead of "
                           "answering: %s", self._speech_missing)
            mode = "parrot"
        self.mode: LocalMode = mode
        self.delta_ms = delta_ms
        self.speed = speed
        self.model = model
        self._given_speech = speech
        self.observer = observer
        #: URL prefixes of the MCP servers sessions may name (``*``: any).
        self.mcp_urls = tuple(mcp_urls)
        self._own_speech: SpeechWorkers | None = None
        self._server: Server | None = None
        self._host = "127.0.0.1"
        self._connections: set[_Connection] = set()
        self._closed = False

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0 picks a free one)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._host = host
        self._closed = False
        self._server = await serve(
            self._handle, host, port,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,  # audio does not compress; deflate would only cost latency
            logger=_ws_logger,
        )
        if self.mode == "assistant":
            self._speech().warm()  # its first turn should not wait for a worker to start
        logger.info("local realtime server (%s) listening on %s", self.mode, self.url)

    @property
    def port(self) -> int:
        """The port listened on."""
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    @property
    def live_url(self) -> str:
        """WebSocket URL of the GPT-Live endpoint, ``ws://127.0.0.1:PORT/v1/live/sessions``."""
        return self.url.removesuffix("/v1/realtime") + LIVE_PATH

    @property
    def url(self) -> str:
        """WebSocket URL of the Realtime endpoint, e.g. ``ws://127.0.0.1:PORT/v1/realtime``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self.port}/v1/realtime"

    async def close(self) -> None:
        """Close every connection and stop listening; safe to call twice."""
        server = self._server
        if server is None or self._closed:
            return
        self._closed = True
        # End each session politely first (an open echo response gets its response.done),
        # then let websockets close whatever is left and wait for every handler.
        await asyncio.gather(*(conn.shutdown() for conn in list(self._connections)),
                             return_exceptions=True)
        server.close(close_connections=True)
        await server.wait_closed()
        self._server = None
        if self._own_speech is not None:
            self._own_speech.close()
            self._own_speech = None
        logger.info("local realtime server closed")

    async def __aenter__(self) -> LocalRealtimeServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        session: LocalSession | LiveLocalSession
        if urlsplit(path).path.rstrip("/") == LIVE_PATH:
            # GPT-Live plays in real time: interruption is the server's (relay.upstream.local.live).
            session = LiveLocalSession(mode=self.mode, delta_ms=self.delta_ms)
            speed = 1.0
        else:
            session = LocalSession(mode=self.mode, model=self._model_for(ws),
                                   delta_ms=self.delta_ms, mcp_urls=self.mcp_urls,
                                   intent=self._intent_for(ws))
            speed = self.speed
        conn = _Connection(ws, session, speed, self._speech, self.observer)
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception:
            logger.exception("local realtime %s: connection failed", session.id)
        finally:
            self._connections.discard(conn)

    def _speech(self) -> SpeechWorkers:
        """The workers for speech jobs, started on first use; SpeechError without the
        ``speech`` extra."""
        if self._given_speech is not None:
            return self._given_speech
        missing = self._no_speech()
        if missing is not None:
            raise SpeechError(f"speech recognition is unavailable: {missing}")
        if self._own_speech is None:
            self._own_speech = SpeechWorkers()
        return self._own_speech

    def _no_speech(self) -> str | None:
        """Why this server has no speech, or None; looked up once, when first needed (a
        parrot or echo server may never need it)."""
        if not self._speech_checked:
            self._speech_missing = speech_missing()
            self._speech_checked = True
        return self._speech_missing

    def _intent_for(self, ws: ServerConnection) -> str | None:
        """``?intent=transcription`` opens a transcription session, as on the hosted API."""
        path = ws.request.path if ws.request is not None else ""
        intents = parse_qs(urlsplit(path).query).get("intent")
        return intents[0] if intents else None

    def _model_for(self, ws: ServerConnection) -> str:
        path = ws.request.path if ws.request is not None else ""
        models = parse_qs(urlsplit(path).query).get("model")
        return models[0] if models else self.model
