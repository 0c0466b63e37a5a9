"""Gauges read from the database, which only a process that owns the periodic work sets (the
dispatcher, on its re-drive beat): how many notifications nobody has been told of yet are in each
state, and how many owed survivor notifications are close to, or past, their Victims' Code
deadline. The database is the truth, so one sampler is enough for every process to share.

Both read the partial index `ix_notifications_not_told` only: it holds the work in hand, so a
sample costs the same with a week of history as with seven years. Final states are not
sampled (counting them would read the whole history every beat): how many notifications reached
each is the counter `carehub_notifications_total{status}`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.db.queries import not_told
from services.core.states import NOT_TOLD

NOTIFICATIONS_BY_STATUS = Gauge(
    "carehub_notifications_by_status",
    "Notifications nobody has been told of yet, in each status that is not final (a text "
    "`sent` is waiting for its receipt; sampled by the dispatcher)",
    ["status"],
)
OWED_NEAR_DEADLINE = Gauge(
    "carehub_owed_near_deadline",
    "Survivor notifications not yet delivered whose Victims' Code deadline is past (overdue), "
    "or passes within 4 or 24 hours (each window includes the overdue ones; sampled by the "
    "dispatcher)",
    ["window"],
)
WINDOWS = (("overdue", timedelta(0)), ("4h", timedelta(hours=4)), ("24h", timedelta(hours=24)))


async def sample(session: AsyncSession, now: datetime) -> dict[str, dict[str, int]]:
    """Read the figures and set the gauges; return them (for tests and logs)."""
    waiting = not_told()
    by_status = dict(
        (
            await session.execute(
                select(m.Notification.status, func.count())
                .where(waiting)
                .group_by(m.Notification.status)
            )
        ).all()
    )
    for status in NOT_TOLD:
        NOTIFICATIONS_BY_STATUS.labels(status).set(by_status.get(status, 0))
    owed = (m.Notification.recipient_role == "survivor") & m.Notification.due_by.is_not(None)
    counts = (
        await session.execute(
            select(
                *(func.count().filter(m.Notification.due_by <= now + ahead) for _, ahead in WINDOWS)
            ).where(waiting, owed)
        )
    ).one()
    near: dict[str, int] = {}
    for (window, _), count in zip(WINDOWS, counts, strict=True):
        near[window] = int(count or 0)
        OWED_NEAR_DEADLINE.labels(window).set(near[window])
    return {"by_status": {k: int(v) for k, v in by_status.items()}, "owed": near}
