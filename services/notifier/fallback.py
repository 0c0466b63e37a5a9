"""When a survivor cannot be reached on one channel: their other safe channel, else a person.

A permanent failure (an invalid or unsubscribed number, a refused address, a message that came
back undelivered) makes a new notification linked to the failed one (`supersedes_id`) on the
survivor's other channel, if it is safe today and not already tried for this message; if there
is none, their advocate gets a task to tell them, because a survivor who could not be reached is
never left without a person (trauma-informed rules 1 and 15). A letter is the last channel
tried, and never when the survivor already has a letter about the same event (the one the Code
requires, say): one letter about one event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.calendar import london_date
from services.core.db import models as m
from services.core.db.queries import current_preferences, person_for, to_domain_preference
from services.core.domain import Channel, channel_is_safe, notification_id
from services.core.logs import get_logger
from services.core.notifications import add_staff_notification
from services.core.rendering import catalogue
from services.core.states import Status
from services.notifier.last_look import hand_to_advocate, survivor_erased

ACTOR = "notifier"
log = get_logger(ACTOR)


async def channels_tried(session: AsyncSession, row: m.Notification) -> set[str]:
    """Every channel this message has been tried on, along its chain of fallbacks."""
    tried: set[str] = set()
    current: m.Notification | None = row
    while current is not None:
        if current.channel:
            tried.add(current.channel)
        if current.supersedes_id is None:
            break
        current = await session.get(m.Notification, current.supersedes_id)
        if current is not None and current.recipient_role != "survivor":
            break
    return tried


LETTER = Channel.LETTER_TASK.value


async def safe_channels(session: AsyncSession, survivor_id: int, now: datetime) -> list[str]:
    """The survivor's channels that are safe to use today: texts, e-mail, then the post."""
    pref = (await current_preferences(session, [survivor_id])).get(survivor_id)
    if pref is None or pref.opted_out or pref.frequency == "none":
        return []
    domain, today = to_domain_preference(pref), london_date(now)
    order = (Channel.SMS, Channel.EMAIL, Channel.LETTER_TASK)
    return [c.value for c in order if channel_is_safe(domain, c, today)]


async def _has_letter(session: AsyncSession, row: m.Notification) -> bool:
    """Whether the survivor already has a letter about this event (queued, held or posted)."""
    count = await session.scalar(
        select(func.count())
        .select_from(m.Notification)
        .where(
            m.Notification.case_event_id == row.case_event_id,
            m.Notification.survivor_id == row.survivor_id,
            m.Notification.recipient_role == "survivor",
            m.Notification.channel == LETTER,
            m.Notification.status.not_in(
                (Status.FAILED, Status.SUPPRESSED, Status.CANCELLED, Status.EXPIRED)
            ),
        )
    )
    return bool(count)


async def fall_back(
    session: AsyncSession, row: m.Notification, case: m.Case, reason: str, now: datetime
) -> str | None:
    """After `row` failed for good: the id of the linked fallback notification or advocate task,
    or None when there is nobody to hand it to (recorded as unreachable)."""
    if row.recipient_role != "survivor" or row.survivor_id is None:
        # An advocate's own message that failed: recorded and counted; the survivor's held
        # message still has its own fallback time.
        log.warning("notification.staff_unreachable", notification_id=row.id, reason=reason)
        return None
    if await survivor_erased(session, row.survivor_id):
        return None  # erased: no other channel, and no task about them (hand_to_advocate)
    tried = await channels_tried(session, row)
    other = next(
        (c for c in await safe_channels(session, row.survivor_id, now) if c not in tried), None
    )
    if other == LETTER and await _has_letter(session, row):
        other = None
    if other is None:
        return await hand_to_advocate(session, row, case, reason, now)
    rule = f"{row.rule}.fallback"
    fallback_id = notification_id(
        row.event_source, row.event_id, f"survivor:{row.survivor_id}:{other}", rule
    )
    if await session.get(m.Notification, fallback_id) is not None:
        return fallback_id
    session.add(
        m.Notification(
            id=fallback_id,
            case_event_id=row.case_event_id,
            case_id=row.case_id,
            event_source=row.event_source,
            event_id=row.event_id,
            recipient_role=row.recipient_role,
            survivor_id=row.survivor_id,
            advocate_id=row.advocate_id,
            channel=other,
            language=row.language,
            detail=row.detail,
            template=row.template,
            template_version=row.template_version,
            rules_version=row.rules_version,
            rule=rule,
            status=Status.SCHEDULED.value,
            status_reason=reason,
            send_at=now,
            due_by=row.due_by,
            supersedes_id=row.id,
            coalesce_key=None,
            related_id=row.related_id,
            created_at=now,
            updated_at=now,
        )
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.fallback",
        case_id=row.case_id,
        notification_id=fallback_id,
        rule=rule,
        supersedes=row.id,
        channel=other,
        reason=reason,
    )
    log.info(
        "notification.fallback",
        notification_id=fallback_id,
        supersedes=row.id,
        channel=other,
        reason=reason,
    )
    return fallback_id


PREFERENCE_TEMPLATE = "advocate_preference_not_met"


async def preference_not_met(
    session: AsyncSession, row: m.Notification, case: m.Case, what: str, now: datetime
) -> str | None:
    """Tell the survivor's advocate, once per survivor and unmet choice, that a choice they made
    cannot be met (trauma-informed rule 8): for now, a language we have no templates in. The
    survivor's messages still go, in English."""
    if row.survivor_id is None or await survivor_erased(session, row.survivor_id):
        return None
    person = await person_for(session, row.survivor_id, case, now)
    if person is None:
        return None
    advocate, role = person
    rule = f"{row.rules_version}:preference_not_met"
    nid = notification_id(
        "carehub/preferences", f"{row.survivor_id}:{what}", f"{role}:{advocate.id}", rule
    )
    if await session.get(m.Notification, nid) is not None:
        return nid
    add_staff_notification(
        session,
        nid=nid,
        case_event_id=row.case_event_id,
        case_id=row.case_id,
        event_source=row.event_source,
        event_id=row.event_id,
        advocate=advocate,
        role=role,
        survivor_id=row.survivor_id,
        template=PREFERENCE_TEMPLATE,
        template_version=catalogue()[PREFERENCE_TEMPLATE].version,
        rules_version=row.rules_version,
        rule=rule,
        reason=what,
        hold_reason=what,
        now=now,
        due_by=row.due_by,
    )
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="notification.preference_not_met",
        case_id=row.case_id,
        notification_id=nid,
        rule=rule,
        reason=what,
    )
    log.info("notification.preference_not_met", notification_id=nid, reason=what)
    return nid
