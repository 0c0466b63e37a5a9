"""What every native format shares: the envelope fields, and turning a record into an event.

Each feed names its envelope fields in its own way (police ``record_type``, CPS ``msg_type``…);
a :class:`FeedFormat` records those names and the mapper for each record type. The canonical
``source`` is ``<feed>/<unit>`` (the force, CPS area, court system or probation region) and ``id``
is ``<system>:<record id>``, so a record sent again gets the same ``(source, id)`` and is
recognised as a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.core.cloudevents import FieldError
from services.core.urn import InvalidURN, validate_urn
from services.ingest.adapters.native import AdapterError, NativeRecord, unflatten

__all__ = ["FeedFormat", "Mapper", "slug"]

# A mapper reads one record type and returns the canonical type and data. It may leave errors
# in the record instead of raising; the data it returns is then thrown away.
Mapper = Callable[[NativeRecord], tuple[str, dict[str, Any]]]

_SYSTEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-]{0,39}")
SYSTEM_HINT = "must be 1 to 40 letters, digits, spaces, hyphens or underscores"


def slug(name: str) -> str:
    """``COMMON_PLATFORM`` or ``Common Platform`` -> ``common-platform``."""
    return re.sub(r"[ _\-]+", "-", name.strip()).lower()


@dataclass(frozen=True)
class FeedFormat:
    """One feed's native format: the names of its envelope fields and a mapper per record type."""

    feed: str
    record_type: str
    record_id: str
    system: str
    unit: str
    unit_shape: re.Pattern[str]
    unit_hint: str
    urn: str
    occurred: str
    received: str
    mappers: Mapping[str, Mapper]

    def to_event(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Map one native record to a canonical event, or raise :class:`AdapterError`."""
        record = NativeRecord(unflatten(fields))
        kind = record.text(self.record_type, required=True, max_len=100)
        if kind is None:
            raise AdapterError("invalid_field", record.errors)
        mapper = self.mappers.get(kind.strip().upper())
        if mapper is None:
            raise AdapterError(
                "unknown_record_type",
                [FieldError(record.pointer(self.record_type), "is not a record type of this feed")],
            )
        record_id = record.text(self.record_id, required=True, max_len=150)
        system = record.matching(self.system, _SYSTEM, SYSTEM_HINT, required=True)
        unit = record.matching(self.unit, self.unit_shape, self.unit_hint, required=True)
        subject = self._urn(record)
        occurred = record.timestamp(self.occurred, required=True)
        received = record.timestamp(self.received)
        event_type, data = mapper(record)
        if record.errors:
            raise AdapterError("invalid_field", record.errors)
        assert record_id and system and unit and subject and occurred  # required, so present
        if not event_type.startswith(f"{self.feed}."):  # a mapper bug, never the sender's
            raise AdapterError(
                "type_not_allowed_for_feed",
                [FieldError(record.pointer(self.record_type), "maps to another feed's type")],
            )
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{slug(system)}:{record_id}",
            "source": f"{self.feed}/{slug(unit)}",
            "type": event_type,
            "subject": subject,
            "time": occurred,
        }
        if received is not None:
            event["agencyreceivedat"] = received
        event["datacontenttype"] = "application/json"
        event["data"] = data
        return event

    def _urn(self, record: NativeRecord) -> str | None:
        raw = record.text(self.urn, required=True, max_len=40)
        if raw is None:
            return None
        try:
            return validate_urn(raw)
        except InvalidURN as exc:  # the message describes the shape, never the reference
            record.fail(self.urn, str(exc))
            return None
