"""Webhooks: signed as Standard Webhooks (verified by the `standardwebhooks` package and by
openai's own verifier), retried through an outage, never blocking a call."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession
from openai import OpenAI

from relay.base.webhook_signature import sign
from relay.client import CallClient, PcmSource
from relay.config import Settings
from relay.errors import ConfigError
from relay.server.webhooks import WebhookSender

from ..conftest import LOOPBACK, base_url
from .receiver import Receiver, free_port, new_secret
from .support import until


def test_webhooks_signature_verifies_with_standardwebhooks_and_openai() -> None:
    secret = new_secret()
    from standardwebhooks import Webhook

    from relay.base.webhook_signature import secret_key

    body = json.dumps({"object": "event", "id": "evt_1", "type": "call.started",
                       "created_at": int(time.time()), "data": {}}).encode()
    timestamp = int(time.time())
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret_key(secret), "evt_1", timestamp, body)}
    assert Webhook(secret).verify(body, headers)["id"] == "evt_1"
    OpenAI(api_key="unused", webhook_secret=secret).webhooks.verify_signature(body, headers)
    tampered = body.replace(b"call.started", b"call.ended")
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook(secret).verify(tampered, headers)


def test_webhooks_settings_need_a_whsec_secret() -> None:
    with pytest.raises(ConfigError, match="RELAY_WEBHOOK_SECRET"):
        Settings(webhook_url="http://127.0.0.1:9/hooks").validate()
    with pytest.raises(ConfigError, match="whsec_"):
        Settings(webhook_url="http://127.0.0.1:9/hooks",
                 webhook_secret="not-a-secret").validate()
    with pytest.raises(ConfigError, match="http"):
        Settings(webhook_url="ftp://x", webhook_secret=new_secret()).validate()
    settings = Settings(webhook_url="http://127.0.0.1:9/hooks", webhook_secret=new_secret())
    settings.validate()
    assert settings.webhook_secret is not None
    assert settings.webhook_secret not in repr(settings)


async def test_webhooks_sender_retries_until_the_receiver_is_back() -> None:
    secret = new_secret()
    receiver = Receiver(secret)
    port = free_port()
    sender = WebhookSender(f"http://127.0.0.1:{port}/hooks", secret)
    sender.start()
    try:
        sender.send("call.started", {"call_id": "rtc_1"})
        sender.send("call.ended", {"call_id": "rtc_1"})
        await asyncio.sleep(1.2)  # nothing listens: refused, retried after 0.5 s, 1 s, ...
        assert sender.failed_attempts >= 2 and sender.pending == 2
        await receiver.start(port)
        receiver.down = True  # up, but failing
        await until(lambda: len(receiver.attempts) >= 1, 10, "an attempt")
        receiver.down = False
        await until(lambda: sender.pending == 0, 15, "delivery")
        assert receiver.types() == ["call.started", "call.ended"]
        assert not receiver.bad
        assert sender.delivered == 2
    finally:
        await sender.close()
        await receiver.close()


async def test_webhooks_sender_gives_up_after_retry_seconds() -> None:
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/hooks", new_secret(),
                           retry_for=1.0)
    sender.start()
    try:
        sender.send("call.started", {"call_id": "rtc_1"})
        await until(lambda: sender.pending == 0, 10, "giving up")
        assert sender.given_up == 1 and sender.delivered == 0
    finally:
        await sender.close(grace=0)


async def test_webhooks_call_started_ended_and_recording_ready_once_each_after_an_outage(
        relay_factory, tmp_path: Path) -> None:
    secret = new_secret()
    receiver = Receiver(secret)
    url = await receiver.start()
    receiver.down = True
    server = await relay_factory(record="all", record_dir=str(tmp_path), webhook_url=url,
                                 webhook_secret=secret)
    client = CallClient(base_url(server), PcmSource(), ice_addresses=LOOPBACK)
    try:
        await client.connect()
        await client.wait_for("session.created", timeout=10)
        await asyncio.sleep(0.5)
        assert await client.hangup() == 200
    finally:
        await client.close()
    # The receiver was down all call long: the call did not wait for it.
    await until(lambda: len(receiver.attempts) >= 2, 10, "attempts during the outage")
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/metrics",
                            headers={"Authorization": "Bearer any"}) as response:
            exposition = await response.text()
    assert re.search(r"^relay_webhooks_pending [1-9]", exposition, re.M), exposition
    receiver.down = False
    await until(lambda: len(receiver.accepted) == 3, 30, "three deliveries")
    await asyncio.sleep(1.0)  # nothing more comes
    try:
        assert receiver.types() == ["call.started", "call.ended", "recording.ready"]
        assert not receiver.bad
        ids = [event["id"] for event in receiver.accepted]
        assert len(set(ids)) == 3
        assert any(status == 503 for _, _, status in receiver.attempts)
        started, ended, ready = (event["data"] for event in receiver.accepted)
        assert started["call_id"] == ended["call_id"] == ready["call_id"] == client.call_id
        assert started["recorded"] is True
        assert ended["reason"] == "hangup"
        summary = ended["summary"]
        assert summary["timings"]["duration_seconds"] > 0
        assert summary["rtp"]["inbound"]["packets_received"] > 0
        assert ready["content_url"] == f"/v1/realtime/calls/{client.call_id}/content"
    finally:
        await receiver.close()
