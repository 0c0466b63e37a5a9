"""The last look before a survivor's message goes: are their choices still the same?

A message can wait hours or days (a safe window, a fallback), and a survivor can opt out, stop
updates or lose a safe channel in between. Their current preferences win: a message that is no
longer wanted or safe is suppressed, and, unless they simply chose fewer updates, their
advocate gets a task to tell them in person, because a survivor who could not be reached is
never left without a person (trauma-informed rules 1, 7 and 15).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.calendar import london_date
from services.core.db import models as m
from services.core.db.queries import person_for, to_domain_preference
from services.core.domain import Channel, channel_is_safe, notification_id
from services.core.logs import get_logger
from services.core.message_variables import preference_of
from services.core.notifications import add_staff_notification
from services.core.rendering import catalogue
from services.core.safe_window import next_safe_instant, zone_named

ACTOR = "notifier"
PASS_ON_TEMPLATE = "advocate_pass_on_update"
LETTER = Channel.LETTER_TASK.value
log = get_logger(ACTOR)


async def survivor_erased(session: AsyncSession, survivor_id: int) -> bool:
    erased_at = await session.scalar(
        select(m.Survivor.erased_at).where(m.Survivor.id == survivor_id)
    )
    return erased_at is not None


async def no_longer_wanted(session: AsyncSession, row: m.Notification, now: datetime) -> str | None:
    """Why this survivor's message must not go now, or None if it still may."""
    if row.recipient_role != "survivor" or row.survivor_id is None:
        return None
    pref = await preference_of(session, row.survivor_id)
    if pref is None:
        return "no_contact_preferences"
    if pref.opted_out:
        return "opted_out"
    if pref.frequency == "none":
        return "frequency_none"
    safe = channel_is_safe(to_domain_preference(pref), row.channel or "", london_date(now))
    return None if safe else "channel_no_longer_safe"


async def put_off_until(
    session: AsyncSession, row: m.Notification, now: datetime
) -> datetime | None:
    """When a survivor's message should go instead of now, if now is outside their safe window
    (a backlog or an outage delayed it into the night); None to send it now. The deadline still
    wins: a message that would miss it by waiting goes now (rule 14). A letter is never put off:
    it is read when the post comes, not when it is queued for a person to post."""
    if row.recipient_role != "survivor" or row.survivor_id is None or row.channel == LETTER:
        return None
    pref = await preference_of(session, row.survivor_id)
    if pref is None:
        return None
    later = next_safe_instant(
        now, pref.safe_window_start, pref.safe_window_end, zone_named(pref.timezone)
    )
    if later == now or (row.due_by is not None and now <= row.due_by < later):
        return None
    return later


async def hand_to_advocate(
    session: AsyncSession, row: m.Notification, case: m.Case, reason: str, now: datetime
) -> str | None:
    """A task for the survivor's advocate (or the supervisor standing in) to tell them instead.

    Its id is derived from the suppressed message, so doing this twice makes one task.
    """
    assert row.survivor_id is not None
    if await survivor_erased(session, row.survivor_id):
        # Their data was erased at their request or by retention: nobody is asked to tell them.
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action="notification.not_handed_over",
            case_id=row.case_id,
            notification_id=row.id,
            reason="erased",
        )
        return None
    person = await person_for(session, row.survivor_id, case, now)
    if person is None:
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action="notification.unreachable",
            case_id=row.case_id,
            notification_id=row.id,
            reason=reason,
        )
        return None
    advocate, role = person
    rule = f"{row.rule}.undeliverable"
    task_id = notification_id(
        row.event_source, row.event_id, f"{role}:{advocate.id}:for-survivor:{row.survivor_id}", rule
    )
    if await session.get(m.Notification, task_id) is not None:
        return task_id
    add_staff_notification(
        session,
        nid=task_id,
        case_event_id=row.case_event_id,
        case_id=row.case_id,
        event_source=row.event_source,
        event_id=row.event_id,
        advocate=advocate,
        role=role,
        survivor_id=row.survivor_id,
        template=PASS_ON_TEMPLATE,
        template_version=catalogue()[PASS_ON_TEMPLATE].version,
        rules_version=row.rules_version,
        rule=rule,
        reason=reason,
        now=now,
        due_by=row.due_by,
        supersedes_id=row.id,
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.handed_to_advocate",
        case_id=row.case_id,
        notification_id=task_id,
        rule=rule,
        supersedes=row.id,
        reason=reason,
    )
    log.info(
        "notification.handed_to_advocate", notification_id=task_id, supersedes=row.id, reason=reason
    )
    return task_id
