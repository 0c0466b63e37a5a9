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


def add_staff_notification(
    session: AsyncSession,
    *,
    nid: str,
    case_event_id: int,
    case_id: int,
    event_source: str,
    event_id: str,
    advocate: m.Advocate,
    role: str,
    survivor_id: int | None,
    template: str,
    template_version: int,
    rules_version: str,
    rule: str,
    reason: str,
    now: datetime,
    due_by: datetime | None,
    hold_reason: str | None = None,
    supersedes_id: str | None = None,
    inbound_id: int | None = None,
) -> m.Notification:
    """A message for an advocate or supervisor (a task, a prompt, a reply to pass on), by e-mail,
    scheduled to go now; `supersedes_id` names the survivor's message it stands in for."""
    row = m.Notification(
        id=nid,
        case_event_id=case_event_id,
        case_id=case_id,
        event_source=event_source,
        event_id=event_id,
        recipient_role=role,
        survivor_id=survivor_id,
        advocate_id=advocate.id,
        channel="email",
        language="en",
        detail="discreet",
        template=template,
        template_version=template_version,
        rules_version=rules_version,
        rule=rule,
        status=Status.SCHEDULED.value,
        status_reason=reason,
        hold_reason=hold_reason,
        send_at=now,
        due_by=due_by,
        supersedes_id=supersedes_id,
        inbound_id=inbound_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row
