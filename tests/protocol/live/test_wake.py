"""GPT-Live's wake policy and idle timeout, with plain synchronous calls and a fake clock:
the gate alone (what goes upstream, when it wakes and pauses, the usage breakdown, the
timeline), its configuration checks, and the Live core using it; every event a client or
sideband receives validates against ``openai.types.live``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic
import pytest
from openai.types.live import ServerEvent, SessionUsage
from openai.types.live.connect_server_event import ConnectServerEvent

from relay.errors import InvalidRequest
from relay.protocol.live.live_config import apply_update, check_config
from relay.protocol.live.live_core import LiveCore
from relay.protocol.live.wake import PREROLL_MS, WakeGate, check_wake_config

from ...upstream.local.signals import silence, tone

SERVER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerEvent)
SIDEBAND: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ConnectServerEvent)
BYTES_PER_MS = 48


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(gate: WakeGate, pcm: bytes, clock: Clock, ms: int = 20
         ) -> tuple[list[bytes], list[str]]:
    """``pcm`` in 20 ms chunks, the clock moving with it, ticking after each."""
    sent: list[bytes] = []
    said: list[str] = []
    for start in range(0, len(pcm), ms * BYTES_PER_MS):
        chunk = pcm[start:start + ms * BYTES_PER_MS]
        clock.now += len(chunk) / BYTES_PER_MS / 1000
        forwarded, transition = gate.audio(chunk)
        sent += forwarded
        said += [transition] if transition else []
        ticked = gate.tick()
        said += [ticked] if ticked else []
    return sent, said


def gate(clock: Clock, threshold: float = 0.5, timeout: int | None = 2) -> WakeGate:
    return WakeGate(vad_threshold=threshold, idle_timeout_s=timeout, clock=clock)


def test_wake_gate_forwards_nothing_until_speech() -> None:
    clock = Clock()
    wake = gate(clock)
    sent, said = feed(wake, silence(3000), clock)
    assert sent == [] and said == [] and wake.paused
    assert wake.withheld_samples > 0 and wake.forwarded_samples == 0


def test_wake_gate_wakes_on_speech_and_keeps_the_preroll() -> None:
    clock = Clock()
    wake = gate(clock)
    quiet, speech = silence(1000), tone(600)
    sent, said = feed(wake, quiet + speech, clock)
    assert said == ["session.resumed"] and not wake.paused
    audio = b"".join(sent)
    # The whole speech went upstream, with silence before it from the pre-roll ...
    assert audio.endswith(speech)
    lead = len(audio) - len(speech)
    assert 0 < lead <= PREROLL_MS * BYTES_PER_MS
    # ... and nothing is counted twice or lost.
    assert wake.forwarded_samples * 2 == len(audio)
    assert (wake.forwarded_samples + wake.withheld_samples) * 2 == len(quiet + speech)
    assert wake.position_ms == 1600


def test_wake_gate_threshold_decides_what_wakes_it() -> None:
    quiet_speech = tone(600, dbfs=-40)  # above 0.5's -45 dBFS, below 0.9's -25 dBFS
    for threshold, wakes in ((0.5, True), (0.9, False), (0.0, True)):
        clock = Clock()
        wake = gate(clock, threshold)
        _, said = feed(wake, silence(200) + quiet_speech, clock)
        assert (said == ["session.resumed"]) is wakes, threshold
    clock = Clock()
    wake = gate(clock, 0.0)
    _, said = feed(wake, silence(2000), clock)  # digital silence never wakes it
    assert said == []


def test_wake_gate_a_click_does_not_wake_it() -> None:
    clock = Clock()
    wake = gate(clock)
    _, said = feed(wake, silence(200) + tone(20) + silence(500), clock)
    assert said == []


def test_wake_gate_pauses_after_the_idle_timeout_and_wakes_again() -> None:
    clock = Clock()
    wake = gate(clock, timeout=2)
    _, said = feed(wake, tone(500), clock)
    assert said == ["session.resumed"]
    # The user's speech tail (0.5 s) and then 2 s of nothing: paused, not before.
    sent, said = feed(wake, silence(2400), clock)
    assert said == [] and len(sent) == 120
    sent, said = feed(wake, silence(200), clock)
    assert said == ["session.paused"] and wake.paused
    sent, said = feed(wake, silence(3000), clock)
    assert sent == [] and said == []
    sent, said = feed(wake, tone(500), clock)
    assert said == ["session.resumed"] and wake.wakes == 2


def test_wake_gate_model_output_keeps_it_awake() -> None:
    clock = Clock()
    wake = gate(clock, timeout=1)
    feed(wake, tone(300), clock)
    for _ in range(5):  # the model talks for 5 s: replies, playout, words
        _, said = feed(wake, silence(900), clock)
        wake.model_active()
        assert said == []
    clock.now += 0.5
    assert wake.tick(busy=True) is None  # its audio still plays out
    clock.now += 1.0
    assert wake.tick() == "session.paused"


def test_wake_gate_without_timeout_stays_awake() -> None:
    clock = Clock()
    wake = gate(clock, timeout=None)
    feed(wake, tone(300), clock)
    _, said = feed(wake, silence(5000), clock)
    assert said == [] and not wake.paused


def test_wake_gate_muted_microphone_does_not_wake_it() -> None:
    clock = Clock()
    wake = gate(clock)
    wake.upstream_event({"type": "session.input_audio.muted"})
    _, said = feed(wake, tone(500), clock)
    assert said == []
    wake.upstream_event({"type": "session.input_audio.unmuted"})
    _, said = feed(wake, tone(200), clock)
    assert said == ["session.resumed"]


def test_wake_gate_usage_splits_active_and_paused_seconds() -> None:
    clock = Clock()
    wake = gate(clock, timeout=2)
    feed(wake, silence(10_000), clock)  # 10 s asleep before the first wake
    feed(wake, tone(1000) + silence(3000), clock)  # awake 3.5 s, then paused
    feed(wake, silence(6000), clock)
    usage = wake.usage({"seconds": 4})
    SessionUsage.model_validate(usage)
    assert usage["seconds"] == 20
    assert usage["active_seconds"] + usage["paused_seconds"] == 20
    # Paused: 10 s and the onset, then 6.5 s; whole seconds, the rest is active (3.5 s).
    assert usage["paused_seconds"] == 16
    assert usage["active_seconds"] == 4


def test_wake_gate_maps_upstream_times_onto_the_session() -> None:
    clock = Clock()
    wake = gate(clock)
    feed(wake, silence(2000) + tone(500), clock)
    # The upstream heard the pre-roll and the speech; the session also the 1.5 s before.
    withheld_ms = wake.withheld_samples // 24
    assert withheld_ms >= 1500
    assert wake.session_ms(0) == withheld_ms
    event = {"type": "session.input_transcript.delta", "delta": "hi",
             "start_ms": 100, "end_ms": 400}
    wake.upstream_event(event)
    assert (event["start_ms"], event["end_ms"]) == (100 + withheld_ms, 400 + withheld_ms)


@pytest.mark.parametrize(("session", "code", "param"), [
    ({"wake_policy": "speech"}, "invalid_type", "session.wake_policy"),
    ({"wake_policy": {}}, "missing_required_parameter", "session.wake_policy.type"),
    ({"wake_policy": {"type": "always"}}, "invalid_value", "session.wake_policy.type"),
    ({"wake_policy": {"type": "speech", "level": 1}}, "unknown_parameter",
     "session.wake_policy.level"),
    ({"wake_policy": {"type": "speech", "vad_threshold": "high"}}, "invalid_type",
     "session.wake_policy.vad_threshold"),
    ({"wake_policy": {"type": "speech", "vad_threshold": True}}, "invalid_type",
     "session.wake_policy.vad_threshold"),
    ({"wake_policy": {"type": "speech", "vad_threshold": 1.01}}, "invalid_value",
     "session.wake_policy.vad_threshold"),
    ({"wake_policy": {"type": "speech", "vad_threshold": -0.1}}, "invalid_value",
     "session.wake_policy.vad_threshold"),
    ({"wake_policy": {"type": "speech"}, "idle_timeout_s": 1.5}, "invalid_type",
     "session.idle_timeout_s"),
    ({"wake_policy": {"type": "speech"}, "idle_timeout_s": "30"}, "invalid_type",
     "session.idle_timeout_s"),
    ({"wake_policy": {"type": "speech"}, "idle_timeout_s": 0}, "invalid_value",
     "session.idle_timeout_s"),
    ({"wake_policy": {"type": "speech"}, "idle_timeout_s": 3601}, "invalid_value",
     "session.idle_timeout_s"),
    ({"idle_timeout_s": 30}, "invalid_value", "session.idle_timeout_s"),
])
def test_wake_config_refuses_bad_values_naming_the_field(
        session: dict[str, Any], code: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_config({"model": "gpt-live-1", **session}, media=True)
    assert (caught.value.code, caught.value.param) == (code, param)


def test_wake_config_accepts_the_documented_values() -> None:
    for session in ({"wake_policy": {"type": "speech"}},
                    {"wake_policy": {"type": "speech", "vad_threshold": 0}},
                    {"wake_policy": {"type": "speech", "vad_threshold": 1}, "idle_timeout_s": 1},
                    {"wake_policy": {"type": "speech", "vad_threshold": 0.7},
                     "idle_timeout_s": 3600}):
        check_wake_config(session)
        check_config({"model": "gpt-live-1", **session}, media=True)
    # The WebSocket form has neither field.
    with pytest.raises(InvalidRequest) as caught:
        check_config({"model": "gpt-live-1", "wake_policy": {"type": "speech"}}, media=False)
    assert caught.value.code == "unknown_parameter"


def test_wake_config_is_startup_only() -> None:
    with pytest.raises(InvalidRequest) as caught:
        apply_update({"model": "gpt-live-1"}, {"idle_timeout_s": 10})
    assert (caught.value.code, caught.value.param) == ("immutable_parameter",
                                                        "session.idle_timeout_s")


# -- the Live core with a wake policy ----------------------------------------------------

SESSION = {"model": "gpt-live-1", "wake_policy": {"type": "speech", "vad_threshold": 0.5},
           "idle_timeout_s": 2}


def started() -> str:
    return json.dumps({"type": "session.started", "event_id": "event_1", "session": {
        "id": "live_upstream", "expires_at": 2, "model": "gpt-live-1", "status": "active",
        "audio": {"format": {"type": "audio/pcm", "rate": 24000},
                  "output": {"voice": "marin"}}}})


def live_core(clock: Clock, session: dict[str, Any] | None = None) -> LiveCore:
    live = LiveCore("rtc_u1_relayid", dict(session or SESSION),
                    max_playout_samples=24000 * 5, clock=clock)
    live.start()
    live.channel_opened(0)
    live.drain_upstream()
    return live


def run(live: LiveCore, pcm: bytes, clock: Clock) -> list[dict[str, Any]]:
    """Feed the microphone and pull frames in real time, 20 ms at a time; what went
    upstream."""
    upstream: list[dict[str, Any]] = []
    for start in range(0, len(pcm), 960):
        clock.now += 0.02
        live.uplink_audio(pcm[start:start + 960])
        live.next_frame()
        upstream += live.drain_upstream()
    return upstream


def to_client(live: LiveCore) -> list[dict[str, Any]]:
    events = [json.loads(m) for m in live.drain_client_messages()]
    for event in events:
        valid(event)
    return events


def valid(event: dict[str, Any]) -> None:
    """``event`` validates as a data-channel event: ``session.resumed``/``.paused`` are
    WebRTC-only (``ConnectServerEvent`` has them, the primary WebSocket's ``ServerEvent``
    does not), the rest as the primary connection's."""
    if event["type"] in ("session.resumed", "session.paused"):
        SIDEBAND.validate_python(event)
    else:
        SERVER.validate_python(event)


def test_live_core_wake_policy_gates_the_microphone_and_says_so() -> None:
    clock = Clock()
    live = live_core(clock)
    live.attach_sideband("sb")
    live.upstream_message(started())
    [first] = to_client(live)
    assert first["session"]["wake_policy"] == {"type": "speech", "vad_threshold": 0.5}
    assert first["session"]["idle_timeout_s"] == 2

    assert run(live, silence(2000), clock) == []
    assert to_client(live) == []
    assert live.stats.uplink_samples == 0

    upstream = run(live, tone(400), clock)
    assert {e["type"] for e in upstream} == {"session.input_audio.append"}
    sent = b"".join(base64.b64decode(e["audio"]) for e in upstream)
    assert sent.endswith(tone(400)) and len(sent) > len(tone(400))
    assert [e["type"] for e in to_client(live)] == ["session.resumed"]

    assert run(live, silence(2600), clock)  # the speech tail and the timeout
    assert [e["type"] for e in to_client(live)] == ["session.paused"]
    assert run(live, silence(1000), clock) == []
    sideband = live.drain_sideband("sb")
    for event in sideband:
        SIDEBAND.validate_python(event)
    said = [e["type"] for e in sideband if e["type"] != "session.input_audio.append"]
    assert said == ["session.started", "session.resumed", "session.paused"]
    # The sideband hears the whole microphone, paused or not.
    reflected = [e for e in sideband if e["type"] == "session.input_audio.append"]
    assert len(reflected) == (2000 + 400 + 2600 + 1000) // 20


def test_live_core_wake_waits_for_session_started() -> None:
    clock = Clock()
    live = live_core(clock)
    assert run(live, tone(400), clock)  # the wake's audio goes upstream at once
    assert to_client(live) == []
    live.upstream_message(started())
    assert [e["type"] for e in to_client(live)] == ["session.started", "session.resumed"]


def test_live_core_model_output_keeps_the_session_awake() -> None:
    clock = Clock()
    live = live_core(clock)
    live.upstream_message(started())
    run(live, tone(400), clock)
    to_client(live)
    for _ in range(4):
        run(live, silence(900), clock)
        live.upstream_message(json.dumps({
            "type": "session.output_transcript.delta", "event_id": "e", "delta": "Hi",
            "start_ms": 0, "end_ms": 100}))
    assert [e["type"] for e in to_client(live)] == ["session.output_transcript.delta"] * 4
    # Model audio queued for the track keeps it awake while it plays.
    pcm = tone(3000)
    live.upstream_message(json.dumps({"type": "session.output_audio.delta", "event_id": "e",
                                      "delta": base64.b64encode(pcm).decode()}))
    run(live, silence(2900), clock)  # longer than the timeout since the delta arrived
    assert to_client(live) == []
    run(live, silence(2300), clock)
    assert [e["type"] for e in to_client(live)] == ["session.paused"]


def test_live_core_wake_usage_and_hangup_count_active_and_paused_seconds() -> None:
    clock = Clock()
    live = live_core(clock)
    live.upstream_message(started())
    run(live, silence(5000) + tone(400) + silence(3000), clock)
    to_client(live)
    live.upstream_message(json.dumps({"type": "session.usage.updated", "event_id": "e",
                                      "usage": {"seconds": 3}}))
    [usage] = to_client(live)
    assert usage["usage"]["seconds"] == 8
    assert usage["usage"]["paused_seconds"] == 5
    assert usage["usage"]["active_seconds"] == 3
    live.hang_up()
    [closed] = to_client(live)
    assert closed["type"] == "session.closed"
    assert closed["usage"]["active_seconds"] + closed["usage"]["paused_seconds"] == 8


def test_live_core_wake_settings_cannot_change_mid_session() -> None:
    clock = Clock()
    live = live_core(clock)
    live.upstream_message(started())
    to_client(live)
    live.client_message(json.dumps({"type": "session.update", "event_id": "c1",
                                    "session": {"idle_timeout_s": 30}}))
    [error] = to_client(live)
    assert error["error"]["code"] == "immutable_parameter"
    assert error["error"]["param"] == "session.idle_timeout_s"
    assert error["client_event_id"] == "c1"
    assert live.drain_upstream() == []


def test_live_core_without_wake_policy_forwards_everything() -> None:
    clock = Clock()
    live = live_core(clock, {"model": "gpt-live-1"})
    upstream = run(live, silence(1000), clock)
    assert len(upstream) == 50 and live.stats.uplink_samples == 24000
