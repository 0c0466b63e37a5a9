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


def _load(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
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
    def decode(cls, raw: bytes | str | dict[str, Any]) -> CaseEventRef:
        value = _load(raw)
        try:
            return cls(
                case_event_id=int(value["case_event_id"]),
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

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | str | dict[str, Any]) -> NotificationDue:
        value = _load(raw)
        try:
            return cls(
                notification_id=_text(value["notification_id"]), channel=str(value["channel"] or "")
            )
        except KeyError:
            raise BadRecord("notifications.due record lacks notification_id/channel") from None
