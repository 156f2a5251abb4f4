"""The machinery behind the settings table: one declaration per setting, read many ways.

Each field of :class:`relay.config.Settings` is declared with :func:`setting`, which keeps,
beside its default, everything else about it: its environment variable and its
``relay serve`` flag, the :class:`Kind` of text both are parsed from, the values it
accepts, whether it is a secret, and the words that describe it in ``--help`` and in the
README. The functions here are generic over such a dataclass: they read an environment
mapping (handed in: only relay.config reads ``os.environ``), build the argparse flags and
read them back, validate, mask secrets, and render the README's table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar, cast

from .errors import ConfigError

T = TypeVar("T")

#: A check takes a setting's value and says what is wrong with it (``"must be …"``), or None.
Check = Callable[[Any], str | None]

#: Where a field keeps its :class:`Setting` in ``dataclasses.Field.metadata``.
_KEY = "relay.setting"


# ----------------------------------------------------------------- parsers


def parse_boolean(text: str) -> bool:
    """``on``/``off`` (also ``1``/``0``, ``true``/``false``, ``yes``/``no``)."""
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def split_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``"api-key: x"`` (one header per line) → ``(("api-key", "x"),)``."""
    headers = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(line)
        headers.append((name.strip(), value.strip()))
    return tuple(headers)


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object (anything else, or bad JSON, is a ``ValueError``)."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


@dataclass(frozen=True)
class Kind:
    """How a setting's text (an environment value, or one flag's argument) becomes a value."""

    #: Text → value; raises ``ValueError`` for text it cannot use.
    parse: Callable[[str], Any]
    #: What good text is, for error messages: ``"an integer"``.
    expected: str
    metavar: str = "TEXT"
    #: The flag may be given again; the values of every occurrence are joined.
    many: bool = False
    #: The flag is a ``--name`` / ``--no-name`` switch rather than taking an argument.
    switch: bool = False
    #: How the environment value is written, for the README (``"comma-separated"``).
    env_format: str = ""


TEXT = Kind(str, "text")
INTEGER = Kind(int, "an integer", "N")
NUMBER = Kind(float, "a number", "X")
BOOLEAN = Kind(parse_boolean, "on or off", switch=True)
LIST = Kind(split_list, "a comma-separated list", "A,B", many=True, env_format="comma-separated")
HEADERS = Kind(parse_headers, "'Name: value' lines", "'NAME: VALUE'", many=True,
               env_format="one per line")
JSON_OBJECT = Kind(parse_json_object, "a JSON object", "JSON", env_format="JSON")


def _kind_of(default: object) -> Kind:
    if isinstance(default, bool):
        return BOOLEAN
    if isinstance(default, int):
        return INTEGER
    if isinstance(default, float):
        return NUMBER
    if isinstance(default, tuple):
        return LIST
    if isinstance(default, Mapping):
        return JSON_OBJECT
    return TEXT


# ----------------------------------------------------------------- checks


def between(low: float, high: float, *, step: int = 1, unit: str = "") -> Check:
    """A check for numbers from ``low`` to ``high`` (and multiples of ``step``)."""
    multiple = f"a multiple of {step} " if step != 1 else ""
    problem = f"must be {multiple}from {low} to {high}" + (f" {unit}" if unit else "")

    def check(value: Any) -> str | None:
        in_steps = step == 1 or value % step == 0  # (with step 1, any float in range)
        return None if low <= value <= high and in_steps else problem
    return check


def positive(value: Any) -> str | None:
    """A check for numbers above zero."""
    return None if value > 0 else "must be positive"


# ----------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Setting:
    """Everything declared about one setting, beside its name and default."""

    help: str
    kind: Kind
    flag: str | None
    env: str | None
    choices: tuple[str, ...]
    check: Check | None
    secret: bool
    #: The default as ``--help`` and the README show it.
    shown: str
    metavar: str | None
    #: How a secret's value is shown (None: as ``'***'``).
    mask: Callable[[Any], str] | None = None
    #: The strings a secret's value holds that must never be shown (None: every string in
    #: it, and what follows the scheme word of ``Bearer KEY``-like values).
    reveals: Callable[[Any], Iterable[str]] | None = None
    #: Set by the relay for its own processes (a supervisor for its workers), not by a
    #: person: left out of the README's table.
    internal: bool = False

    def names(self, name: str) -> str:
        """How a person sets it: ``"RELAY_PORT / --port"`` (the field's name if neither)."""
        return " / ".join(n for n in (self.env, self.flag) if n) or name

    def read(self, text: str, name: str) -> Any:
        """The value ``text`` stands for, or :class:`ConfigError`."""
        try:
            return self.kind.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{self.names(name)} must be {self.kind.expected}",
                              param=name) from exc

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, or None."""
        if self.choices and value not in self.choices:
            return "must be one of " + ", ".join(self.choices)
        try:
            return self.check(value) if self.check else None
        except TypeError:  # e.g. a string passed for a number from code, not parsed text
            return f"must be {self.kind.expected}"


def setting(default: T, *, help: str, flag: str | None = None, env: str | None = None,
            kind: Kind | None = None, choices: Sequence[str] = (), check: Check | None = None,
            secret: bool = False, shown: str | None = None, metavar: str | None = None,
            mask: Callable[[Any], str] | None = None,
            reveals: Callable[[Any], Iterable[str]] | None = None,
            internal: bool = False) -> T:
    """Declare a dataclass field as a setting (see the module docstring).

    ``kind`` defaults to the one ``default``'s type suggests (text, integer, number, on/off,
    comma-separated list, JSON object); ``choices`` are checked, and offered by the flag;
    ``shown`` replaces the default's text in ``--help`` and the README; ``mask`` shows a
    secret's value with its secret parts hidden (by default it shows as ``'***'``), and
    ``reveals`` picks those parts out of it (by default, every string in it);
    ``internal`` settings are the relay's own business and stay out of the README's table.
    """
    spec = Setting(
        help=help, kind=kind or _kind_of(default), flag=flag, env=env, choices=tuple(choices),
        check=check, secret=secret, shown=_show(default) if shown is None else shown,
        metavar=metavar, mask=mask, reveals=reveals, internal=internal,
    )
    metadata = {_KEY: spec}
    if isinstance(default, dict):  # a mutable default: each instance gets its own copy
        return cast(T, field(default_factory=lambda: dict(default), metadata=metadata))
    return field(default=default, metadata=metadata)


def declared(cls: type) -> Iterator[tuple[str, Setting]]:
    """``(field name, Setting)`` for each setting of the dataclass ``cls``, in order."""
    for f in fields(cls):
        if _KEY in f.metadata:
            yield f.name, f.metadata[_KEY]


def _show(default: object) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    if default is None or default == () or default == {}:
        return "none"
    return f"{default:g}" if isinstance(default, float) else str(default)


# ----------------------------------------------------------------- reading


def read_environment(cls: type, env: Mapping[str, str],
                     skip: Container[str] = ()) -> dict[str, Any]:
    """The settings ``env`` sets (empty values count as unset), except those in ``skip``."""
    return {name: s.read(env[s.env], name) for name, s in declared(cls)
            if s.env and name not in skip and env.get(s.env)}


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a flag for each setting of ``cls`` that has one. Every flag defaults to None
    and takes text, parsed by :func:`read_flags`, so its errors read like the environment's."""
    for name, s in declared(cls):
        if s.flag is None:
            continue
        text = s.help.replace("`", "").replace("%", "%%")
        where = f"; env {s.env}" if s.env else ""
        again = "; repeatable" if s.kind.many else ""
        options: dict[str, Any] = {"dest": name, "default": None,
                                   "help": f"{text} (default {s.shown}{where}{again})"}
        if s.kind.switch:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["action"] = "append" if s.kind.many else "store"
            options["choices"] = s.choices or None
            options["metavar"] = None if s.choices else s.metavar or s.kind.metavar
        parser.add_argument(s.flag, **options)


def read_flags(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags added by :func:`add_flags` (flags not given are left out)."""
    values: dict[str, Any] = {}
    for name, s in declared(cls):
        given = getattr(args, name, None) if s.flag else None
        if given is None:
            continue
        if s.kind.switch:
            values[name] = given
        elif s.kind.many:
            values[name] = tuple(item for text in given for item in s.read(text, name))
        else:
            values[name] = s.read(given, name)
    return values


def validate(settings: object) -> None:
    """Raise :class:`ConfigError` for the first setting whose value cannot work."""
    for name, s in declared(type(settings)):
        problem = s.problem(getattr(settings, name))
        if problem:
            raise ConfigError(f"{s.names(name)} {problem}", param=name)


def names(cls: type, name: str) -> str:
    """How a person sets the setting ``name`` of ``cls``: ``"RELAY_PORT / --port"``."""
    return dict(declared(cls))[name].names(name)


# ----------------------------------------------------------------- showing


def masked_items(settings: object) -> Iterator[tuple[str, str]]:
    """``(name, repr of value)`` per setting, secrets that are set shown as ``'***'`` (or
    as their ``mask`` shows them)."""
    for name, s in declared(type(settings)):
        value = getattr(settings, name)
        if not (s.secret and value):
            yield name, repr(value)
        else:
            yield name, s.mask(value) if s.mask is not None else "'***'"



def secret_strings(settings: object, only: Container[str] | None = None) -> list[str]:
    """Every string the secret settings of ``settings`` (or those named in ``only``) hold,
    which no log line, response or event may show (the logs mask them)."""
    found: list[str] = []
    for name, s in declared(type(settings)):
        if only is not None and name not in only:
            continue
        value = getattr(settings, name)
        if s.secret and value:
            found += s.reveals(value) if s.reveals is not None else _strings(value)
    return [text for text in dict.fromkeys(found) if text]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        # ``Bearer KEY`` (an upstream header's value) holds KEY on its own too.
        return [value, value.partition(" ")[2]]
    if isinstance(value, (tuple, list)):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings(item)]
    return []


def markdown_table(cls: type) -> str:
    """The README's table of the settings of ``cls``: what, flag, environment, default."""
    rows = ["| setting | flag | environment | default |", "|---|---|---|---|"]
    for _, s in declared(cls):
        if s.internal:
            continue
        rows.append("| " + " | ".join(_cell(text) for text in (
            s.help, _flag_cell(s), _env_cell(s), s.shown)) + " |")
    return "\n".join(rows) + "\n"


def _flag_cell(s: Setting) -> str:
    if s.flag is None:
        return ""
    if s.kind.switch:
        return f"`{s.flag}`, `--no-{s.flag[2:]}`"
    if s.choices:
        return f"`{s.flag} {'|'.join(s.choices)}`"
    if s.kind.many:
        return f"`{s.flag} {s.metavar or s.kind.metavar}` (repeatable)"
    return f"`{s.flag}`"


def _env_cell(s: Setting) -> str:
    if s.env is None:
        return ""
    return f"`{s.env}`" + (f" ({s.kind.env_format})" if s.kind.env_format else "")


def _cell(text: str) -> str:
    # A pipe ends a table cell, even inside backticks, unless escaped.
    return text.replace("|", "\\|")
