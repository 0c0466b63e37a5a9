"""Handing recorded events to the broker after their transaction has committed.

An event row is marked `published_at` in the transaction that records it; if publishing then
fails, the dispatcher's re-drive publishes it again once that mark is older than
`CAREHUB_REDRIVE_AFTER_S` and the event is still unprocessed: the database is the truth, the
broker only carries work.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from services.core.db import models as m
from services.core.kafka import publish_all
from services.core.logs import get_logger
from services.core.records import CaseEventRef
from services.core.runtime import Runtime
from services.core.topics import CASE_EVENTS, CASE_EVENTS_DLQ

log = get_logger("ingest")


async def publish_events(rt: Runtime, refs: Sequence[CaseEventRef]) -> None:
    if not refs:
        return
    try:
        await publish_all(
            rt.broker, [(ref.encode(), CASE_EVENTS.name, ref.subject.encode()) for ref in refs]
        )
    except Exception as exc:  # noqa: BLE001 - the re-drive publishes what was not published
        log.warning("event.publish_failed", count=len(refs), error=type(exc).__name__)


async def publish_rejections(rt: Runtime, rejected_ids: Sequence[int]) -> None:
    """Put a reference and the reason of each rejected record on `case-events.dlq`."""
    if not rejected_ids:
        return
    async with rt.sessions.begin() as session:
        rows = [await session.get_one(m.RejectedRecord, rid) for rid in rejected_ids]
        try:
            for row in rows:
                record = {
                    "rejected_id": row.id,
                    "way_in": row.way_in,
                    "feed": row.feed,
                    "source": row.source,
                    "id": row.event_id,
                    "reason": row.reason_code,
                    "errors": row.errors,
                    "received_at": row.received_at.isoformat(),
                }
                key = f"{row.source or '-'}/{row.event_id or row.id}".encode()
                await rt.broker.publish(json.dumps(record).encode(), CASE_EVENTS_DLQ.name, key=key)
                row.published_at = rt.clock.now()
        except Exception as exc:  # noqa: BLE001 - the rows stay; an operator can list them
            log.warning("dlq.publish_failed", count=len(rows), error=type(exc).__name__)
