"""The operator's policy: session fields no client may change (``RELAY_LOCKED_FIELDS``).

The locked fields take their values from the operator's session (``RELAY_SESSION``). A
client may repeat such a value but never change it: not in the call request's session,
not in a minted key's session, not in a data-channel ``session.update`` and not in a
``response.create``'s ``response`` override. An update that tries is refused whole (an
``error`` event naming the field, or a 400 at call creation), so the client knows that
nothing of it was applied. Server-side controllers (the sideband, with a server key) are
the operator's own and are not bound.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from .session_config import (
    Session,
    choose_model,
    layer_sessions,
    named_type,
    normalize_session,
)

#: A locked field's path in the GA session: ``instructions``, ``audio.output.voice``.
FIELD_PATH = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")

#: The value of a locked field the operator's session leaves unset: a client may not set it.
UNSET: Any = object()

#: A path that does not resolve in a client's session (the client did not touch it).
_ABSENT: Any = object()

Policy = Mapping[str, Any]


def locked_policy(operator_session: Mapping[str, Any], fields: Sequence[str]) -> Policy:
    """``{path: the operator's value (or UNSET)}`` for each locked field."""
    session = normalize_session(operator_session) if operator_session else {}
    policy = {}
    for path in fields:
        value = _lookup(session, path)
        policy[path] = UNSET if value is _ABSENT else value
    return policy


def locked_field_changed(session: Mapping[str, Any], policy: Policy) -> str | None:
    """The first locked field ``session`` (GA shape) would change, or None."""
    for path, locked in policy.items():
        value = _lookup(session, path)
        if value is not _ABSENT and value != locked:
            return path
    return None


def check_session(session: Mapping[str, Any] | None, policy: Policy, where: str) -> None:
    """Raise :class:`InvalidRequest` (``locked_field``) when ``session`` changes a locked
    field; ``where`` names the object in the request (``session``, ``response``)."""
    if not session or not policy:
        return
    changed = locked_field_changed(normalize_session(session), policy)
    if changed is not None:
        raise InvalidRequest(
            f"{changed} is set by the relay's operator and cannot be changed; nothing of "
            "this request was applied.", code="locked_field", param=f"{where}.{changed}")


@dataclass(frozen=True)
class SessionRules:
    """What a request for a call or a client secret gets: the operator's session with the
    request's layers over it, under the locked fields, on a model the operator allows."""

    #: The operator's session (``RELAY_SESSION``): the bottom layer of every call's session.
    operator_session: Mapping[str, Any]
    policy: Policy
    #: The relay's model, and the others a client may ask for (empty: any).
    default_model: str
    allowed_models: Sequence[str] = ()

    def admit(self, *layers: Mapping[str, Any] | None,
              query_model: str | None = None) -> tuple[Session, str]:
        """The session (``layers`` over the operator's, later ones winning) and model a
        request asking for ``layers`` gets; :class:`InvalidRequest` naming the field when
        a layer changes a locked field or asks for a model that is not served."""
        for layer in layers:
            check_session(layer, self.policy, "session")
        kinds = {kind for kind in (named_type(layer) for layer in layers if layer) if kind}
        if len(kinds) > 1:
            # A key minted for one kind of session cannot open a call of the other kind.
            raise InvalidRequest(
                "session.type differs from the type of the client secret's session: a "
                "call is either a realtime or a transcription session.",
                code="invalid_value", param="session.type")
        session = layer_sessions(self.operator_session, *layers)
        model = choose_model(session, query_model, default=self.default_model,
                             allowed=self.allowed_models)
        return session, model


def _lookup(session: Mapping[str, Any], path: str) -> Any:
    node: Any = session
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node
