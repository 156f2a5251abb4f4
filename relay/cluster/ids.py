"""Owner ids, and call ids that name their owner (sans-I/O).

Every relay process (a worker of one machine, or a node of a cluster) has an *owner id* of
:data:`OWNER_CHARS` letters and digits. A call id is ``rtc_u1_`` followed by 32 letters and
digits, like the hosted service's: the first :data:`OWNER_CHARS` are the owner id, the
other 24 are random (about 143 bits, so ids still cannot be guessed). Clients see the same
opaque ids as before; a relay that gets a follow-up request reads the owner from the id
and forwards the request there if it is not itself.

Which owner id a process takes:

- with Redis, a random one at each start. A restarted process then never claims the
  calls of the process it replaces: their ids name an owner that is gone, whose directory
  entry expires, and they answer 404 ``call_id_not_found`` as any ended call does.
- with a supervisor's runtime directory and no Redis, ``w`` and the worker's index
  (``w0000003``). The directory then holds one socket per worker slot, however often
  workers restart: a restarted worker takes its predecessor's socket, and that
  predecessor's call ids reach a process that does not have them, so they answer 404.
- alone, a random one; it is never looked up.
"""

from __future__ import annotations

from ..protocol.events import random_id

#: What every call id starts with.
CALL_PREFIX = "rtc_u1_"
#: Letters and digits after the prefix, as in the hosted ids.
CALL_CHARS = 32
#: The leading characters of those that name the owner.
OWNER_CHARS = 8
#: Index digits of a worker's owner id (``w`` and 7 digits).
_WORKER_DIGITS = OWNER_CHARS - 1


def random_owner_id() -> str:
    """A fresh owner id (about 48 bits: process starts of one cluster never collide in
    practice, and each lives only as long as its process)."""
    return random_id("", OWNER_CHARS)


def worker_owner_id(index: int) -> str:
    """The owner id of worker ``index`` of a supervisor without Redis: ``w0000003``."""
    if not 0 <= index < 10**_WORKER_DIGITS:
        raise ValueError(f"worker index out of range: {index}")
    return f"w{index:0{_WORKER_DIGITS}d}"


def owner_id(*, redis: bool, worker_index: int | None) -> str:
    """The owner id a process takes (the module docstring says why)."""
    if not redis and worker_index is not None:
        return worker_owner_id(worker_index)
    return random_owner_id()


def new_call_id(owner: str) -> str:
    """A call id owned by ``owner``: ``rtc_u1_`` + owner + 24 random letters and digits."""
    if len(owner) != OWNER_CHARS or not owner.isascii() or not owner.isalnum():
        raise ValueError(f"not an owner id: {owner!r}")
    return random_id(CALL_PREFIX + owner, CALL_CHARS - OWNER_CHARS)


def owner_of(call_id: str) -> str | None:
    """The owner id ``call_id`` names, or None when it is not shaped like a call id."""
    body = call_id.removeprefix(CALL_PREFIX)
    if body == call_id or len(body) != CALL_CHARS or not (body.isascii() and body.isalnum()):
        return None
    return body[:OWNER_CHARS]
