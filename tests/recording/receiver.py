"""A webhook receiver for tests: verifies every delivery with the `standardwebhooks`
package, and can be down (503, or not listening at all) for a while."""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """Accepts (200) verified deliveries unless :attr:`down`; counts every attempt."""

    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.down = False
        #: Every attempt: (webhook-id, type, status answered).
        self.attempts: list[tuple[str, str, int]] = []
        #: Events accepted, in order (the JSON bodies).
        self.accepted: list[dict[str, Any]] = []
        #: Deliveries whose signature did not verify.
        self.bad: list[str] = []
        self.server: TestServer | None = None

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=port)
        await self.server.start_server()
        return f"http://127.0.0.1:{self.server.port}/hooks"

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = self.verifier.verify(body, dict(request.headers))
        except Exception as exc:  # the package raises its own WebhookVerificationError
            self.bad.append(f"{exc!r}: {request.headers}")
            return web.Response(status=400)
        assert event == json.loads(body)
        status = 503 if self.down else 200
        self.attempts.append((request.headers["webhook-id"], event["type"], status))
        if status == 200:
            self.accepted.append(event)
        return web.Response(status=status)

    def types(self) -> list[str]:
        return [event["type"] for event in self.accepted]
