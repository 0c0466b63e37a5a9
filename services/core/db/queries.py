"""Questions about the case data that more than one service asks, answered one way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.domain import ContactPreference, Detail, Frequency
from services.core.states import NOT_TOLD

T = TypeVar("T")
# Longest IN list one statement gets (SQLite limits the parameters of a statement).
IN_LIST_MAX = 500


def not_told() -> ColumnElement[bool]:
    """Nobody has been told of this notification yet and it is still on its way: the condition
    of the partial index `ix_notifications_not_told`, in literals, so that the planner sees the
    query is within it (as it would not with bound parameters)."""
    return and_(
        m.Notification.informed_at.is_(None),
        m.Notification.status.in_([literal_column(f"'{status}'") for status in NOT_TOLD]),
    )


def survivor_told() -> ColumnElement[bool]:
    """A survivor's notification they were told of: `ix_notifications_survivor_informed_at`'s
    condition, in literals as `not_told`."""
    return and_(
        m.Notification.recipient_role == literal_column("'survivor'"),
        m.Notification.informed_at.is_not(None),
    )


def in_chunks(items: Sequence[T], size: int = IN_LIST_MAX) -> list[Sequence[T]]:
    """`items` in slices short enough for one statement's IN list."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def current_preferences(
    session: AsyncSession, survivor_ids: Sequence[int]
) -> dict[int, m.ContactPreference]:
    """Each survivor's highest-numbered contact-preference version."""
    if not survivor_ids:
        return {}
    latest = (
        select(m.ContactPreference.survivor_id, func.max(m.ContactPreference.version).label("v"))
        .where(m.ContactPreference.survivor_id.in_(survivor_ids))
        .group_by(m.ContactPreference.survivor_id)
        .subquery()
    )
    rows = await session.scalars(
        select(m.ContactPreference).join(
            latest,
            and_(
                latest.c.survivor_id == m.ContactPreference.survivor_id,
                latest.c.v == m.ContactPreference.version,
            ),
        )
    )
    return {row.survivor_id: row for row in rows.all()}


async def current_advocates(
    session: AsyncSession, survivor_ids: Sequence[int], now: datetime
) -> dict[int, m.Advocate]:
    """The active advocate assigned to each survivor at `now` (the latest valid assignment)."""
    if not survivor_ids:
        return {}
    rows = (
        await session.execute(
            select(m.AdvocateAssignment.survivor_id, m.Advocate)
            .join(m.Advocate, m.Advocate.id == m.AdvocateAssignment.advocate_id)
            .where(
                m.AdvocateAssignment.survivor_id.in_(survivor_ids),
                m.AdvocateAssignment.valid_from <= now,
                or_(m.AdvocateAssignment.valid_to.is_(None), m.AdvocateAssignment.valid_to > now),
                m.Advocate.active.is_(True),
            )
            .order_by(m.AdvocateAssignment.valid_from)
        )
    ).all()
    # Ordered ascending: a later assignment overwrites an earlier one.
    return {survivor_id: advocate for survivor_id, advocate in rows}


async def stand_in_supervisor(session: AsyncSession, case: m.Case) -> m.Advocate | None:
    """With no advocate, the team's supervisor takes their place (trauma-informed rule 15):
    the case's team, or the default team when the case has none."""
    return (await stand_in_supervisors(session, [case.team_id]))[case.team_id]


async def stand_in_supervisors(
    session: AsyncSession, team_ids: Iterable[int | None]
) -> dict[int | None, m.Advocate | None]:
    """`stand_in_supervisor` for the cases of several teams (None: a case with no team, whose
    stand-in is the supervisor of the default team, the first by id if there are several), in
    one query; an inactive supervisor, or none, is None."""
    wanted = set(team_ids)
    named = sorted(t for t in wanted if t is not None)
    which = []
    if named:
        which.append(m.Team.id.in_(named))
    if None in wanted:
        which.append(m.Team.is_default.is_(True))
    found: dict[int | None, m.Advocate | None] = dict.fromkeys(wanted)
    if not which:
        return found
    rows = await session.execute(
        select(m.Team.id, m.Team.is_default, m.Advocate)
        .outerjoin(m.Advocate, m.Advocate.id == m.Team.supervisor_id)
        .where(or_(*which))
        .order_by(m.Team.id)
    )
    default_seen = False
    for team_id, is_default, supervisor in rows:
        active = supervisor if supervisor is not None and supervisor.active else None
        if team_id in wanted:
            found[team_id] = active
        if is_default and None in wanted and not default_seen:
            found[None], default_seen = active, True
    return found


async def person_for(
    session: AsyncSession, survivor_id: int, case: m.Case, now: datetime
) -> tuple[m.Advocate, str] | None:
    """Who looks after this survivor now, and in which role: their advocate, else the team's
    supervisor standing in ("advocate" or "supervisor"); None if there is nobody at all."""
    advocate = (await current_advocates(session, [survivor_id], now)).get(survivor_id)
    if advocate is None:
        advocate = await stand_in_supervisor(session, case)
    if advocate is None:
        return None
    return advocate, "supervisor" if advocate.role == "supervisor" else "advocate"


def to_domain_preference(row: m.ContactPreference) -> ContactPreference:
    return ContactPreference(
        version=row.version,
        has_phone=bool(row.phone),
        has_email=bool(row.email),
        sms_safe=row.sms_safe,
        sms_safe_review_by=row.sms_safe_review_by,
        email_safe=row.email_safe,
        email_safe_review_by=row.email_safe_review_by,
        language=row.language,
        timezone=row.timezone,
        safe_window_start=row.safe_window_start,
        safe_window_end=row.safe_window_end,
        frequency=Frequency(row.frequency),
        detail=Detail(row.detail),
        opted_out=row.opted_out,
        has_address=bool(row.postal_address),
        letter_safe=row.letter_safe,
        letter_safe_review_by=row.letter_safe_review_by,
    )
