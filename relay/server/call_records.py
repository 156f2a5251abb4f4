"""What the relay keeps of its calls and tells about them: recordings and webhooks.

The registry asks :class:`CallRecords` for a recorder when it creates a call that is to be
recorded (``--record all``, or asked for per call by the operator), and tells it when a
call has started (its answer is made) and when it has ended. It sends the webhooks
``call.started``, ``call.ended`` (the reason and the call's last figures) and, once a
recording is complete on disk, ``recording.ready``. It works from what any call driver
shows (:class:`RecordedCall`), so every protocol family shares it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..config import Settings
from ..recording.call_recorder import CallRecorder
from ..recording.recordings import Recordings
from .webhooks import WebhookSender

logger = logging.getLogger(__name__)

#: The event the client gets at the start of a recorded call (on its data channel, right
#: after ``session.created``). Not an event of the Realtime API: the relay's own.
RECORDING_EVENT = "relay.recording.started"


class RecordedCall(Protocol):
    """What :class:`CallRecords` reads of a call (the call driver has it)."""

    id: str
    model: str | None
    close_reason: str | None
    recorder: CallRecorder | None

    @property
    def session(self) -> dict[str, Any]:
        """The call's effective session."""

    def snapshot(self) -> dict[str, Any]:
        """The call's state and last figures."""


def content_path(protocol: str, call_id: str) -> str:
    """Where a recording is downloaded (``GET``, with a server key)."""
    if protocol == "live":
        return f"/v1/live/sessions/{call_id}/content"
    return f"/v1/realtime/calls/{call_id}/content"


def recording_notice(call_id: str, protocol: str, event_id: str) -> dict[str, Any]:
    """The ``relay.recording.started`` event that tells a client its call is recorded."""
    return {"type": RECORDING_EVENT, "event_id": event_id, "call_id": call_id,
            "recording": {"audio": True, "events": True,
                          "content_url": content_path(protocol, call_id)}}


class CallRecords:
    """Recordings and webhooks of the calls of one relay."""

    def __init__(self, settings: Settings, recordings: Recordings,
                 webhooks: WebhookSender | None) -> None:
        self.settings = settings
        self.recordings = recordings
        self.webhooks = webhooks
        #: Protocol family of the calls that started (for their ending's webhooks).
        self._started: dict[str, str] = {}

    def recorder(self, call_id: str, *, requested: bool, protocol: str, model: str | None,
                 session: dict[str, Any], created_at: float,
                 clock: Callable[[], float]) -> CallRecorder | None:
        """A recorder for the new call ``call_id`` if it is to be recorded, else None."""
        if not (requested or self.settings.record == "all"):
            return None
        metadata = {"call_id": call_id, "protocol": protocol, "model": model,
                    "created_at": round(created_at, 3), "requested_session": session,
                    "recorded": "asked for this call" if requested else "--record all",
                    "audio": {"file": "audio.ogg", "codec": "opus", "sample_rate": 24000,
                              "channels": ["user, as the relay received it",
                                           "assistant, as the relay sent it to the user"]},
                    "events": "events.jsonl"}
        try:
            return self.recordings.open(call_id, metadata, clock)
        except ValueError:
            logger.warning("call %s: not recorded (its id cannot name a directory)", call_id)
            return None

    def started(self, call: RecordedCall, protocol: str = "realtime") -> None:
        """``call`` is answered and under way."""
        self._started[call.id] = protocol
        if self.webhooks is not None:
            self.webhooks.send("call.started", {
                "call_id": call.id, "protocol": protocol, "model": call.model,
                "recorded": call.recorder is not None})

    def ended(self, call: RecordedCall) -> None:
        """``call`` has closed; its snapshot holds its last figures."""
        protocol = self._started.pop(call.id, None)
        snapshot = call.snapshot()
        if call.recorder is not None:
            then = self._ready if protocol is not None else None
            self.recordings.finish(call.recorder, {"ended": _ended(snapshot),
                                                   "session": call.session,
                                                   "call": snapshot}, then)
        if protocol is not None and self.webhooks is not None:
            self.webhooks.send("call.ended", {
                "call_id": call.id, "protocol": protocol, "reason": call.close_reason,
                "recorded": call.recorder is not None, "summary": _summary(snapshot)})

    def _ready(self, recorder: CallRecorder) -> None:
        if self.webhooks is None:
            return
        protocol = recorder.protocol
        self.webhooks.send("recording.ready", {
            "call_id": recorder.call_id, "protocol": protocol,
            "content_url": content_path(protocol, recorder.call_id),
            "files": ["audio.ogg", "events.jsonl", "metadata.json"]})


def _ended(snapshot: dict[str, Any]) -> dict[str, Any]:
    timings = snapshot.get("timings") or {}
    return {"reason": snapshot.get("close_reason"), "at": timings.get("ended_at"),
            "duration_seconds": timings.get("duration_seconds")}


def _summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The per-call summary a ``call.ended`` webhook carries."""
    keys = ("timings", "audio_seconds", "rtp", "uplink", "reply_latency", "last_error")
    summary = {key: snapshot.get(key) for key in keys}
    summary["barge_ins"] = len(snapshot.get("barge_ins") or ())
    summary["events"] = snapshot.get("events")
    return summary
