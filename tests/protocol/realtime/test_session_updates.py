"""Pairing each session.updated or error with the session.update it answers."""

from __future__ import annotations

import re
from typing import Any

from relay.protocol.events import Event
from relay.protocol.realtime.session_updates import CLIENT, INITIAL, SessionUpdates


def update(event_id: str | None = None, **session: Any) -> Event:
    event: Event = {"type": "session.update", "session": {"type": "realtime", **session}}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def error_naming(event_id: object) -> Event:
    return {"type": "error", "event_id": "event_srv",
            "error": {"type": "invalid_request_error", "message": "no", "event_id": event_id}}


def test_updates_answers_pair_first_in_first_out() -> None:
    updates = SessionUpdates()
    updates.send(INITIAL, update())
    updates.send(CLIENT, update("c1"))
    updates.send("moderator", update("m1"))
    assert len(updates) == 3
    sources = [pending.source for pending in iter(updates.answered, None)]
    assert sources == [INITIAL, CLIENT, "moderator"]
    assert len(updates) == 0


def test_updates_answer_with_nothing_in_flight_is_unasked() -> None:
    updates = SessionUpdates()
    assert updates.answered() is None
    updates.send(CLIENT, update("c1"))
    assert updates.answered() is not None
    assert updates.answered() is None


def test_updates_fill_a_missing_event_id_without_touching_the_original() -> None:
    updates = SessionUpdates()
    original = update(instructions="hi")
    sent = updates.send(INITIAL, original)
    assert "event_id" not in original
    assert re.fullmatch(r"event_[A-Za-z0-9]{22}", sent["event_id"])
    assert {k: v for k, v in sent.items() if k != "event_id"} == original
    pending = updates.answered()
    assert pending is not None
    assert pending.sent_id == sent["event_id"] and pending.own_id is None


def test_updates_fill_an_empty_or_non_string_event_id() -> None:
    updates = SessionUpdates()
    for bad in ("", 7, None):
        sent = updates.send(CLIENT, {**update(), "event_id": bad})
        assert isinstance(sent["event_id"], str) and sent["event_id"].startswith("event_")
        pending = updates.answered()
        assert pending is not None and pending.own_id is None


def test_updates_keep_a_given_event_id() -> None:
    updates = SessionUpdates()
    original = update("client_evt_9", voice="marin")
    assert updates.send(CLIENT, original) == original
    pending = updates.answered()
    assert pending is not None
    assert pending.sent_id == pending.own_id == "client_evt_9"


def test_updates_failed_removes_the_update_it_names_out_of_order() -> None:
    updates = SessionUpdates()
    first = updates.send(INITIAL, update())
    updates.send(CLIENT, update("c1"))
    third = updates.send(CLIENT, update("c2"))
    failed = updates.failed(error_naming("c1"))
    assert failed is not None and failed.source == CLIENT and failed.own_id == "c1"
    assert len(updates) == 2
    remaining = [p.sent_id for p in iter(updates.answered, None)]
    assert remaining == [first["event_id"], third["event_id"]]


def test_updates_failed_finds_an_update_by_the_id_the_relay_filled_in() -> None:
    updates = SessionUpdates()
    sent = updates.send(INITIAL, update())
    failed = updates.failed(error_naming(sent["event_id"]))
    assert failed is not None and failed.source == INITIAL and failed.own_id is None
    assert len(updates) == 0


def test_updates_unrelated_errors_match_nothing_and_remove_nothing() -> None:
    updates = SessionUpdates()
    updates.send(CLIENT, update("c1"))
    unrelated = [
        error_naming("someone_else"),
        error_naming(None),
        error_naming(1),
        {"type": "error", "error": {"type": "server_error", "message": "boom"}},
        {"type": "error", "error": "c1"},
        {"type": "error"},
    ]
    for error in unrelated:
        assert updates.failed(error) is None
    assert len(updates) == 1


def test_updates_an_error_matches_once() -> None:
    updates = SessionUpdates()
    updates.send(CLIENT, update("c1"))
    assert updates.failed(error_naming("c1")) is not None
    assert updates.failed(error_naming("c1")) is None
