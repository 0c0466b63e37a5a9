"""Changing a notification's status and saying why: the one way the services do it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.db import models as m
from services.core.states import Status, check_transition


def move(
    session: AsyncSession,
    row: m.Notification,
    status: Status,
    *,
    now: datetime,
    actor: str,
    reason: str | None = None,
    action: str | None = None,
    case_event_id: int | None = None,
    rule: str | None = None,
    **codes: str | int | bool | None,
) -> None:
    """Move `row` to `status` if the state table allows it (else IllegalTransition), record the
    reason, and add the audit row to the caller's transaction. The caller holds the row lock."""
    row.status = check_transition(row.status, status)
    row.status_reason = reason
    row.updated_at = now
    audit.record(
        session,
        at=now,
        actor=actor,
        action=action or f"notification.{status.value}",
        case_id=row.case_id,
        case_event_id=case_event_id,
        notification_id=row.id,
        rule=rule,
        reason=reason,
        **codes,
    )
