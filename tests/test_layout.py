"""The tree's layering, as STYLE.md and the README's Layout section draw it."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

RELAY = Path(__file__).resolve().parents[1] / "relay"


def _modules() -> list[Path]:
    return sorted(RELAY.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """The relay modules ``path`` imports, as absolute dotted names."""
    package = ".".join(path.relative_to(RELAY.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "relay" or name.startswith("relay.")}


def test_layout_no_two_modules_share_a_file_name() -> None:
    names = Counter(p.name for p in _modules() if p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_layout_cluster_never_imports_the_server() -> None:
    offenders = {str(p.relative_to(RELAY)): sorted(n for n in _imported(p)
                                                   if n.startswith("relay.server"))
                 for p in (RELAY / "cluster").rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_layout_base_and_protocol_import_no_io_layer() -> None:
    # relay/base and the sans-I/O protocol sit below the server, the WebRTC and the
    # upstream layers; they never reach up into them.
    upper = ("relay.server", "relay.webrtc", "relay.upstream", "relay.cluster", "relay.client",
             "relay.config")
    offenders = {}
    for folder in ("base", "protocol"):
        for path in (RELAY / folder).rglob("*.py"):
            names = sorted(n for n in _imported(path) if n.startswith(upper))
            if names:
                offenders[str(path.relative_to(RELAY))] = names
    assert offenders == {}


def test_layout_media_code_knows_nothing_of_configuration() -> None:
    for folder in ("webrtc", "audio"):
        for path in (RELAY / folder).rglob("*.py"):
            assert "relay.config" not in _imported(path), path


def test_layout_realtime_protocol_is_its_own_family() -> None:
    # What any voice protocol shares (relay/protocol/*.py) never imports a family.
    for path in (RELAY / "protocol").glob("*.py"):
        assert not [n for n in _imported(path) if n.startswith("relay.protocol.realtime")], path


#: A private attribute of someone else's object: ``x._name`` where x is not self/cls.
_PRIVATE = re.compile(r"(?<![\w.])(?!self\b|cls\b)([A-Za-z_][\w]*)\._[A-Za-z]\w*")
#: getattr/setattr/hasattr with a private name in a string.
_PRIVATE_STRING = re.compile(r"(?:get|set|has|del)attr\([^)]*[\"']_[A-Za-z]")


def test_layout_private_aiortc_access_only_in_internals() -> None:
    # relay/webrtc/internals.py is the one module that reaches into aiortc/aioice; its
    # check() and tests/webrtc/test_internals.py fail loudly when an upgrade moves them.
    offenders: list[str] = []
    for path in _modules():
        if path == RELAY / "webrtc" / "internals.py":
            continue
        source = path.read_text()
        if not re.search(r"^\s*(from|import) (aiortc|aioice)\b", source, re.M):
            continue
        for number, line in enumerate(source.splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in _PRIVATE.finditer(code):
                if not _own_private(source, match.group(0)):
                    offenders.append(f"{path.relative_to(RELAY)}:{number}: {line.strip()}")
            if _PRIVATE_STRING.search(code):
                offenders.append(f"{path.relative_to(RELAY)}:{number}: {line.strip()}")
    assert offenders == []


def _own_private(source: str, access: str) -> bool:
    """True when ``obj._name`` names something the module itself defines as private (a
    module-level ``_name``, or an attribute it assigns as ``self._name``)."""
    name = access.split(".", 1)[1]
    return bool(re.search(rf"^(def |class )?{re.escape(name)}\b|self\.{re.escape(name)}\s*[:=]",
                          source, re.M))
