"""The relay's one exception tree.

Every error the relay raises on purpose derives from :class:`RelayError` and carries the
fields of the Realtime API's JSON error shape, so the HTTP layer and the data channel turn
any of them into ``{"error": {"message", "type", "code", "param"}}`` in one place::

    RelayError                      status 500, type "server_error"
    ├── InvalidRequest              400, "invalid_request_error" (bad SDP, bad JSON, bad session)
    │   ├── UnsupportedMediaType    415
    │   └── PayloadTooLarge         413, code "payload_too_large" (body, SDP, form part)
    ├── RateLimited                 429, code "rate_limit_exceeded" (with Retry-After)
    ├── AuthenticationFailed        401, "invalid_request_error", code "invalid_api_key"
    ├── CallNotFound                404, code "call_id_not_found"
    │   └── LiveSessionNotFound     404, code "session_not_found" (a GPT-Live session)
    ├── RecordingNotFound           404, code "recording_not_found" (no recording of that call)
    ├── RecordingInProgress         409, code "recording_in_progress" (the call is live)
    ├── SessionInProgress           409, code "session_in_progress" (a fork of a stored
    │                               Live session that has not ended, or is being written)
    ├── NotSupported                400, code "not_supported" (an endpoint the relay does not
    │                               serve: a 4xx, so clients do not retry it)
    ├── ResumeRefused               403, code "resume_token_invalid" (or "..._required"): a
    │                               resume without the call's own resume token
    ├── CapacityExceeded            503, code "capacity_exceeded" (with Retry-After)
    │   └── UdpPortsExhausted       503, code "udp_ports_exhausted" (every port of the range in use)
    ├── Draining                    503, code "relay_draining" (stopping: no new calls;
    │                               with Retry-After)
    ├── ShuttingDown                code "server_shutting_down": the ``error`` event of a call
    │                               the relay ends at the end of its drain (never an HTTP answer)
    ├── UpstreamError               502, "server_error" (the Realtime WebSocket failed)
    ├── RoutingUnavailable          503, code "routing_unavailable" (the call's owning relay
    │                               cannot be found or reached: Redis down, owner silent)
    ├── RoutingLoop                 508, code "routing_loop" (a forwarded request met a relay
    │                               that does not own the call either)
    ├── ConfigError                 500, code "invalid_setting" (a setting cannot work; at startup)
    ├── AgentFailed                 500, code "agent_error" (a call's server-side agent failed)
    ├── SpeechError                 500, code "speech_failed" (the local server's recognizer or
    │                               synthesizer is missing or failed)
    ├── AiortcInternalsMoved        500, aiortc moved what relay.webrtc.internals reaches
    └── CallCreationFailed          the status a server answered the client (relay.client)

An error may carry ``retry_after`` (seconds): the HTTP layer sends it as ``Retry-After``.

Messages never contain secrets: callers pass only what is safe to show a client.
"""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    """Root of the tree: an error with the fields of the API's JSON error shape."""

    status: int = 500
    type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        #: Seconds after which trying again may succeed (``Retry-After``), if known.
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON error body: ``{"error": {message, type, code, param}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }


class InvalidRequest(RelayError):
    """The client sent something the relay cannot use (SDP, JSON, session, event)."""

    status = 400
    type = "invalid_request_error"


class UnsupportedMediaType(InvalidRequest):
    """The request body is in an encoding this endpoint does not take."""

    status = 415
    default_code = "unsupported_content_type"


class PayloadTooLarge(InvalidRequest):
    """The request body, the SDP offer or a form part is over its configured size."""

    status = 413
    default_code = "payload_too_large"


class RateLimited(RelayError):
    """A key or a client address is over one of its limits (calls at once, call rate)."""

    status = 429
    type = "invalid_request_error"
    default_code = "rate_limit_exceeded"


class AuthenticationFailed(RelayError):
    """Missing, unknown or expired bearer key."""

    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class CallNotFound(RelayError):
    """No live call has that id (never had, or it has ended)."""

    status = 404
    type = "invalid_request_error"
    default_code = "call_id_not_found"

    def __init__(self) -> None:
        super().__init__("No session found for the provided call_id", param="")


class LiveSessionNotFound(CallNotFound):
    """No live GPT-Live session has that id (never had, or it has ended)."""

    default_code = "session_not_found"

    def __init__(self) -> None:
        RelayError.__init__(self, "No Live session found for the provided session_id.",
                            param="session_id")


class RecordingNotFound(RelayError):
    """No recording of that call here: it was not recorded, or retention removed it."""

    status = 404
    type = "invalid_request_error"
    default_code = "recording_not_found"

    def __init__(self) -> None:
        super().__init__("No recording found for the provided call_id", param="call_id")


class RecordingInProgress(RelayError):
    """The call is still being recorded: its recording is ready once it has ended."""

    status = 409
    type = "invalid_request_error"
    default_code = "recording_in_progress"

    def __init__(self) -> None:
        super().__init__("The call is still being recorded; its recording is ready once "
                         "it has ended.", param="call_id")


class SessionInProgress(RelayError):
    """A stored GPT-Live session cannot be forked yet: it is live, or its recording is
    still being finished."""

    status = 409
    type = "invalid_request_error"
    default_code = "session_in_progress"

    def __init__(self) -> None:
        super().__init__("The Live session has not ended yet (or its recording is still "
                         "being written): fork it once it has ended.", param="session_id")


class NotSupported(RelayError):
    """An endpoint of the API that the relay does not serve."""

    status = 400
    type = "invalid_request_error"
    default_code = "not_supported"


class ResumeRefused(RelayError):
    """A resume of a call (``POST .../resume``) without that call's resume token."""

    status = 403
    type = "invalid_request_error"
    default_code = "resume_token_invalid"


class CapacityExceeded(RelayError):
    """The relay is at its configured limit of concurrent calls."""

    status = 503
    default_code = "capacity_exceeded"


class UdpPortsExhausted(CapacityExceeded):
    """Every UDP port of the relay's configured range is taken by live calls."""

    default_code = "udp_ports_exhausted"


class Draining(RelayError):
    """The relay is stopping (SIGTERM): it takes no new calls, its live calls go on."""

    status = 503
    default_code = "relay_draining"


class ShuttingDown(RelayError):
    """Sent to a live call's client (and sidebands) as an ``error`` event when the relay
    ends the call because it is stopping."""

    default_code = "server_shutting_down"


class UpstreamError(RelayError):
    """The Realtime WebSocket upstream could not be reached or closed on us."""

    status = 502
    default_code = "upstream_error"


class SpeechError(RelayError):
    """The embedded server could not recognize or synthesize speech: the ``speech`` extra
    is not installed, or its engine failed."""

    default_code = "speech_failed"


class ConfigError(RelayError):
    """A setting's value cannot work. The message names the setting as a person sets it
    (``RELAY_PORT / --port``) and ``param`` is its field name in ``Settings``."""

    default_code = "invalid_setting"


class AgentFailed(RelayError):
    """A call's server-side agent (``relay serve --agent``) failed or did not start; the
    call goes on without it. Sent to the client as an ``error`` event, never raised to it."""

    default_code = "agent_error"


class RoutingUnavailable(RelayError):
    """A follow-up request names a call another relay owns, and that relay cannot be found
    or reached now (Redis is down, or the owner did not answer). Calls this relay owns are
    unaffected."""

    status = 503
    default_code = "routing_unavailable"


class RoutingLoop(RelayError):
    """A request another relay forwarded reached a relay that does not own its call either
    (two relays advertise one address): it is not forwarded again."""

    status = 508
    default_code = "routing_loop"
