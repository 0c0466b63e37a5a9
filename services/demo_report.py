"""The table `carehub demo` prints: what was decided, for whom, and what was delivered when."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from services.core.db import models as m

LONDON = ZoneInfo("Europe/London")


def _t(value: datetime | None) -> str:
    return value.astimezone(LONDON).strftime("%a %d %b %H:%M") if value else "-"


async def report(
    sessions: Any, urn: str, posted: list[tuple[str, int, str]], out: Callable[[str], None]
) -> dict[str, Any]:
    out(f"\ncarehub demo: case {urn}\n")
    out("Events posted to /v1/events:")
    for event_id, code, status in posted:
        out(f"  {event_id:<12} HTTP {code}  {status}")
    async with sessions() as session:
        rows = (
            await session.execute(
                select(m.CaseEvent.type, m.DecisionRow, m.Notification)
                .join(m.DecisionRow, m.DecisionRow.case_event_id == m.CaseEvent.id)
                .outerjoin(m.Notification, m.Notification.id == m.DecisionRow.notification_id)
                .where(m.CaseEvent.urn == urn)
                .order_by(m.CaseEvent.event_time, m.DecisionRow.id)
            )
        ).all()
        names = {
            a.id: f"{a.display_name} ({a.role})"
            for a in (await session.scalars(select(m.Advocate))).all()
        }
        survivors = {
            s.id: f"{s.preferred_name or s.full_name} (survivor)"
            for s in (await session.scalars(select(m.Survivor))).all()
        }
    header = (
        f"{'event':<26} {'decision':<9} {'to':<30} {'channel':<8} {'template':<24} "
        f"{'status':<10} {'send at':<17} {'due by':<17} {'informed':<17} why"
    )
    out("\nWhat was decided and delivered:")
    out(header)
    out("-" * len(header))
    counts: dict[str, int] = {}
    for etype, decision, notification in rows:
        who = (
            survivors.get(decision.recipient_id, "?")
            if decision.recipient_role == "survivor"
            else names.get(decision.recipient_id, "?")
        )
        status = notification.status if notification else decision.outcome
        counts[status] = counts.get(status, 0) + 1
        why = decision.rule.split(":", 1)[-1]
        reason = (notification.status_reason if notification else None) or decision.hold_reason
        out(
            f"{etype:<26} {decision.outcome:<9} {who:<30} {decision.channel or '-':<8} "
            f"{decision.template or '-':<24} {status:<10} "
            f"{_t(notification.send_at if notification else None):<17} {_t(decision.due_by):<17} "
            f"{_t(notification.informed_at if notification else None):<17} "
            f"{why}{f' ({reason})' if reason else ''}"
        )
    out("")
    return {"events_posted": len(posted), "decisions": len(rows), "by_status": counts}
