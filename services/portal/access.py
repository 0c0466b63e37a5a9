"""Who may see whom: an advocate their own survivors, a supervisor their team's, operations nobody.

Every page and API call with personal data asks `visible_survivors` (or `may_see`) first, and a
survivor outside it is answered exactly like one that does not exist (404), so nobody learns
that a name is on another advocate's caseload.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.db import models as m
from services.core.db.queries import current_advocates
from services.portal.auth import Role, Staff


async def _team_of(session: AsyncSession, staff: Staff) -> m.Team | None:
    if staff.advocate_id is None:
        return None
    advocate = await session.get(m.Advocate, staff.advocate_id)
    if advocate is None or advocate.team_id is None:
        return None
    return await session.get(m.Team, advocate.team_id)


async def visible_survivors(session: AsyncSession, staff: Staff, now: datetime) -> list[int]:
    """The survivors `staff` looks after now, in id order."""
    if staff.role is Role.OPERATIONS or staff.advocate_id is None:
        return []
    current = m.AdvocateAssignment.valid_from <= now
    not_ended = or_(m.AdvocateAssignment.valid_to.is_(None), m.AdvocateAssignment.valid_to > now)
    if staff.role is Role.ADVOCATE:
        candidates = set(
            await session.scalars(
                select(m.AdvocateAssignment.survivor_id).where(
                    m.AdvocateAssignment.advocate_id == staff.advocate_id, current, not_ended
                )
            )
        )
        advocates = await current_advocates(session, sorted(candidates), now)
        return sorted(
            s
            for s in candidates
            if advocates.get(s, None) is not None and advocates[s].id == staff.advocate_id
        )
    team = await _team_of(session, staff)
    if team is None:
        return []
    team_advocates = set(
        await session.scalars(select(m.Advocate.id).where(m.Advocate.team_id == team.id))
    ) | {staff.advocate_id}
    assigned = set(
        await session.scalars(
            select(m.AdvocateAssignment.survivor_id).where(
                m.AdvocateAssignment.advocate_id.in_(team_advocates), current, not_ended
            )
        )
    )
    case_team = m.Case.team_id == team.id
    if team.is_default:
        case_team = or_(case_team, m.Case.team_id.is_(None))
    on_team_cases = set(
        await session.scalars(
            select(m.CaseSurvivor.survivor_id)
            .join(m.Case, m.Case.id == m.CaseSurvivor.case_id)
            .where(case_team)
        )
    )
    candidates = assigned | on_team_cases
    advocates = await current_advocates(session, sorted(candidates), now)
    visible = []
    for survivor_id in sorted(candidates):
        advocate = advocates.get(survivor_id)
        if advocate is not None:
            if advocate.id in team_advocates:
                visible.append(survivor_id)
        else:
            # Nobody active looks after them (never assigned, or their advocate is away): the
            # supervisor stands in (rule 15), and the holds come with them.
            visible.append(survivor_id)
    return visible


async def may_see(session: AsyncSession, staff: Staff, survivor_id: int, now: datetime) -> bool:
    return survivor_id in await visible_survivors(session, staff, now)


async def may_act_on(
    session: AsyncSession, staff: Staff, row: m.Notification, now: datetime
) -> bool:
    """A notification is the staff member's business when it is about one of their survivors
    (the survivor's own message) or was addressed to them (a tell-first, an alert)."""
    if staff.role is Role.OPERATIONS:
        return False
    if row.survivor_id is not None and await may_see(session, staff, row.survivor_id, now):
        return True
    return row.advocate_id is not None and row.advocate_id == staff.advocate_id
