"""Loading what the engine needs about a case from the database, as pure domain values."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.db.queries import current_advocates, current_preferences, stand_in_supervisor
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
    prefs = await current_preferences(session, survivor_ids)
    advocates = {
        sid: _person(a) for sid, a in (await current_advocates(session, survivor_ids, now)).items()
    }
    supervisor = await stand_in_supervisor(session, case)
    stand_in = Person(supervisor.id, Role.SUPERVISOR) if supervisor is not None else None
    survivors = tuple(
        SurvivorContext(
            survivor=Person(row.survivor_id, Role.SURVIVOR),
            relationship=Relationship(row.relationship),
            preference=to_domain_preference(prefs[row.survivor_id])
            if row.survivor_id in prefs
            else None,
            advocate=advocates.get(row.survivor_id, stand_in),
            supervisor=stand_in,
        )
        for row in links
    )
    return CaseContext(
        case_id=case.id,
        urn=case.urn,
        enhanced_rights=case.enhanced_rights,
        survivors=survivors,
    )


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


def _person(advocate: m.Advocate) -> Person:
    return Person(advocate.id, Role.SUPERVISOR if advocate.role == "supervisor" else Role.ADVOCATE)
