"""Rejected records as operations see them: reasons and pointers only, never their contents.
Shared by `carehub dlq` (services.ingest.dlq, which also replays them) and the portal's
operations page.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m


def describe(row: m.RejectedRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "received_at": row.received_at.isoformat().replace("+00:00", "Z"),
        "way_in": row.way_in,
        "feed": row.feed,
        "source": row.source,
        "event_id": row.event_id,
        "reason": row.reason_code,
        "errors": row.errors,
        "bytes": len(row.original or b""),
        "replays": row.replays or 0,
        "replayed_at": row.replayed_at.isoformat().replace("+00:00", "Z")
        if row.replayed_at
        else None,
        "replay_outcome": row.replay_outcome,
    }


async def list_rejected(
    session: AsyncSession, *, include_resolved: bool = False, limit: int = 1000
) -> list[m.RejectedRecord]:
    query = select(m.RejectedRecord).order_by(m.RejectedRecord.id).limit(limit)
    if not include_resolved:
        query = query.where(m.RejectedRecord.replayed_at.is_(None))
    rows = list((await session.scalars(query)).all())
    # A record whose bytes were erased (retention, an erasure request) cannot be replayed.
    return [r for r in rows if include_resolved or r.original]
