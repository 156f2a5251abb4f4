"""Log lines a person (``text``) or a log pipeline (``json``) can follow.

Every line about a call carries its id: code logs through a :class:`CallLog` made for
the call, which puts ``call <id>:`` in front of the message and hands the id to the
formatter as a field (no message is parsed). A worker of ``relay serve --workers N`` names
itself on each line (``worker 1`` in text, a ``worker`` field in JSON). Secrets the relay
was given (its keys, the upstream's headers) are masked in whatever a line says, as a last
guard: the code itself never logs a key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, MutableMapping
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Loggers that are chatty at INFO (aioice and aiortc about every candidate pair).
#: The MCP client's HTTP library logs every request's URL at INFO: an MCP server_url may
#: carry a token, so it is held to warnings like the others.
NOISY = ("aioice", "aiortc", "websockets", "httpx2", "mcp")
#: Shortest string treated as a secret to mask (shorter ones would mask ordinary words).
MIN_SECRET = 8


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """``logger``, for lines about the call ``call_id``."""

    def __init__(self, logger: logging.Logger, call_id: str) -> None:
        super().__init__(logger, {"call_id": call_id})
        self.call_id = call_id
        self._prefix = f"call {call_id.replace('%', '%%')}: "

    def process(self, msg: Any,
                kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix the message with the call and pass its id as the record's ``call_id``."""
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "call_id": self.call_id}
        return self._prefix + str(msg), kwargs


class _Masking(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None,
                 worker: int | None = None) -> None:
        super().__init__(fmt)
        self.worker = worker
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len,
                               reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class TextFormatter(_Masking):
    """``time LEVEL logger: message`` (``time LEVEL worker N logger: message`` in a
    worker), secrets masked."""

    def __init__(self, secrets: Iterable[str] = (), worker: int | None = None) -> None:
        fmt = TEXT_FORMAT if worker is None else TEXT_FORMAT.replace(
            "%(name)s", f"worker {worker} %(name)s")
        super().__init__(secrets, fmt, worker)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text."""
        return self.mask(super().format(record))


class JsonFormatter(_Masking):
    """One JSON object a line: time, level, logger, message, ``worker`` in a worker, and
    ``call_id`` when the line is about a call; an exception's traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            line["worker"] = self.worker
        call_id = getattr(record, "call_id", None)
        if isinstance(call_id, str):
            line["call_id"] = call_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self.mask(json.dumps(line, ensure_ascii=False, default=str))


def configure_logging(level: str, fmt: LogFormat = "text", *, secrets: Iterable[str] = (),
                      stream: IO[str] | None = None, worker: int | None = None,
                      ) -> logging.Handler:
    """Send the root logger's lines at ``level`` and up to ``stream`` (stderr) in ``fmt``,
    naming ``worker`` on each if given; returns the handler (replacing any the root had)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets, worker=worker) if fmt == "json"
                         else TextFormatter(secrets, worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
