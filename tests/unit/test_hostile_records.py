"""Malformed records on our own topics are refused, never raised: one bad record must not stop
its partition (a raised error rewinds the batch and replays it forever)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.cloudevents import InvalidEvent, validate_event
from services.core.records import BadRecord, CaseEventRef, NotificationDue

REF = {
    "source": "police/01",
    "id": "e1",
    "type": "police.suspect_arrested",
    "subject": "01AB1234524",
}


@pytest.mark.parametrize(
    "raw",
    [
        None,
        5,
        [1],
        b"null",
        b"[1]",
        b"\xff\xfe",
        b'{"case_event_id": 1e400}',
        {**REF, "case_event_id": 2**63},
        {**REF, "case_event_id": 0},
        {**REF, "case_event_id": True},
        {**REF, "case_event_id": "12"},
        {**REF, "case_event_id": 1, "subject": None},
        b"[" * 100_000,
    ],
)
def test_a_malformed_case_events_record_is_a_bad_record(raw: Any) -> None:
    with pytest.raises(BadRecord):
        CaseEventRef.decode(raw)


@pytest.mark.parametrize("raw", [None, 5, [1], b"{}", {"notification_id": None, "channel": "sms"}])
def test_a_malformed_due_record_is_a_bad_record(raw: Any) -> None:
    with pytest.raises(BadRecord):
        NotificationDue.decode(raw)


def test_a_good_reference_still_decodes() -> None:
    assert CaseEventRef.decode({**REF, "case_event_id": 7}).case_event_id == 7


def test_an_instant_before_the_first_representable_one_is_an_invalid_time() -> None:
    event = {
        "specversion": "1.0",
        "id": "x",
        "source": "police/01",
        "type": "police.suspect_arrested",
        "subject": "01AB1234524",
        "time": "0001-01-01T00:00:00+01:00",
        "data": {},
    }
    with pytest.raises(InvalidEvent) as caught:
        validate_event(event, now=datetime(2026, 11, 23, tzinfo=UTC))
    assert [e.pointer for e in caught.value.errors] == ["/time"]
