"""Silence is surfaced (trauma-informed rule 13).

A survivor on an open case who has heard nothing from us (no message that reached them) for
longer than their chosen frequency allows (`silence.after_days` in the rules file) has their
advocate — or the supervisor standing in — prompted to check in, and prompted again after as
long if it stays quiet. The prompt is an ordinary notification (`advocate_check_in`), with an id
derived from the case, the survivor and the day, so running this twice makes one prompt.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.calendar import london_date
from services.core.db import models as m
from services.core.db.queries import current_preferences, person_for
from services.core.domain import notification_id
from services.core.logs import get_logger
from services.core.notifications import add_staff_notification
from services.core.rendering import catalogue
from services.core.runtime import Runtime
from services.rules.ruleset import RuleSet

ACTOR = "dispatcher"
RULE_ID = "silence"
log = get_logger(ACTOR)


async def prompt_silence(rt: Runtime, rules: RuleSet, *, limit: int = 1000) -> int:
    """Create the check-in prompts that are due now; return how many were created."""
    now = rt.clock.now()
    rule = rules.rule_name(RULE_ID)
    shortest = min(rules.silence.after_days.values())
    async with rt.sessions.begin() as session:
        # Asked per case and survivor (correlated), so each looks at that case's notifications
        # by `ix_notifications_case_id`: the cost follows the open cases, not the history. A
        # join to these as grouped subqueries would aggregate every notification ever sent.
        mine = (m.Notification.case_id == m.CaseSurvivor.case_id) & (
            m.Notification.survivor_id == m.CaseSurvivor.survivor_id
        )
        informed = (
            select(func.max(m.Notification.informed_at))
            .where(mine, m.Notification.recipient_role == "survivor")
            .correlate(m.CaseSurvivor)
            .scalar_subquery()
        )
        # Any rules version's prompt counts: a new version must not prompt everyone again.
        prompted = (
            select(func.max(m.Notification.created_at))
            .where(mine, m.Notification.status_reason == "silence")
            .correlate(m.CaseSurvivor)
            .scalar_subquery()
        )
        created = 0
        after: tuple[int, int] = (0, 0)
        while True:  # every open case-survivor pair, a page at a time (keyset paging)
            rows = (
                await session.execute(
                    select(
                        m.CaseSurvivor.case_id,
                        m.CaseSurvivor.survivor_id,
                        m.CaseSurvivor.added_at,
                        informed,
                        prompted,
                    )
                    .join(m.Case, m.Case.id == m.CaseSurvivor.case_id)
                    .join(m.Survivor, m.Survivor.id == m.CaseSurvivor.survivor_id)
                    .where(
                        m.Case.status == "open",
                        m.Survivor.erased_at.is_(None),
                        m.CaseSurvivor.added_at < now - timedelta(days=shortest),
                        tuple_(m.CaseSurvivor.case_id, m.CaseSurvivor.survivor_id)
                        > tuple_(literal(after[0]), literal(after[1])),
                    )
                    .order_by(m.CaseSurvivor.case_id, m.CaseSurvivor.survivor_id)
                    .limit(limit)
                )
            ).all()
            if not rows:
                break
            after = (rows[-1][0], rows[-1][1])
            created += await _prompt_page(session, rules, rule, rows, now)
            if len(rows) < limit:
                break
    if created:
        log.info("silence.prompted", count=created)
    return created


async def _prompt_page(
    session: AsyncSession, rules: RuleSet, rule: str, rows: Any, now: datetime
) -> int:
    quiet = []
    for case_id, survivor_id, added_at, last_informed, last_prompt in rows:
        since = max(t for t in (added_at, last_informed, last_prompt) if t is not None)
        quiet.append((case_id, survivor_id, since))
    prefs = await current_preferences(session, sorted({s for _, s, _ in quiet}))
    created = 0
    for case_id, survivor_id, since in quiet:
        pref = prefs.get(survivor_id)
        frequency = pref.frequency if pref is not None else "all"
        days = rules.silence.after_days.get(frequency, rules.silence.after_days["all"])
        if now - since < timedelta(days=days):
            continue
        if await _prompt(session, rules, rule, case_id, survivor_id, now):
            created += 1
    return created


async def _prompt(
    session: AsyncSession,
    rules: RuleSet,
    rule: str,
    case_id: int,
    survivor_id: int,
    now: datetime,
) -> bool:
    case = await session.get_one(m.Case, case_id)
    person = await person_for(session, survivor_id, case, now)
    # The prompt hangs off the case's latest event (every notification belongs to one).
    event = await session.scalar(
        select(m.CaseEvent)
        .where(m.CaseEvent.urn == case.urn)
        .order_by(m.CaseEvent.id.desc())
        .limit(1)
    )
    if person is None or event is None:
        log.warning("silence.nobody_to_prompt", case_id=case_id, survivor_id=survivor_id)
        return False
    advocate, role = person
    day = london_date(now).isoformat()
    nid = notification_id(
        "carehub/silence", f"{case_id}:{survivor_id}:{day}", f"{role}:{advocate.id}", rule
    )
    if await session.get(m.Notification, nid) is not None:
        return False
    template = rules.silence.template
    add_staff_notification(
        session,
        nid=nid,
        case_event_id=event.id,
        case_id=case_id,
        event_source=event.source,
        event_id=event.event_id,
        advocate=advocate,
        role=role,
        survivor_id=survivor_id,
        template=template,
        template_version=catalogue()[template].version,
        rules_version=rules.version,
        rule=rule,
        reason="silence",
        now=now,
        due_by=None,
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.silence_prompt",
        case_id=case_id,
        notification_id=nid,
        rule=rule,
    )
    return True
