"""Reading JSON that strangers send: the one parser for every place JSON comes in (data
channel, sideband, upstream messages, request bodies, a call's ``session`` part).

Python's parser recurses once per level of nesting, so a message of 10 000 nested arrays
raises :class:`RecursionError` (not a :class:`ValueError`), and a value nested just under
that limit may still raise later, wherever it is walked or encoded again. JSON escapes can
also carry lone surrogates (``"\\ud800"``), which are not text: the UTF-8 encoder of the
upstream's WebSocket raises on them and the call's upstream socket dies with it.
:func:`load_json` refuses both with an :class:`~relay.errors.InvalidRequest` (code
``invalid_json``, or ``invalid_value`` naming the field of a lone surrogate), so no
caller has to know about either.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidRequest

#: Deepest nesting of arrays and objects taken (the API's events nest about 6 levels; a
#: tool's JSON schema a few more per level of its parameters).
MAX_DEPTH = 64

#: A JSON escape of a UTF-16 surrogate: only text holding one can decode to a lone
#: surrogate (a strict UTF-8 decode never yields one), so text without it skips the walk.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(text: str | bytes, *, what: str = "The message",
              param: str | None = None) -> Any:
    """The JSON value of ``text`` (UTF-8 when bytes), within :data:`MAX_DEPTH` levels and
    free of lone surrogates; :class:`InvalidRequest` otherwise. ``what`` names the text in
    the error's message and ``param`` in its ``param`` (paths inside it follow)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{what} is not UTF-8 text.", code="invalid_json",
                                 param=param) from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise _too_deep(what, param) from exc
    except ValueError as exc:
        raise InvalidRequest(f"{what} could not be parsed as JSON.", code="invalid_json",
                             param=param) from exc
    # Fewer brackets than the limit cannot nest deeper; no surrogate escape, no surrogate.
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    if deep or _SURROGATE_ESCAPE.search(text):
        _check(value, what, param)
    return value


def _too_deep(what: str, param: str | None) -> InvalidRequest:
    return InvalidRequest(f"{what} nests arrays and objects deeper than {MAX_DEPTH} levels.",
                          code="invalid_json", param=param)


def _check(value: Any, what: str, param: str | None) -> None:
    """Walk ``value`` (without recursion): depth, and every string and key for surrogates."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 0, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _surrogate(what, param, path)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep(what, param)
            if isinstance(item, dict):
                for key, inner in item.items():
                    if _SURROGATE.search(key):
                        raise _surrogate(what, param, path)
                    stack.append((inner, depth + 1, (*path, key)))
            else:
                stack.extend((inner, depth + 1, (*path, index))
                             for index, inner in enumerate(item))


def _surrogate(what: str, param: str | None, path: tuple[str | int, ...]) -> InvalidRequest:
    where = json_path(param, path)
    named = f" (at {where})" if where else ""
    return InvalidRequest(f"{what} holds a lone UTF-16 surrogate{named}, which is not text.",
                          code="invalid_value", param=where or None)


def json_path(root: str | None, path: tuple[str | int, ...]) -> str:
    """``root.a.b[2]`` for the path ``("a", "b", 2)`` under ``root``."""
    out = root or ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out
