"""What the local server accepts in a session and in ``response.create``: every field it
knows, checked against its documented range, and every field it does not know refused.

A developer who builds against the local server offline must meet the hosted service's
behaviour, so no field is silently ignored: each one is honoured (see the table in the
package docstring and the README) or refused with an ``invalid_request_error`` that names
the parameter, as the hosted service refuses it. The ranges are the hosted API's:

- ``audio.output.speed``: a number from 0.25 to 1.5;
- ``audio.input.turn_detection``: ``server_vad`` (``threshold`` 0..1, durations >= 0,
  ``idle_timeout_ms`` null or 5000..30000) or ``semantic_vad`` (``eagerness`` low, medium,
  high or auto); ``idle_timeout_ms`` exists for ``server_vad`` only;
- ``audio.input.noise_reduction``: null or ``{"type": "near_field" | "far_field",
  "strength"?: number >= 0}``;
- ``include``: a list of ``item.input_audio_transcription.logprobs`` (honoured: the
  recognizer reports each word's posterior, :data:`LOGPROBS_AVAILABLE`);
- ``max_output_tokens``: an integer from 1 to 4096, or ``"inf"``;
- ``truncation``: ``"auto"``, ``"disabled"`` or ``{"type": "retention_ratio",
  "retention_ratio": 0..1, "token_limits"?: {"post_instructions"?: integer >= 0}}``;
- ``tracing``: null, ``"auto"`` or ``{workflow_name?, group_id?, metadata?}``;
- ``prompt`` (a stored prompt template) and ``reasoning`` (reasoning models only) are
  refused: this server has neither.

Unknown keys are refused with code ``unknown_parameter`` at every level this module
checks (the session, ``audio`` and its sides, turn detection, noise reduction,
truncation, tracing, and ``response.create``'s ``response``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidRequest

#: The session's own fields; ``object``, ``id``, ``model`` and ``expires_at`` are the
#: server's (a session the relay copies from ``session.created`` or a minted key's answer
#: carries them), so they are taken and left alone.
SESSION_KEYS = frozenset({
    "type", "object", "id", "model", "expires_at", "output_modalities", "instructions",
    "audio", "include", "tools", "tool_choice", "max_output_tokens", "tracing",
    "truncation", "prompt", "parallel_tool_calls", "reasoning",
})
RESPONSE_KEYS = frozenset({
    "audio", "conversation", "input", "instructions", "max_output_tokens", "metadata",
    "output_modalities", "parallel_tool_calls", "prompt", "reasoning", "tool_choice",
    "tools",
})
_AUDIO_KEYS = frozenset({"input", "output"})
_INPUT_KEYS = frozenset({"format", "transcription", "noise_reduction", "turn_detection"})
_OUTPUT_KEYS = frozenset({"format", "voice", "speed"})
SERVER_VAD_KEYS = frozenset({"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
                             "idle_timeout_ms", "create_response", "interrupt_response"})
#: ``model_version`` picks the hosted turn detector's model (openai-agents-js sends it when
#: set); any is taken, as any transcription model is: one energy VAD serves them all.
SEMANTIC_VAD_KEYS = frozenset({"type", "eagerness", "create_response", "interrupt_response",
                               "model_version"})
_NOISE_KEYS = frozenset({"type", "strength"})
_TRACING_KEYS = frozenset({"workflow_name", "group_id", "metadata"})
_RETENTION_KEYS = frozenset({"type", "retention_ratio", "token_limits"})

SPEED_RANGE = (0.25, 1.5)
IDLE_TIMEOUT_RANGE_MS = (5000, 30000)
MAX_OUTPUT_TOKENS = 4096
EAGERNESS = ("low", "medium", "high", "auto")
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
INCLUDE_VALUES = ("item.input_audio_transcription.logprobs",)
#: Whether the recognizer reports word log probabilities (pocketsphinx's word posteriors:
#: relay.upstream.local.recognizer); were it not to, asking for them would be refused.
LOGPROBS_AVAILABLE = True
TRUNCATION_MODES = ("auto", "disabled")


def check_session(session: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequest` naming the parameter unless every field of a (merged,
    GA-shaped) realtime session is one this server knows, in its documented range."""
    unknown_keys(session, SESSION_KEYS, "session")
    if session.get("instructions") is not None and not isinstance(session["instructions"], str):
        raise _invalid_type("session.instructions", "a string")
    audio = session.get("audio")
    if isinstance(audio, Mapping):
        _check_audio(audio)
    _check_include(session.get("include"))
    check_max_output_tokens(session.get("max_output_tokens"), "session.max_output_tokens")
    _check_truncation(session.get("truncation"))
    _check_tracing(session.get("tracing"))
    _refuse_unavailable(session, "session")


def check_response(overrides: Mapping[str, Any]) -> None:
    """The same for ``response.create``'s ``response`` object (what its own checks, of
    modalities, formats, tools and input, do not cover)."""
    unknown_keys(overrides, RESPONSE_KEYS, "response")
    if "max_output_tokens" in overrides:
        check_max_output_tokens(overrides["max_output_tokens"], "response.max_output_tokens")
    if overrides.get("instructions") is not None and not isinstance(overrides["instructions"],
                                                                     str):
        raise _invalid_type("response.instructions", "a string")
    audio = overrides.get("audio")
    if audio is not None:
        if not isinstance(audio, Mapping):
            raise _invalid_type("response.audio", "an object")
        unknown_keys(audio, frozenset({"output"}), "response.audio")
        output = audio.get("output")
        if output is not None:
            if not isinstance(output, Mapping):
                raise _invalid_type("response.audio.output", "an object")
            unknown_keys(output, frozenset({"format", "voice"}), "response.audio.output")
    _refuse_unavailable(overrides, "response")


def unknown_keys(value: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Refuse the first key of ``value`` not in ``known``, as the hosted API does."""
    for key in value:
        if key not in known:
            raise InvalidRequest(f"Unknown parameter: '{where}.{key}'.",
                                 code="unknown_parameter", param=f"{where}.{key}")


def check_max_output_tokens(value: Any, param: str) -> None:
    """``max_output_tokens``: an integer from 1 to 4096, or ``"inf"`` (None: unset)."""
    if value is None or value == "inf":
        return
    if not _is_int(value) or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise InvalidRequest(
            f"Invalid '{param}': expected an integer between 1 and {MAX_OUTPUT_TOKENS}, "
            f"or 'inf', but got {_show(value)}.", code="invalid_value", param=param)


def check_turn_detection_keys(turn: Mapping[str, Any]) -> None:
    """Refuse keys a turn detection of its type does not have, an ``idle_timeout_ms``
    out of range, and an ``eagerness`` the hosted API does not know."""
    base = "session.audio.input.turn_detection"
    semantic = turn.get("type") == "semantic_vad"
    if semantic and turn.get("idle_timeout_ms") is not None:
        raise InvalidRequest(
            "idle_timeout_ms is only supported for turn_detection type 'server_vad'.",
            code="invalid_value", param=f"{base}.idle_timeout_ms")
    allowed = SEMANTIC_VAD_KEYS if semantic else SERVER_VAD_KEYS
    unknown_keys({k: v for k, v in turn.items()
                  if not (semantic and k == "idle_timeout_ms")}, allowed, base)
    for key in ("create_response", "interrupt_response"):
        if turn.get(key) is not None and not isinstance(turn[key], bool):
            raise _invalid_type(f"{base}.{key}", "a boolean")
    if semantic:
        if turn.get("model_version") is not None and not isinstance(turn["model_version"], str):
            raise _invalid_type(f"{base}.model_version", "a string")
        if turn.get("eagerness", "auto") not in EAGERNESS:
            raise InvalidRequest(
                f"Invalid value: {_show(turn.get('eagerness'))}. Supported values are: "
                + ", ".join(f"'{e}'" for e in EAGERNESS) + ".",
                code="invalid_value", param=f"{base}.eagerness")
        return
    idle = turn.get("idle_timeout_ms")
    low, high = IDLE_TIMEOUT_RANGE_MS
    if idle is not None and (not _is_int(idle) or not low <= idle <= high):
        raise InvalidRequest(
            f"Invalid '{base}.idle_timeout_ms': expected an integer between {low} and "
            f"{high}, or null, but got {_show(idle)}.",
            code="invalid_value", param=f"{base}.idle_timeout_ms")


def _check_audio(audio: Mapping[str, Any]) -> None:
    unknown_keys(audio, _AUDIO_KEYS, "session.audio")
    side = audio.get("input")
    if isinstance(side, Mapping):
        unknown_keys(side, _INPUT_KEYS, "session.audio.input")
        _check_noise_reduction(side.get("noise_reduction"))
    side = audio.get("output")
    if isinstance(side, Mapping):
        unknown_keys(side, _OUTPUT_KEYS, "session.audio.output")
        _check_speed(side.get("speed"))


def _check_speed(speed: Any) -> None:
    low, high = SPEED_RANGE
    if speed is None:
        return
    if not _is_number(speed) or not low <= speed <= high:
        raise InvalidRequest(
            f"Invalid 'session.audio.output.speed': expected a number between {low} and "
            f"{high}, but got {_show(speed)}.",
            code="invalid_value", param="session.audio.output.speed")


def _check_noise_reduction(value: Any) -> None:
    param = "session.audio.input.noise_reduction"
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise _invalid_type(param, "an object or null")
    unknown_keys(value, _NOISE_KEYS, param)
    if value.get("type") not in NOISE_REDUCTION_TYPES:
        raise InvalidRequest(
            f"Invalid value: {_show(value.get('type'))}. Supported values are: "
            "'near_field' and 'far_field'.", code="invalid_value", param=f"{param}.type")
    strength = value.get("strength")
    if strength is not None and (not _is_number(strength) or strength < 0):
        raise InvalidRequest(
            f"Invalid '{param}.strength': expected a non-negative number, but got "
            f"{_show(strength)}.", code="invalid_value", param=f"{param}.strength")


def _check_include(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid_type("session.include", "an array")
    for index, entry in enumerate(value):
        param = f"session.include[{index}]"
        if entry not in INCLUDE_VALUES:
            raise InvalidRequest(
                f"Invalid value: {_show(entry)}. Supported values are: "
                "'item.input_audio_transcription.logprobs'.", code="invalid_value",
                param=param)
        if LOGPROBS_AVAILABLE:
            continue
        raise InvalidRequest(
            "This server's speech recognizer gives no log probabilities, so "
            f"'{entry}' cannot be included.", code="unsupported_value", param=param)


def _check_truncation(value: Any) -> None:
    param = "session.truncation"
    if value is None or value in TRUNCATION_MODES:
        return
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            f"Invalid value: {_show(value)}. Supported values are: 'auto', 'disabled' or "
            "a retention_ratio object.", code="invalid_value", param=param)
    unknown_keys(value, _RETENTION_KEYS, param)
    if value.get("type") != "retention_ratio":
        raise InvalidRequest(
            f"Invalid value: {_show(value.get('type'))}. Supported values are: "
            "'retention_ratio'.", code="invalid_value", param=f"{param}.type")
    ratio: Any = value.get("retention_ratio")
    if not _is_number(ratio) or not 0.0 <= ratio <= 1.0:
        raise InvalidRequest(
            f"Invalid '{param}.retention_ratio': expected a number between 0 and 1, but got "
            f"{_show(ratio)}.", code="invalid_value", param=f"{param}.retention_ratio")
    limits = value.get("token_limits")
    if limits is None:
        return
    if not isinstance(limits, Mapping):
        raise _invalid_type(f"{param}.token_limits", "an object")
    unknown_keys(limits, frozenset({"post_instructions"}), f"{param}.token_limits")
    post = limits.get("post_instructions")
    if post is not None and (not _is_int(post) or post < 0):
        raise InvalidRequest(
            f"Invalid '{param}.token_limits.post_instructions': expected a non-negative "
            f"integer, but got {_show(post)}.", code="invalid_value",
            param=f"{param}.token_limits.post_instructions")


def _check_tracing(value: Any) -> None:
    if value is None or value == "auto":
        return
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            f"Invalid value: {_show(value)}. Supported values are: 'auto', null or an object.",
            code="invalid_value", param="session.tracing")
    unknown_keys(value, _TRACING_KEYS, "session.tracing")
    for key in ("workflow_name", "group_id"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise _invalid_type(f"session.tracing.{key}", "a string")


def _refuse_unavailable(value: Mapping[str, Any], where: str) -> None:
    """Fields for things this server does not have: stored prompts, reasoning."""
    if value.get("prompt") is not None:
        raise InvalidRequest(
            "Stored prompt templates are not available on this server: send the "
            "instructions themselves.", code="unsupported_parameter", param=f"{where}.prompt")
    if value.get("reasoning") is not None:
        raise InvalidRequest(
            "reasoning is only supported by reasoning models, and this server's model is "
            "not one.", code="unsupported_parameter", param=f"{where}.reasoning")
    parallel = value.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _invalid_type(f"{where}.parallel_tool_calls", "a boolean")


def _invalid_type(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}.",
                          code="invalid_type", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _show(value: Any) -> str:
    """A value for an error message, short (a client's value may be huge)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
