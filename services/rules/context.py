"""Loading what the engine needs about a case from the database, as pure domain values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.db.queries import (
    current_advocates,
    current_preferences,
    in_chunks,
    stand_in_supervisors,
    to_domain_preference,
)
from services.core.domain import (
    CaseContext,
    ContactPreference,
    Person,
    Relationship,
    Role,
    SurvivorContext,
)


async def load_case_context(session: AsyncSession, case: m.Case, now: datetime) -> CaseContext:
    return (await load_case_contexts(session, [case], now))[case.id]


async def load_case_contexts(
    session: AsyncSession, cases: Sequence[m.Case], now: datetime
) -> dict[int, CaseContext]:
    """The context of each case, by case id, in a fixed number of queries however many cases
    (the rules consumer loads a whole batch's at once)."""
    if not cases:
        return {}
    links: list[Any] = []
    for chunk in in_chunks(sorted({case.id for case in cases})):
        links += (
            await session.execute(
                select(
                    m.CaseSurvivor.case_id, m.CaseSurvivor.survivor_id, m.CaseSurvivor.relationship
                )
                .join(m.Survivor, m.Survivor.id == m.CaseSurvivor.survivor_id)
                .where(m.CaseSurvivor.case_id.in_(chunk), m.Survivor.erased_at.is_(None))
                .order_by(m.CaseSurvivor.case_id, m.CaseSurvivor.survivor_id)
            )
        ).all()
    survivor_ids = sorted({row.survivor_id for row in links})
    prefs: dict[int, ContactPreference] = {}
    advocates: dict[int, Person] = {}
    for chunk in in_chunks(survivor_ids):
        prefs |= {
            sid: to_domain_preference(p)
            for sid, p in (await current_preferences(session, chunk)).items()
        }
        advocates |= {
            sid: _person(a) for sid, a in (await current_advocates(session, chunk, now)).items()
        }
    # The stand-in depends only on the case's team (or the default team): one query for all.
    stand_ins: dict[int | None, Person | None] = {
        team_id: Person(supervisor.id, Role.SUPERVISOR) if supervisor is not None else None
        for team_id, supervisor in (
            await stand_in_supervisors(session, {case.team_id for case in cases})
        ).items()
    }
    by_case: dict[int, list[Any]] = {}
    for row in links:
        by_case.setdefault(row.case_id, []).append(row)
    contexts: dict[int, CaseContext] = {}
    for case in cases:
        stand_in = stand_ins[case.team_id]
        contexts[case.id] = CaseContext(
            case_id=case.id,
            urn=case.urn,
            enhanced_rights=case.enhanced_rights,
            survivors=tuple(
                SurvivorContext(
                    survivor=Person(row.survivor_id, Role.SURVIVOR),
                    relationship=Relationship(row.relationship),
                    preference=prefs.get(row.survivor_id),
                    advocate=advocates.get(row.survivor_id, stand_in),
                    supervisor=stand_in,
                )
                for row in by_case.get(case.id, ())
            ),
        )
    return contexts


def _person(advocate: m.Advocate) -> Person:
    return Person(advocate.id, Role.SUPERVISOR if advocate.role == "supervisor" else Role.ADVOCATE)
