"""ICE server URLs as the relay's settings write them: STUN and TURN, with credentials.

A setting is a list of text, so a TURN server's username and credential ride in its URL,
the way GStreamer and several SFUs write them::

    stun:HOST[:PORT]
    turn:USERNAME:CREDENTIAL@HOST[:PORT][?transport=udp|tcp]     (UDP by default)
    turns:USERNAME:CREDENTIAL@HOST[:PORT]                        (TLS over TCP)

Username and credential are percent-decoded, so a TURN REST username such as
``1700000000:alice`` is written ``1700000000%3Aalice``. :func:`parse_ice_server` splits a
URL into what aiortc's ``RTCIceServer`` takes (the URL without credentials, the username,
the credential); :func:`mask_ice_server` shows it with the credential hidden. aiortc
gathers on one STUN and one TURN server, so :func:`ice_servers_problem` refuses more
rather than let aiortc ignore them silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

#: ``scheme:[user:credential@]host[:port][?transport=…]`` (host: a name or IPv4 address;
#: aiortc's own parser takes no IPv6 literal).
_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):(?://)?"
    r"(?:(?P<username>[^:@/?]*):(?P<credential>[^@/?]*)@)?"
    r"(?P<host>[A-Za-z0-9.\-_]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>[a-z]+))?"
)


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as aiortc's ``RTCIceServer`` takes it."""

    #: The URL without credentials: ``turn:host:3478?transport=tcp``.
    url: str
    username: str | None = None
    credential: str | None = None

    @property
    def scheme(self) -> str:
        """``stun``, ``turn`` or ``turns``."""
        return self.url.partition(":")[0]


def parse_ice_server(text: str) -> IceServer:
    """Split one URL into an :class:`IceServer`; ``ValueError`` saying what is wrong."""
    match = _URL.fullmatch(text.strip())
    if match is None:
        raise ValueError("must be stun:HOST[:PORT] or turn:/turns:USER:CREDENTIAL@HOST[:PORT]"
                         "[?transport=udp|tcp] URLs")
    scheme, host, port = match["scheme"], match["host"], match["port"]
    transport = match["transport"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"has a port out of range in {mask_ice_server(text)}")
    if scheme == "stun" and (transport or match["username"] is not None):
        raise ValueError("has a stun: URL with credentials or a transport; STUN takes neither")
    if scheme == "turn" and transport not in (None, "udp", "tcp"):
        raise ValueError("has a turn: URL whose transport is neither udp nor tcp")
    if scheme == "turns" and transport not in (None, "tcp"):
        raise ValueError("has a turns: URL whose transport is not tcp (TLS runs over TCP)")
    url = f"{scheme}:{host}" + (f":{int(port)}" if port else "")
    if transport:
        url += f"?transport={transport}"
    if match["username"] is None:
        return IceServer(url)
    return IceServer(url, unquote(match["username"]), unquote(match["credential"]))


def mask_ice_server(text: str) -> str:
    """``text`` with its credential (if any) shown as ``***``, for logs and listings."""
    return re.sub(r"^((?:turns?):(?://)?[^:@/?]*:)[^@/?]*@", r"\1***@", text.strip())


def ice_servers_problem(urls: Sequence[str]) -> str | None:
    """What is wrong with a list of ICE server URLs (``"must be …"``), or None."""
    try:
        servers = [parse_ice_server(url) for url in urls]
    except ValueError as exc:
        return str(exc)
    if sum(s.scheme == "stun" for s in servers) > 1:
        return "has more than one stun: URL (aiortc asks one STUN server)"
    if sum(s.scheme != "stun" for s in servers) > 1:
        return "has more than one turn:/turns: URL (aiortc allocates on one TURN server)"
    return None


def ice_server_url(scheme: str, host: str, port: int, *, username: str | None = None,
                   credential: str | None = None, transport: str | None = None) -> str:
    """The URL :func:`parse_ice_server` reads back as these parts (credentials quoted)."""
    auth = ""
    if username is not None:
        auth = f"{quote(username, safe='')}:{quote(credential or '', safe='')}@"
    return f"{scheme}:{auth}{host}:{port}" + (f"?transport={transport}" if transport else "")
