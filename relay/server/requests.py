"""Reading what clients send: the call's SDP offer (raw, or a multipart form in any part
shape), JSON bodies and query parameters. Every failure is an :class:`InvalidRequest`
naming what was wrong, so the HTTP layer answers it in the API's JSON error shape."""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import parse_content_disposition

from ..errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from ..protocol.json_input import load_json
from ..protocol.realtime.session_config import Session, normalize_session
from .http_errors_log import http_error_text

#: Largest SDP offer, and largest form part.
MAX_SDP_BYTES = 256 * 1024
#: Parts a call's form may have (it needs two: ``sdp`` and ``session``).
MAX_FORM_PARTS = 16


async def read_offer(request: web.Request, max_bytes: int = MAX_SDP_BYTES,
                     ) -> tuple[str, Session | None]:
    """The SDP offer of a ``POST /v1/realtime/calls`` and its session, if the form has one;
    :class:`PayloadTooLarge` for an offer (or form part) over ``max_bytes``. (What the
    offer must hold, :func:`relay.webrtc.peer.answer` checks before aiortc sees it.)"""
    kind = request.content_type
    if kind == "multipart/form-data":
        parts = await _read_form(request, ("sdp", "session"), max_bytes)
        sdp = parts.get("sdp")
        if not sdp:
            raise InvalidRequest("The form has no 'sdp' part.", code="missing_required_parameter",
                                 param="sdp")
        raw_session = parts.get("session")
        session = None
        if raw_session:
            value = load_json(raw_session, what="The 'session' part", param="session")
            session = normalize_session(value)
        return sdp, session
    if kind in ("application/sdp", "text/plain", "application/octet-stream", ""):
        body = await read_body(request)
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"The SDP offer is larger than {max_bytes} bytes.",
                                  param="sdp")
        return body_text(request, body, "The SDP offer", "sdp"), None
    raise UnsupportedMediaType(
        f"Unsupported Content-Type {kind!r}: send application/sdp or multipart/form-data."
    )


async def _read_form(request: web.Request, names: tuple[str, ...],
                     max_bytes: int) -> dict[str, str]:
    """The text of the form parts called ``names``; other parts are read and dropped.

    The parts are read here rather than with ``request.post()``, which hands a part over
    as ``str``, ``bytes`` or a file depending on its headers, decodes only ``text/*``
    parts with their charset, and fails without naming the part. Here every part is
    bytes decoded with its own charset (UTF-8 by default), whatever its Content-Type and
    whether or not it carries a filename, and every error names the part.
    """
    texts: dict[str, str] = {}
    try:
        reader = await request.multipart()
        for _ in range(MAX_FORM_PARTS):
            next_part = await reader.next()
            if next_part is None:
                return texts
            part, name = _named_part(next_part)
            data = await _read_part(part, name, max_bytes)
            if name in names:
                if name in texts:
                    raise InvalidRequest(f"The form has more than one {name!r} part.",
                                         code="invalid_value", param=name)
                texts[name] = _part_text(part, data, name)
    except (ValueError, RuntimeError, HttpProcessingError) as exc:
        # aiohttp's words for a malformed body: bad boundaries, and header lines that are
        # too long, too many or not headers at all (its HTTP parser's errors)
        raise InvalidRequest(f"The multipart/form-data body is malformed: {http_error_text(exc)}",
                             code="invalid_multipart", param=None) from exc
    except web.RequestPayloadError as exc:
        raise _unreadable(exc) from exc
    raise InvalidRequest(f"The form has more than {MAX_FORM_PARTS} parts.",
                         code="invalid_multipart")


def _named_part(part: MultipartReader | BodyPartReader) -> tuple[BodyPartReader, str]:
    if isinstance(part, MultipartReader):  # a part that is itself multipart/mixed
        _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        raise InvalidRequest("A form part may not be multipart itself.",
                             code="invalid_value", param=params.get("name"))
    if not part.name:
        raise InvalidRequest("A form part has no name in its Content-Disposition.",
                             code="invalid_multipart")
    return part, part.name


async def _read_part(part: BodyPartReader, name: str, max_bytes: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"The {name!r} part is larger than {max_bytes} bytes.",
                                  param=name)
    return bytes(data)


def _part_text(part: BodyPartReader, data: bytes, name: str) -> str:
    """``data`` decoded per the part's headers: transfer encoding, then charset."""
    charset = part.get_charset(default="utf-8")
    try:
        return bytes(part.decode(data)).decode(charset)
    except LookupError as exc:
        raise InvalidRequest(f"The {name!r} part names an unknown charset {charset!r}.",
                             code="invalid_value", param=name) from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The {name!r} part is not valid {charset} text.",
                             code="invalid_value", param=name) from exc
    except (ValueError, RuntimeError) as exc:  # bad base64, unknown transfer encoding
        raise InvalidRequest(f"The {name!r} part could not be decoded: {exc}",
                             code="invalid_value", param=name) from exc


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object (in its charset, UTF-8 by default), within the
    limits of :func:`~relay.protocol.json_input.load_json`."""
    text = body_text(request, await read_body(request), "The body", None)
    value = load_json(text, what="The body")
    if not isinstance(value, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_type")
    return value


async def read_body(request: web.Request) -> bytes:
    """The request's body, its ``Content-Encoding`` undone; :class:`InvalidRequest` when
    it cannot be (gzip that is not gzip, a broken chunked encoding)."""
    try:
        return await request.read()
    except web.RequestPayloadError as exc:
        raise _unreadable(exc) from exc


def body_text(request: web.Request, body: bytes, what: str, param: str | None) -> str:
    """``body`` decoded with the charset its ``Content-Type`` names (UTF-8 when none):
    :class:`UnsupportedMediaType` for a charset Python does not know as a text encoding,
    :class:`InvalidRequest` for bytes that are not text in it."""
    charset = request.charset or "utf-8"
    try:
        return body.decode(charset)
    except LookupError as exc:  # no such codec, or one that is not text (base64, rot13)
        raise UnsupportedMediaType(f"Unsupported charset {charset[:40]!r}.",
                                   code="unsupported_charset", param=param) from exc
    except ValueError as exc:  # UnicodeError, of any codec
        raise InvalidRequest(f"{what} is not valid {charset[:40]} text.",
                             code="invalid_offer" if param == "sdp" else "invalid_value",
                             param=param) from exc


def _unreadable(exc: web.RequestPayloadError) -> InvalidRequest:
    return InvalidRequest(f"The request body could not be read: {http_error_text(exc)}",
                          code="invalid_body")


def dcid_param(value: str | None) -> int | None:
    """``?dcid=N``: the id of a negotiated ``oai-events`` channel, or None."""
    if value is None:
        return None
    # isdigit() is true of "²" and "①" too, and int() refuses over 4300 digits.
    if not (value.isascii() and value.isdigit() and len(value) <= 5) or int(value) > 65534:
        raise InvalidRequest("dcid must be a data channel id from 0 to 65534.",
                             code="invalid_value", param="dcid")
    return int(value)


def expires_after_seconds(body: dict[str, Any], default: int) -> int:
    """A client-secret request's lifetime: ``expires_after.seconds`` (anchored at
    ``created_at``, the only anchor), else ``default``; :class:`InvalidRequest` naming the
    field otherwise. Its range is the minting's to check."""
    expires = body.get("expires_after") or {}
    if not isinstance(expires, dict):
        raise InvalidRequest("expires_after must be an object", code="invalid_type",
                             param="expires_after")
    if expires.get("anchor", "created_at") != "created_at":
        raise InvalidRequest("expires_after.anchor must be 'created_at'", code="invalid_value",
                             param="expires_after.anchor")
    ttl = expires.get("seconds", default)
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise InvalidRequest("expires_after.seconds must be an integer", code="invalid_type",
                             param="expires_after.seconds")
    return ttl


def record_field(body: dict[str, Any]) -> bool:
    """A client-secret request's ``"record"`` (the relay's own field): whether the calls
    made with the key are recorded; absent means no."""
    record = body.get("record", False)
    if not isinstance(record, bool):
        raise InvalidRequest("record must be true or false", code="invalid_type",
                             param="record")
    return record


def record_param(value: str | None) -> bool:
    """``?record=true|false`` on ``POST /v1/realtime/calls`` (a server key's call)."""
    if value is None:
        return False
    if value.lower() not in ("true", "false", "1", "0"):
        raise InvalidRequest("record must be true or false.", code="invalid_value",
                             param="record")
    return value.lower() in ("true", "1")
