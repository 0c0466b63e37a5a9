"""Loading what the engine needs about a case from the database, as pure domain values."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.domain import (
    CaseContext,
    ContactPreference,
    Detail,
    Frequency,
    Person,
    Relationship,
    Role,
    SurvivorContext,
)


async def load_case_context(session: AsyncSession, case: m.Case, now: datetime) -> CaseContext:
    links = (
        await session.execute(
            select(m.CaseSurvivor.survivor_id, m.CaseSurvivor.relationship)
            .join(m.Survivor, m.Survivor.id == m.CaseSurvivor.survivor_id)
            .where(m.CaseSurvivor.case_id == case.id, m.Survivor.erased_at.is_(None))
            .order_by(m.CaseSurvivor.survivor_id)
        )
    ).all()
    survivor_ids = [row.survivor_id for row in links]
    prefs = await _current_preferences(session, survivor_ids)
    advocates = await _current_advocates(session, survivor_ids, now)
    stand_in = await _stand_in_supervisor(session, case)
    survivors = tuple(
        SurvivorContext(
            survivor=Person(row.survivor_id, Role.SURVIVOR),
            relationship=Relationship(row.relationship),
            preference=prefs.get(row.survivor_id),
            advocate=advocates.get(row.survivor_id, stand_in),
        )
        for row in links
    )
    return CaseContext(
        case_id=case.id,
        urn=case.urn,
        enhanced_rights=case.enhanced_rights,
        survivors=survivors,
    )


async def _current_preferences(
    session: AsyncSession, survivor_ids: list[int]
) -> dict[int, ContactPreference]:
    if not survivor_ids:
        return {}
    latest = (
        select(m.ContactPreference.survivor_id, func.max(m.ContactPreference.version).label("v"))
        .where(m.ContactPreference.survivor_id.in_(survivor_ids))
        .group_by(m.ContactPreference.survivor_id)
        .subquery()
    )
    rows = (
        await session.scalars(
            select(m.ContactPreference).join(
                latest,
                and_(
                    latest.c.survivor_id == m.ContactPreference.survivor_id,
                    latest.c.v == m.ContactPreference.version,
                ),
            )
        )
    ).all()
    return {row.survivor_id: to_domain_preference(row) for row in rows}


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
    )


async def _current_advocates(
    session: AsyncSession, survivor_ids: list[int], now: datetime
) -> dict[int, Person]:
    if not survivor_ids:
        return {}
    rows = (
        await session.execute(
            select(m.AdvocateAssignment.survivor_id, m.Advocate.id, m.Advocate.role)
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
    # The latest assignment that is valid now wins (ordered ascending, later rows overwrite).
    return {
        row.survivor_id: Person(
            row.id, Role.SUPERVISOR if row.role == "supervisor" else Role.ADVOCATE
        )
        for row in rows
    }


async def _stand_in_supervisor(session: AsyncSession, case: m.Case) -> Person | None:
    """With no advocate, the team's supervisor takes their place (trauma-informed rule 15)."""
    query = select(m.Team.supervisor_id).where(
        m.Team.id == case.team_id if case.team_id is not None else m.Team.is_default.is_(True)
    )
    supervisor_id = (await session.execute(query.limit(1))).scalar_one_or_none()
    if supervisor_id is None:
        return None
    active = await session.scalar(
        select(m.Advocate.id).where(m.Advocate.id == supervisor_id, m.Advocate.active.is_(True))
    )
    return Person(supervisor_id, Role.SUPERVISOR) if active is not None else None
