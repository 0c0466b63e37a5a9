"""Gauges read from the database, which only a process that owns the periodic work sets (the
dispatcher, on its re-drive beat): how many notifications are in each state, and how many owed
survivor notifications are close to, or past, their Victims' Code deadline and not yet
delivered. The database is the truth, so one sampler is enough for every process to share.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.states import FINAL, Status

NOTIFICATIONS_BY_STATUS = Gauge(
    "carehub_notifications_by_status",
    "Notifications now in each status (sampled by the dispatcher)",
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
# Not yet told: what is still on its way (a sent text is not yet delivered).
NOT_TOLD = [s.value for s in Status if s not in FINAL] + [Status.SENT.value]


async def sample(session: AsyncSession, now: datetime) -> dict[str, dict[str, int]]:
    """Read the figures and set the gauges; return them (for tests and logs)."""
    by_status = dict(
        (
            await session.execute(
                select(m.Notification.status, func.count()).group_by(m.Notification.status)
            )
        ).all()
    )
    for status in Status:
        NOTIFICATIONS_BY_STATUS.labels(status.value).set(by_status.get(status.value, 0))
    near: dict[str, int] = {}
    for window, ahead in WINDOWS:
        count = await session.scalar(
            select(func.count())
            .select_from(m.Notification)
            .where(
                m.Notification.recipient_role == "survivor",
                m.Notification.due_by.is_not(None),
                m.Notification.due_by <= now + ahead,
                m.Notification.informed_at.is_(None),
                m.Notification.status.in_(NOT_TOLD),
            )
        )
        near[window] = int(count or 0)
        OWED_NEAR_DEADLINE.labels(window).set(near[window])
    return {"by_status": {k: int(v) for k, v in by_status.items()}, "owed": near}
