"""What an SDP offer must hold before aiortc is given it.

aiortc parses any text it is handed and trips later on what it did not check: two
``application`` sections make its own answer fail to match the offer (a ValueError out of
``setLocalDescription``), and an offer with no DTLS fingerprint is answered, then fails
inside aiortc's connect task, long after the client was told 201. :func:`check_offer`
refuses those offers first, with an :class:`~relay.errors.InvalidRequest` the client can
act on. It is text only: no I/O, no aiortc.
"""

from __future__ import annotations

from ..errors import InvalidRequest


def check_offer(sdp: str) -> None:
    """Raise :class:`InvalidRequest` (``invalid_offer``, param ``sdp``) unless ``sdp``
    looks like an SDP offer the relay can answer: it starts with ``v=``, has an audio
    section, at most one ``application`` (data channel) section, a BUNDLE group (if any)
    led by a mid some section has, and a DTLS fingerprint for every section (its own or
    the session's)."""
    lines = [line.strip() for line in sdp.lstrip("\ufeff \t\r\n").splitlines()]
    if not lines or not lines[0].startswith("v="):
        start = lines[0][:20] if lines else ""
        raise _invalid(f"The body is not an SDP offer (it starts with {start!r}, not 'v='): "
                       "post the offer itself as application/sdp, or a multipart form "
                       "with 'sdp' and 'session' parts.")
    session, sections = _sections(lines)
    kinds = [section[0][2:].split(" ", 1)[0] for section in sections]
    if "audio" not in kinds:
        raise _invalid("The SDP offer has no audio media section.")
    if kinds.count("application") > 1:
        raise _invalid(f"The SDP offer has {kinds.count('application')} application "
                       "(data channel) sections; a call takes one.")
    _check_bundle(session, sections)
    if not _has_fingerprint(session):
        for kind, section in zip(kinds, sections, strict=True):
            if not _has_fingerprint(section):
                raise _invalid(f"The SDP offer's {kind} section has no a=fingerprint "
                               "(nor has the session): DTLS cannot be set up without it.")


def _check_bundle(session: list[str], sections: list[list[str]]) -> None:
    """aiortc moves every bundled section onto the transport of the group's first mid: a
    group whose first mid no section has leaves them without one (its connect task then
    fails, after the 201)."""
    groups = [line.split()[1:] for line in session if line.split()[:1] == ["a=group:BUNDLE"]]
    if not groups or not groups[0]:
        return
    mids = set()
    for section in sections:
        named = [line.partition(":")[2].strip() for line in section if line.startswith("a=mid:")]
        if named:
            mids.add(named[-1])  # aiortc keeps a section's last a=mid
    if groups[0][0] not in mids:
        raise _invalid(f"The SDP offer's BUNDLE group starts with mid {groups[0][0][:20]!r}, "
                       "which no media section has.")


def _sections(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """The session-level lines, and each media section's (its ``m=`` line first)."""
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _has_fingerprint(lines: list[str]) -> bool:
    return any(line.startswith("a=fingerprint:") and len(line.split()) == 2 for line in lines)


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_offer", param="sdp")
