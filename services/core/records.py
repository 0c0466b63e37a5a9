"""What carehub's own topics carry: references, never personal data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


class BadRecord(ValueError):
    """A record on one of our topics is not what the topic carries."""


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRecord("a reference field is missing or not a string")
    return value


# Ids are BIGINT on PostgreSQL: a larger one would fail in the database and rewind the batch
# forever, so it is refused here like any other malformed record.
MAX_ID = 2**63 - 1


def _load(raw: object) -> dict[str, Any]:
    """The record as a JSON object. FastStream may already have decoded the body (to a dict,
    or to a list, a number or None); anything but an object is refused, never raised."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, bytes | bytearray | str):
        raise BadRecord("record is not a JSON object")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRecord("record is not JSON") from None
    if not isinstance(value, dict):
        raise BadRecord("record is not a JSON object")
    return value


@dataclass(frozen=True)
class CaseEventRef:
    """On `case-events` (key: URN): which recorded event to process."""

    case_event_id: int
    source: str
    id: str
    type: str
    subject: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: object) -> CaseEventRef:
        value = _load(raw)
        raw_id = value.get("case_event_id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int) or not 0 < raw_id <= MAX_ID:
            raise BadRecord("case-events record has no valid case_event_id")
        try:
            return cls(
                case_event_id=raw_id,
                source=_text(value["source"]),
                id=_text(value["id"]),
                type=_text(value["type"]),
                subject=_text(value["subject"]),
            )
        except (KeyError, TypeError, ValueError):
            raise BadRecord(
                "case-events record lacks case_event_id/source/id/type/subject"
            ) from None


@dataclass(frozen=True)
class NotificationDue:
    """On `notifications.due` (key: recipient): a notification the dispatcher released."""

    notification_id: str
    channel: str
    # The record's key ("survivor:12"): one recipient's messages are sent in order.
    recipient: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: object) -> NotificationDue:
        value = _load(raw)
        try:
            return cls(
                notification_id=_text(value["notification_id"]),
                channel=str(value["channel"] or ""),
                recipient=str(value.get("recipient") or ""),
            )
        except KeyError:
            raise BadRecord("notifications.due record lacks notification_id/channel") from None
