"""A server-side agent's output guardrail silences the call: ``relay serve --agent`` with
the Agents SDK's own ``OutputGuardrail``, the embedded assistant speaking a reply that
trips it. The SDK sends ``response.cancel`` on the sideband; the relay then flushes the
reply queued for the peer and truncates it where it was cut, so the audio stops at once
(``RELAY_SIDEBAND_CANCEL_CLEARS_PLAYOUT``; off, the queued reply played on)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientSession

from relay.client import CallClient

from ..conftest import RelayFactory, base_url
from ..support.speech import needs_espeak, needs_speech

pytestmark = [needs_speech, needs_espeak]

#: The assistant repeats it ("You said: ..."): the guardrail sees "forbidden" once the
#: SDK's debounce (100 characters of transcript) has passed, seconds before the reply ends.
MESSAGE = ("Please repeat after me this long sentence about the forbidden garden where the "
           "old gardener grows tall sunflowers, sweet peas, tomatoes, beans and roses every "
           "summer until the first frost arrives in the valley.")


def first_of(client: CallClient, kind: str, response_id: str) -> tuple[float, dict[str, Any]]:
    return next((t, e) for t, e in client.events
                if e["type"] == kind and e.get("response_id", e.get("response", {}).get("id"))
                == response_id)


@pytest.mark.parametrize("clears", [True, False])
async def test_agent_guardrail_cancel_stops_the_reply_audio(
        relay_factory: RelayFactory, make_client: Any, clears: bool) -> None:
    server = await relay_factory(agent="tests.support.agents:guarded_agent",
                                 local_mode="assistant", sideband_cancel_clears_playout=clears)
    client: CallClient = make_client(server=server)
    await client.connect()
    client.say(MESSAGE)
    created = await client.wait_for("response.created", timeout=30)
    response_id = created["response"]["id"]
    done = await client.wait_for("response.done",
                                 lambda e: e["response"]["id"] == response_id, timeout=40)
    end = "output_audio_buffer.cleared" if clears else "output_audio_buffer.stopped"
    await client.wait_for(end, lambda e: e["response_id"] == response_id, timeout=40)
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/v1/realtime/calls/{client.call_id}") as r:
            view = await r.json()
    # The guardrail's cancel ended the reply upstream, before it was all generated.
    assert done["response"]["status"] == "cancelled"
    done_at, _ = first_of(client, "response.done", response_id)
    ended_at, _ = first_of(client, end, response_id)
    cuts = [b for b in view["barge_ins"] if b["reason"].endswith("_cancel")]
    if clears:
        # Cut at once: the relay flushed playout before the upstream even confirmed.
        assert ended_at <= done_at + 0.2
        [cut] = cuts
        assert cut["response_ids"] == [response_id]
        [(item_id, audio_end_ms)] = cut["truncated"]
        assert 0 < audio_end_ms < 8000  # the full reply is well over 10 s
        # None when the reply's queue had run dry just then (the assistant's voice came
        # slower than real time): nothing was playing to cut, and ended_at shows silence.
        assert cut["cut_latency_ms"] is None or cut["cut_latency_ms"] < 100
        assert not [e for _, e in client.events if e["type"] == "output_audio_buffer.stopped"
                    and e["response_id"] == response_id]
    else:
        # The old behaviour: what was queued played on for seconds after the cancel.
        assert ended_at - done_at > 1.0
        assert cuts == []
