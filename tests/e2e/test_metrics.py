"""``GET /metrics`` over real sockets: a call with a barge-in moves the right series."""

from __future__ import annotations

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from relay.client import CallClient

from ..conftest import RelayFactory, base_url, live_calls
from .test_barge_in import assert_no_errors, first_reply_playing, session, tone

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: TestServer, key: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/metrics", headers=headers) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/plain"
            text = await response.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_move_by_one_call_with_a_barge_in(relay: TestServer, make_client) -> None:
    before = await scrape(relay)
    assert value(before, "relay_calls_active") == 0
    client: CallClient = make_client(session=session())
    await client.connect()
    await first_reply_playing(client, 0.6)
    client.source.play(tone(0.5, 880))  # the user talks over the reply
    truncated = await client.wait_for("conversation.item.truncated", timeout=10)
    during = await scrape(relay)
    assert value(during, "relay_calls_active") == 1
    # Live calls count before they end: the barge-in is already there.
    assert moved(before, during, "relay_barge_ins_total", cause="speech_started") == 1
    await client.wait_for("output_audio_buffer.stopped", timeout=20)
    assert_no_errors(client)
    assert await client.hangup() == 200  # answered once the call has closed
    assert live_calls(relay) == 0
    after = await scrape(relay)

    assert value(after, "relay_calls_active") == 0
    assert moved(before, after, "relay_calls_created_total", protocol="realtime") == 1
    assert moved(before, after, "relay_calls_ended_total", protocol="realtime",
                 reason="hangup") == 1
    assert moved(before, after, "relay_call_duration_seconds_count") == 1
    assert moved(before, after, "relay_call_connect_seconds_count") == 1
    assert moved(before, after, "relay_upstream_connect_seconds_count") == 1
    # Two utterances (the first and the barge-in), two replies that started playing.
    assert moved(before, after, "relay_reply_latency_seconds_count") == 2
    latency = moved(before, after, "relay_reply_latency_seconds_sum")
    assert 0 < latency < 2 * 5.0
    assert moved(before, after, "relay_reply_latency_seconds_bucket", le="+Inf") == 2
    assert moved(before, after, "relay_barge_ins_total", cause="speech_started") == 1
    assert moved(before, after, "relay_barge_in_stop_seconds_count") == 1
    # From the packet carrying the barge-in tone's onset reaching the relay to its reply's
    # audio stopping: the local VAD needs 30 ms of the tone (the packet after the onset's,
    # 20 ms later), the relay then stops at the next frame. Seen here: 25 ms.
    stop = moved(before, after, "relay_barge_in_stop_seconds_sum")
    assert 0.01 < stop < 1.0, stop
    assert moved(before, after, "relay_barge_in_stop_seconds_bucket", le="1.0") == 1
    assert moved(before, after, "relay_truncations_total") == 1
    assert moved(before, after, "relay_item_deletions_total") == 0
    # 1.5 s + 0.5 s of tone went up (more: the source pads with silence while connected).
    assert moved(before, after, "relay_audio_seconds_total", direction="up") >= 2.0
    # The first reply was cut after ~0.6 s (what was truncated), the second played whole.
    down = moved(before, after, "relay_audio_seconds_total", direction="down")
    assert down >= truncated["audio_end_ms"] / 1000 + 0.4
    assert moved(before, after, "relay_uplink_packets_total", outcome="received") > 100
    assert moved(before, after, "relay_uplink_packets_total", outcome="lost") == 0
    assert moved(before, after, "relay_events_total", direction="to_client",
                 type="output_audio_buffer.cleared") == 1
    assert moved(before, after, "relay_events_total", direction="to_upstream",
                 type="conversation.item.truncate") == 1
    assert moved(before, after, "relay_events_total", direction="from_upstream",
                 type="input_audio_buffer.speech_stopped") == 2
    assert moved(before, after, "relay_events_total", direction="from_upstream",
                 type="response.output_audio.delta") > 0
    assert not any(name == "relay_errors_total" for name, _ in after)
    # No call ids anywhere.
    assert not any(client.call_id in str(labels) for _, labels in after)


async def test_metrics_need_the_server_key_when_keys_are_set(
        relay_factory: RelayFactory) -> None:
    server = await relay_factory(relay_api_keys=("sk-server-secret",))
    async with ClientSession() as http:
        async with http.get(f"{base_url(server)}/metrics") as response:
            assert response.status == 401
    samples = await scrape(server, "sk-server-secret")
    assert value(samples, "relay_calls_created_total", protocol="realtime") == 0

