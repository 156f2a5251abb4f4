"""What the log says about HTTP requests aiohttp itself refuses.

aiohttp answers a malformed request (a header line too long or with a NUL in it, a bad
request line, a body whose ``Content-Encoding`` does not decode) with a 400 before the
relay's handlers see it, and logs an ERROR with a full traceback for each: anyone who can
reach the port can fill the log. :class:`MalformedRequestLog` stands in for aiohttp's
server logger in the relay's app (``handler_args``): such a request is worth one INFO line,
and at most one a :data:`INTERVAL` (the rest are counted into the next line, and each
logged at DEBUG), never a traceback. Anything else aiohttp logs (a bug of ours, above all)
goes through untouched.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

#: Shortest time between two INFO lines about malformed requests, seconds.
INTERVAL = 10.0


class MalformedRequestLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, with clients' malformed requests made quiet."""

    def __init__(self, logger: logging.Logger, *, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logger, {})
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        #: Malformed requests not yet counted in an INFO line.
        self._unreported = 0

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        """aiohttp's ``logger.exception``: a client's fault gets a short line instead."""
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if exc is not None and client_fault(exc):
            self._malformed(str(msg) % args if args else str(msg), exc)
            return
        kwargs.setdefault("stacklevel", 2)
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        """aiohttp's ``logger.debug``: it logs a first request that is not HTTP at all
        (TLS on the port, a scanner) here, with a traceback; that too gets the line."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, BaseException) and client_fault(exc):
            self._malformed(str(msg) % args if args else str(msg), exc)
            return
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """Nothing added: the adapter exists for :meth:`exception`."""
        return msg, kwargs

    def _malformed(self, what: str, exc: BaseException) -> None:
        self._unreported += 1
        # aiohttp says "Error handling request from <address>", or "Unhandled exception"
        # for a body it could not read after the handler answered.
        _, sep, remote = what.partition(" from ")
        line = f"{http_error_text(exc)}{', from ' + remote if sep else ''}"
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self.logger.debug("malformed request (%s)", line)
            return
        more = self._unreported - 1
        self.logger.info("malformed request answered 400 (%s)%s", line,
                         f"; {more} more since the last such line" if more else "")
        self._last, self._unreported = now, 0


def client_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is aiohttp's word for a request the client got wrong."""
    return isinstance(exc, HttpProcessingError | web.RequestPayloadError)


def http_error_text(exc: BaseException) -> str:
    """``exc`` on one short line (aiohttp's messages span lines and quote the bytes)."""
    inner = exc.__cause__ if isinstance(exc, web.RequestPayloadError) and exc.__cause__ else exc
    text = " ".join(str(getattr(inner, "message", "") or inner).split())
    text = text or type(inner).__name__
    return text if len(text) <= 160 else text[:160] + "…"


def handler_args() -> Mapping[str, Any]:
    """The app's ``handler_args``: its server's logger is a :class:`MalformedRequestLog`."""
    return {"logger": MalformedRequestLog(logging.getLogger("aiohttp.server"))}
