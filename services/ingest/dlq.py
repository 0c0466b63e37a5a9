"""The rejected records (`carehub dlq list`, `carehub dlq replay`).

A replay runs the record's original bytes through the same mapping and validation as when it
first came, never waving it through: once an upstream system or a rules version is fixed, what
now passes is recorded (and published), and what still fails stays where it was with its new
reason. Listing shows reasons and pointers only, never the record's contents.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit, strict_json
from services.core.db import models as m
from services.core.rejected import describe, list_rejected
from services.ingest.feeds import ingest_records
from services.ingest.recording import Outcome, record_event_safely

ACTOR = "dlq"
__all__ = ["describe", "list_rejected", "replay"]


async def replay(
    session: AsyncSession, row: m.RejectedRecord, *, now: datetime, max_skew: timedelta
) -> list[Outcome]:
    """Offer the record again; return what became of it (only accepted/duplicate outcomes are
    kept: a record that fails again stays this one row, with its new reason)."""
    if not row.original:
        return []  # erased: nothing left to offer again, and its reason stays as it was
    row.replays = (row.replays or 0) + 1
    outcomes: list[Outcome] = []
    nested = await session.begin_nested()
    try:
        if row.feed:
            outcomes = await ingest_records(
                session, row.feed, row.original, now=now, way_in="replay", max_skew=max_skew
            )
        else:
            try:
                parsed: Any = strict_json.loads(row.original)
            except strict_json.JsonProblem:
                parsed = None
            outcomes = [
                await record_event_safely(
                    session, parsed, row.original, now=now, way_in="replay", max_skew=max_skew
                )
            ]
    except BaseException:
        await nested.rollback()
        raise
    failed = [o for o in outcomes if o.status in ("invalid", "conflict")]
    if failed:
        # Nothing of a record that still fails is kept twice: undo, and note the new reason.
        await nested.rollback()
        row.errors = [{"pointer": e.pointer, "message": e.message} for e in failed[0].errors]
        row.replay_outcome = failed[0].status
        audit.record(
            session, at=now, actor=ACTOR, action="rejected.replay_failed", rejected_id=row.id
        )
        return failed
    await nested.commit()
    row.replayed_at = now
    row.replay_outcome = (
        "accepted" if any(o.status == "accepted" for o in outcomes) else "duplicate"
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="rejected.replayed",
        rejected_id=row.id,
        outcome=row.replay_outcome,
    )
    return outcomes
