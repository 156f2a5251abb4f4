"""Session merging and alias translation."""

import pytest

from relay.errors import InvalidRequest
from relay.protocol.realtime.session_config import (
    PCM24K,
    deep_merge,
    interrupt_response,
    normalize_session,
    pin_relay_formats,
)


def test_deep_merge_objects_merge_and_scalars_replace() -> None:
    base = {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.5}}},
            "tools": [1]}
    update = {"audio": {"input": {"turn_detection": {"threshold": 0.8}}}, "tools": [2]}
    merged = deep_merge(base, update)
    assert merged["audio"]["input"]["turn_detection"] == {"type": "server_vad", "threshold": 0.8}
    assert merged["tools"] == [2]
    assert base["audio"]["input"]["turn_detection"]["threshold"] == 0.5  # untouched


def test_deep_merge_null_replaces_an_object() -> None:
    merged = deep_merge({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}},
                        {"audio": {"input": {"turn_detection": None}}})
    assert merged["audio"]["input"]["turn_detection"] is None


def test_normalize_session_translates_flat_aliases() -> None:
    session = normalize_session({
        "modalities": ["text", "audio"], "voice": "verse", "input_audio_format": "g711_ulaw",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        "input_audio_transcription": {"model": "whisper-1"},
        "max_response_output_tokens": 200, "instructions": "hi",
    })
    assert session == {
        "type": "realtime", "output_modalities": ["audio"], "instructions": "hi",
        "max_output_tokens": 200,
        "audio": {
            "input": {"format": {"type": "audio/pcmu"},
                      "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                      "transcription": {"model": "whisper-1"}},
            "output": {"voice": "verse"},
        },
    }


def test_normalize_session_unwraps_the_older_session_envelope() -> None:
    assert normalize_session({"session": {"type": "realtime", "instructions": "x"}}) == {
        "type": "realtime", "instructions": "x"}


def test_normalize_session_ga_fields_win_over_aliases() -> None:
    session = normalize_session({"voice": "alloy", "audio": {"output": {"voice": "marin"}}})
    assert session["audio"]["output"]["voice"] == "marin"


@pytest.mark.parametrize("bad", [{"type": "translation"}, {"input_audio_format": "mp3"},
                                 {"audio": "loud"}, {"modalities": "audio"}])
def test_normalize_session_rejects_what_cannot_work(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest) as info:
        normalize_session(bad)
    assert info.value.status == 400 and info.value.param


def test_pin_relay_formats_forces_pcm_both_ways() -> None:
    session = pin_relay_formats({"audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    assert session["audio"]["input"]["format"] == PCM24K
    assert session["audio"]["output"]["format"] == PCM24K


def test_interrupt_response_follows_turn_detection() -> None:
    assert interrupt_response({})
    assert interrupt_response({"audio": {"input": {"turn_detection": None}}})
    td = {"type": "server_vad", "interrupt_response": False}
    assert not interrupt_response({"audio": {"input": {"turn_detection": td}}})
