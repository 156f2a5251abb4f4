"""The core's per-call measures, and the bounded labels the server makes of them."""

from __future__ import annotations

from relay.protocol.call_measures import CallMeasures, Histogram, UplinkArrivals
from relay.server.prometheus import barge_in_cause, close_category


def test_measures_count_unknown_event_types_as_other() -> None:
    measures = CallMeasures()
    measures.count("from_client", "response.create")
    measures.count("from_client", "made.up.1")
    measures.count("from_client", "made.up.2")
    assert measures.events == {("from_client", "response.create"): 1,
                               ("from_client", "other"): 2}


def test_measures_error_codes_are_bounded_and_remembered() -> None:
    measures = CallMeasures()
    measures.error({"code": "invalid_value", "message": "no"})
    measures.error({"code": "x" * 65, "message": "long"})
    measures.error("not an object")
    assert measures.errors == {"invalid_value": 1, "other": 2}
    assert measures.last_error == {"code": "other", "message": ""}


def test_measures_reply_latency_runs_from_speech_stopped_to_first_audio() -> None:
    measures = CallMeasures()
    measures.reply_audio(1.0)  # no speech_stopped pending: nothing
    measures.speech_stopped_at = 10.0
    measures.reply_audio(10.3)
    measures.reply_audio(10.32)  # later frames of the same reply do not count
    assert measures.reply_latency.count == 1
    assert abs(measures.reply_latency.total - 0.3) < 1e-9


def test_histogram_buckets_are_upper_bounds() -> None:
    histogram = Histogram((0.1, 1.0))
    for v in (0.1, 0.5, 7.0):
        histogram.observe(v)
    assert histogram.counts == [1, 1, 1]


def test_close_reasons_map_to_a_fixed_set() -> None:
    assert close_category("hangup") == "hangup"
    assert close_category("peer connection failed") == "peer_failed"
    assert close_category("peer went silent: nothing heard for 8.0 s") == "peer_silent"
    assert close_category("relay shutting down") == "shutdown"
    assert close_category("something new") == "other"
    assert close_category(None) == "other"
    assert barge_in_cause("sideband-3_truncate") == "truncate"
    assert barge_in_cause("speech_started") == "speech_started"


def test_uplink_arrivals_time_a_position_by_its_chunks_arrival() -> None:
    arrivals = UplinkArrivals(history=3)
    assert arrivals.time_of(0) is None
    for k in range(1, 5):  # chunk k holds samples [480(k-1), 480k) and came at time k
        arrivals.arrived(480 * k, float(k))
    assert arrivals.time_of(479) is None  # chunk 1 fell out of the history
    assert arrivals.time_of(480) == 2.0
    assert arrivals.time_of(959) == 2.0
    assert arrivals.time_of(960) == 3.0
    assert arrivals.time_of(1919) == 4.0
    assert arrivals.time_of(1920) is None  # not arrived yet
