"""The credential of a call's resume (any protocol family): the resume token.

The response that creates a call (``POST /v1/realtime/calls``, ``POST /v1/live/sessions``)
carries the call's resume token; a client whose network changed presents it to resume the
call on a new peer connection (``POST …/resume``), and nothing else is asked of it (the
key that created the call may have expired since). The token is compared in constant time
(:meth:`~.call_driver.CallDriver.resume_token_matches`), never echoed, and a wrong one is
logged as refused.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..errors import ResumeRefused
from .call_driver import CallDriver

logger = logging.getLogger(__name__)

#: The response header of a call's creation that carries its resume token, and the request
#: header a resume presents it in.
RESUME_TOKEN_HEADER = "X-Relay-Resume-Token"


def presented_token(request: web.Request) -> str:
    """The resume token ``request`` presents; 403 ``resume_token_required`` without one."""
    token = request.headers.get(RESUME_TOKEN_HEADER)
    if not token:
        raise ResumeRefused(f"A resume needs the call's resume token in {RESUME_TOKEN_HEADER}.",
                            code="resume_token_required")
    return token


def check_token(call: CallDriver, token: str) -> None:
    """403 ``resume_token_invalid`` unless ``token`` is ``call``'s resume token."""
    if not call.resume_token_matches(token):
        logger.warning("call %s: a resume with a wrong token was refused", call.id)
        raise ResumeRefused("The resume token is not this call's.")
