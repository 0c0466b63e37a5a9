"""Writing the audit trail: ids, codes and rule names only, never free text with personal data."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db.models import AuditEntry

_AUDIT_LOG = cast(Table, AuditEntry.__table__)


def record(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    case_id: int | None = None,
    case_event_id: int | None = None,
    notification_id: str | None = None,
    rule: str | None = None,
    **codes: str | int | bool | None,
) -> AuditEntry:
    """Add one audit row to the caller's transaction (it commits with the change it explains)."""
    entry = AuditEntry(
        **row_values(
            at=at,
            actor=actor,
            action=action,
            case_id=case_id,
            case_event_id=case_event_id,
            notification_id=notification_id,
            rule=rule,
            **codes,
        )
    )
    session.add(entry)
    return entry


def row_values(
    *,
    at: datetime,
    actor: str,
    action: str,
    case_id: int | None = None,
    case_event_id: int | None = None,
    notification_id: str | None = None,
    rule: str | None = None,
    **codes: str | int | bool | None,
) -> dict[str, Any]:
    """One audit row as `insert_rows` takes it: the same fields as `record`."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "case_id": case_id,
        "case_event_id": case_event_id,
        "notification_id": notification_id,
        "rule": rule,
        "codes": {k: v for k, v in codes.items() if v is not None},
    }


async def insert_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert audit rows (`row_values`) in the caller's transaction now, in one statement,
    bypassing the session's unit of work: for a hot path that writes many and never reads them
    back."""
    if rows:
        await session.execute(insert(_AUDIT_LOG), rows)


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "case_id": entry.case_id,
        "case_event_id": entry.case_event_id,
        "notification_id": entry.notification_id,
        "rule": entry.rule,
        "codes": entry.codes,
    }
