"""GPT-Live's wake policy and idle timeout, done by the relay itself, without I/O.

A WebRTC session created with ``wake_policy: {"type": "speech", "vad_threshold"}`` starts
with inference paused: the relay forwards no microphone audio upstream until it hears
speech itself (its energy detector, :mod:`relay.protocol.energy_vad`, at the policy's
threshold). Then it wakes: it sends the short pre-roll it held (so the first syllable
reaches the model), forwards the microphone from then on, and says ``session.resumed``.
With ``idle_timeout_s``, once neither the user has spoken nor the model has produced
anything for that many whole seconds, it pauses again (``session.paused``): the connection
and the conversation stay, only the microphone stops going upstream, so a paused session
costs the upstream nothing. The next speech wakes it again.

Because the relay does it, it works with any upstream (the embedded one included), and
the upstream never sees these fields. Withholding audio shortens the upstream's timeline
(it counts the audio it received), so :meth:`WakeGate.session_ms` maps the upstream's
times back onto the session's, where the withheld audio still counts.

Both fields are startup-only (``SessionUpdateConfig`` has neither): a ``session.update``
naming one is refused (:func:`check_update`).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ...errors import InvalidRequest
from ..energy_vad import (
    SAMPLE_BYTES,
    SAMPLES_PER_MS,
    EnergyVad,
    SpeechStarted,
)

#: The fields of the WebRTC form (``MediaSessionConfig``) this module serves.
WAKE_FIELDS = ("idle_timeout_s", "wake_policy")
DEFAULT_VAD_THRESHOLD = 0.5
#: A session lives at most an hour, so a longer idle timeout could never fire.
MAX_IDLE_TIMEOUT_S = 3600
#: Microphone audio held while paused and sent upstream on a wake: the detector's onset
#: plus the upstream's own prefix padding (300 ms on the hosted and embedded servers), so
#: the words that woke the session reach the model whole.
PREROLL_MS = 500
#: Loud audio needed before a wake, so a click or a pop does not wake the session.
WAKE_ONSET_MS = 40
#: Quiet audio after which the user counts as no longer speaking (for the idle timeout).
SPEECH_TAIL_MS = 500

Transition = Literal["session.resumed", "session.paused"]
#: Upstream events that show the session is not idle: the model's words and audio, the
#: user's words as the model heard them, a delegation, a backend's response.
ACTIVITY = frozenset({"session.output_audio.delta", "session.output_transcript.delta",
                      "session.input_transcript.delta", "session.delegation.created",
                      "response.event", "session.output_audio.fixture.playing"})
#: Upstream events whose times are on its timeline, and the fields that hold them.
TIMED = {"session.input_transcript.delta": ("start_ms", "end_ms"),
         "session.output_transcript.delta": ("start_ms", "end_ms"),
         "session.instructions.appended": ("start_ms", "end_ms"),
         "session.thinking.appended": ("start_ms", "end_ms"),
         "session.commentary.appended": ("start_ms", "end_ms"),
         "session.delegation.created": ("offset_ms",)}
#: Upstream events that carry the session's ``usage``.
USAGE = ("session.usage.updated", "session.closed")


def check_wake_config(value: Mapping[str, Any], param: str = "session") -> None:
    """Refuse a bad ``wake_policy`` or ``idle_timeout_s`` with :class:`InvalidRequest`
    naming the field: the policy is ``{"type": "speech", "vad_threshold": 0..1}``, the
    timeout whole seconds from 1 to an hour, and a timeout needs a speech wake policy
    (without one, nothing ever wakes a paused session)."""
    policy = value.get("wake_policy")
    if policy is not None:
        _check_policy(policy, f"{param}.wake_policy")
    timeout = value.get("idle_timeout_s")
    if timeout is None:
        return
    where = f"{param}.idle_timeout_s"
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        raise InvalidRequest(f"Invalid type for '{where}': expected an integer (whole "
                             "seconds).", code="invalid_type", param=where)
    if not 1 <= timeout <= MAX_IDLE_TIMEOUT_S:
        raise InvalidRequest(f"Invalid '{where}': {timeout} is out of range (1 to "
                             f"{MAX_IDLE_TIMEOUT_S} seconds).", code="invalid_value",
                             param=where)
    if policy is None:
        raise InvalidRequest(f"'{where}' pauses a session with a speech wake policy, and "
                             f"this one has none: add '{param}.wake_policy' "
                             "({\"type\": \"speech\"}).", code="invalid_value", param=where)


def _check_policy(policy: Any, where: str) -> None:
    if not isinstance(policy, Mapping):
        raise InvalidRequest(f"Invalid type for '{where}': expected an object.",
                             code="invalid_type", param=where)
    for key in policy:
        if key not in ("type", "vad_threshold"):
            raise InvalidRequest(f"Unknown parameter: '{where}.{key}'.",
                                 code="unknown_parameter", param=f"{where}.{key}")
    if "type" not in policy:
        raise InvalidRequest(f"Missing required parameter: '{where}.type'.",
                             code="missing_required_parameter", param=f"{where}.type")
    if policy["type"] != "speech":
        raise InvalidRequest(f"Invalid value for '{where}.type': expected 'speech'.",
                             code="invalid_value", param=f"{where}.type")
    threshold = policy.get("vad_threshold", DEFAULT_VAD_THRESHOLD)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise InvalidRequest(f"Invalid type for '{where}.vad_threshold': expected a "
                             "number.", code="invalid_type", param=f"{where}.vad_threshold")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidRequest(f"Invalid '{where}.vad_threshold': {threshold} is out of "
                             "range (0 to 1 inclusive).", code="invalid_value",
                             param=f"{where}.vad_threshold")


def check_update(update: Any) -> None:
    """Refuse a ``session.update`` that names a wake field: both are fixed when the
    session is created (the update's shape, ``SessionUpdateConfig``, has neither)."""
    if not isinstance(update, Mapping):
        return
    for key in WAKE_FIELDS:
        if key in update:
            raise InvalidRequest(
                f"'session.{key}' is set when the session is created and cannot change "
                "during it.", code="immutable_parameter", param=f"session.{key}")


def resolved_policy(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The session's wake policy with its default threshold filled in (None: no policy)."""
    policy = config.get("wake_policy")
    if not isinstance(policy, Mapping):
        return None
    return {"type": "speech", "vad_threshold": policy.get("vad_threshold",
                                                          DEFAULT_VAD_THRESHOLD)}


class WakeGate:
    """Which microphone audio goes upstream, and when inference pauses and wakes.

    Feed it the microphone (:meth:`audio`), what the model produces (:meth:`model_active`)
    and the passing of time (:meth:`tick`); each returns the transition it made, if any
    (``session.resumed``, ``session.paused``), for the core to announce. ``clock`` is
    injected (seconds); the session starts paused, at the gate's creation.
    """

    def __init__(self, *, vad_threshold: float, idle_timeout_s: int | None,
                 clock: Callable[[], float]) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._vad = EnergyVad(threshold=vad_threshold, prefix_padding_ms=0,
                              silence_duration_ms=SPEECH_TAIL_MS,
                              min_speech_ms=WAKE_ONSET_MS)
        now = clock()
        self._started_at = now
        self.paused = True
        self._paused_since: float | None = now
        self._paused_seconds = 0.0
        self._last_activity = now
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._preroll_limit = PREROLL_MS * SAMPLES_PER_MS * SAMPLE_BYTES
        #: The microphone is muted upstream (``session.input_audio.muted``): no wake.
        self.muted = False
        #: How many times speech woke the session.
        self.wakes = 0
        #: Microphone audio forwarded upstream and withheld (samples).
        self.forwarded_samples = 0
        self.withheld_samples = 0
        # Where each wake resumed, on the upstream's timeline (ms), with the audio
        # withheld before it (ms): the map from upstream times to session times.
        self._resumed_at_ms: list[int] = []
        self._withheld_before_ms: list[int] = []

    # ------------------------------------------------------------------ inputs

    def audio(self, pcm: bytes) -> tuple[list[bytes], Transition | None]:
        """Microphone audio (24 kHz mono PCM16): the chunks to forward upstream now (the
        pre-roll first, on a wake), and ``session.resumed`` when this audio woke it."""
        if not self.paused and self.idle_timeout_s is None:
            # Awake for good: nothing left to detect.
            self.forwarded_samples += len(pcm) // SAMPLE_BYTES
            return [pcm], None
        found = self._vad.feed(pcm)
        now = self._clock()
        if not self.paused:
            if self._vad.in_speech or found:
                self._last_activity = now
            self.forwarded_samples += len(pcm) // SAMPLE_BYTES
            return [pcm], None
        self._hold(pcm)
        woke = self._vad.in_speech or any(isinstance(e, SpeechStarted) for e in found)
        if not woke or self.muted:
            return [], None
        return self._wake(now), "session.resumed"

    def model_active(self) -> None:
        """The model produced something (audio, words, a delegation): not idle."""
        if not self.paused:
            self._last_activity = self._clock()

    def tick(self, busy: bool = False) -> Transition | None:
        """Time passed (``busy``: model audio is still playing): ``session.paused`` when
        the idle timeout has run out."""
        if self.paused or self.idle_timeout_s is None:
            return None
        now = self._clock()
        if busy or self._vad.in_speech:
            self._last_activity = now
            return None
        if now - self._last_activity < self.idle_timeout_s:
            return None
        self.paused = True
        self._paused_since = now
        return "session.paused"

    def upstream_event(self, event: dict[str, Any]) -> None:
        """An upstream event, before it goes on: activity keeps the session awake, a
        mute stops wakes, times move onto the session's timeline, usage gets the active
        and paused breakdown (``event`` is changed in place)."""
        kind = event.get("type")
        if kind in ACTIVITY:
            self.model_active()
        elif kind in ("session.input_audio.muted", "session.input_audio.unmuted"):
            self.muted = kind == "session.input_audio.muted"
        for field in TIMED.get(str(kind), ()):
            value = event.get(field)
            if isinstance(value, int) and not isinstance(value, bool):
                event[field] = self.session_ms(value)
        if kind in USAGE and isinstance(event.get("usage"), Mapping):
            event["usage"] = self.usage(event["usage"])

    # ----------------------------------------------------------------- outputs

    def session_ms(self, upstream_ms: int) -> int:
        """A time on the upstream's timeline (the audio it received) as a time on the
        session's (every millisecond of the microphone, withheld audio included)."""
        index = bisect.bisect_right(self._resumed_at_ms, upstream_ms) - 1
        return upstream_ms + (self._withheld_before_ms[index] if index >= 0 else 0)

    @property
    def position_ms(self) -> int:
        """The session's timeline: milliseconds of microphone audio heard so far."""
        return (self.forwarded_samples + self.withheld_samples + self._preroll_bytes
                // SAMPLE_BYTES) // SAMPLES_PER_MS

    def seconds(self) -> tuple[float, float]:
        """The session's (active, paused) seconds so far on the clock; the time before
        the first wake counts as paused (inference had not started)."""
        now = self._clock()
        paused = self._paused_seconds
        if self._paused_since is not None:
            paused += now - self._paused_since
        return max(0.0, now - self._started_at - paused), paused

    def usage(self, usage: Mapping[str, Any]) -> dict[str, Any]:
        """A ``SessionUsage`` with the active and paused breakdown: ``seconds`` becomes the
        session's whole seconds on the relay's clock (the upstream, which heard only the
        audio the relay forwarded, counts less), ``paused_seconds`` the whole seconds
        paused, and ``active_seconds`` the rest, so the two add up to ``seconds``."""
        active, paused = self.seconds()
        # Rounded to the microsecond first: a clock's sums of 20 ms steps fall just short.
        total = int(round(active + paused, 6))
        paused_whole = min(int(round(paused, 6)), total)
        return dict(usage, seconds=total, active_seconds=total - paused_whole,
                    paused_seconds=paused_whole)

    # ---------------------------------------------------------------- internals

    def _hold(self, pcm: bytes) -> None:
        """Keep the last :data:`PREROLL_MS` of audio; what falls out is withheld."""
        self._preroll.append(pcm)
        self._preroll_bytes += len(pcm)
        while self._preroll and self._preroll_bytes - len(self._preroll[0]) \
                >= self._preroll_limit:
            dropped = self._preroll.popleft()
            self._preroll_bytes -= len(dropped)
            self.withheld_samples += len(dropped) // SAMPLE_BYTES

    def _wake(self, now: float) -> list[bytes]:
        self.paused = False
        self.wakes += 1
        if self._paused_since is not None:
            self._paused_seconds += now - self._paused_since
            self._paused_since = None
        self._last_activity = now
        self._resumed_at_ms.append(self.forwarded_samples // SAMPLES_PER_MS)
        self._withheld_before_ms.append(self.withheld_samples // SAMPLES_PER_MS)
        chunks = list(self._preroll)
        self.forwarded_samples += self._preroll_bytes // SAMPLE_BYTES
        self._preroll.clear()
        self._preroll_bytes = 0
        return chunks


def wake_gate(config: Mapping[str, Any], clock: Callable[[], float]) -> WakeGate | None:
    """The gate a session's configuration asks for (None: no wake policy: every bit of
    the microphone goes upstream, as before)."""
    policy = resolved_policy(config)
    if policy is None:
        return None
    timeout = config.get("idle_timeout_s")
    return WakeGate(vad_threshold=float(policy["vad_threshold"]),
                    idle_timeout_s=timeout if isinstance(timeout, int) else None,
                    clock=clock)
