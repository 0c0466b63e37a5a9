"""The seal hash: a stable, canonical function of the row, the previous seal and the position."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.core.audit_seal import GENESIS, VerifyReport, canonical_document, seal_hash

AT = datetime(2026, 11, 18, 11, 0, 0, 123456, tzinfo=UTC)
SEALED = datetime(2026, 11, 18, 11, 0, 5, tzinfo=UTC)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": 7,
        "at": AT,
        "actor": "rules",
        "action": "notification.planned",
        "case_id": 3,
        "case_event_id": 11,
        "notification_id": "00000000-0000-5000-8000-00000000a001",
        "rule": "vc.suspect_arrested.survivor",
        "codes": {"channel": "sms", "attempt": 1, "held": False},
    }
    row.update(changes)
    return row


def _hash(row: dict[str, Any], *, prev: str = GENESIS, position: int = 1) -> str:
    return seal_hash(prev_hash=prev, position=position, sealed_at=SEALED, row=row)


def test_the_canonical_document_is_fixed() -> None:
    # Seals already in databases depend on these exact bytes: change them only with a new "v".
    document = canonical_document(prev_hash=GENESIS, position=1, sealed_at=SEALED, row=_row())
    assert document == (
        b'{"position":1,"prev":"' + GENESIS.encode() + b'","row":{"action":"notification.planned",'
        b'"actor":"rules","at":"2026-11-18T11:00:00.123456Z","case_event_id":11,"case_id":3,'
        b'"codes":{"attempt":1,"channel":"sms","held":false},'
        b'"notification_id":"00000000-0000-5000-8000-00000000a001",'
        b'"rule":"vc.suspect_arrested.survivor","seq":7},'
        b'"sealed_at":"2026-11-18T11:00:05.000000Z","v":1}'
    )
    assert _hash(_row()) == hashlib.sha256(document).hexdigest()
    assert _hash(_row()) == "9e6f7067242c3e979663ad3ab2dd8652eb7e9de9db06f3d51a06a832dc3018ab"


def test_the_hash_does_not_depend_on_key_order_or_time_zone() -> None:
    reordered = _row(codes={"held": False, "attempt": 1, "channel": "sms"})
    elsewhere = _row(at=AT.astimezone(timezone(timedelta(hours=-5))))
    assert _hash(reordered) == _hash(_row()) == _hash(elsewhere)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 8},
        {"at": AT + timedelta(microseconds=1)},
        {"actor": "notifier"},
        {"action": "notification.sent"},
        {"case_id": None},
        {"case_event_id": 12},
        {"notification_id": None},
        {"rule": "vc.other"},
        {"codes": {"channel": "sms", "attempt": 2, "held": False}},
        {"codes": {"channel": "sms", "attempt": 1, "held": 0}},
        {"codes": {}},
    ],
)
def test_every_field_of_the_row_is_bound(change: dict[str, Any]) -> None:
    assert _hash(_row(**change)) != _hash(_row())


def test_the_previous_hash_position_and_seal_time_are_bound() -> None:
    base = _hash(_row())
    assert _hash(_row(), prev="1" * 64) != base
    assert _hash(_row(), position=2) != base
    assert seal_hash(prev_hash=GENESIS, position=1, sealed_at=SEALED, row=_row()) == base
    later = SEALED + timedelta(seconds=1)
    assert seal_hash(prev_hash=GENESIS, position=1, sealed_at=later, row=_row()) != base


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        _hash(_row(at=AT.replace(tzinfo=None)))
    with pytest.raises(ValueError):
        seal_hash(prev_hash=GENESIS, position=1, sealed_at=SEALED.replace(tzinfo=None), row=_row())


def test_non_ascii_codes_hash_as_utf8() -> None:
    document = canonical_document(
        prev_hash=GENESIS, position=1, sealed_at=SEALED, row=_row(codes={"reason": "café"})
    )
    assert "café".encode() in document


def test_the_report_is_one_line_of_json() -> None:
    report = VerifyReport(
        ok=False,
        rows_checked=3,
        seals_checked=3,
        unsealed=1,
        first_problem="row seq 2 does not match its seal at position 2",
        first_problem_seq=2,
        first_problem_position=2,
        problem_count=1,
        problems=["row seq 2 does not match its seal at position 2"],
    )
    line = report.as_json()
    assert "\n" not in line
    decoded = json.loads(line)
    assert decoded["ok"] is False
    assert decoded["first_problem_seq"] == 2
    assert {"rows_checked", "seals_checked", "unsealed", "first_problem"} <= decoded.keys()
