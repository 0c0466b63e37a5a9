"""Letters a person posts (`letter_tasks`): marking them printed and posted.

The notifier hands a letter over by storing it (its `letter_task` channel), and the notification
becomes `sent`: queued for post, read by nobody yet, so `informed_at` is not set. Staff then print
the letter and mark it posted, here, from whichever service records what they did (the portal).

Posting informs nobody at once either: the survivor counts as informed at the end of the second
working day after the day it was posted (`LETTER_DELIVERY_WD`), the time first-class post is
deemed to arrive (the civil courts' rule for documents served by post, CPR 6.26), counted as the
Victims' Code counts its own deadlines. The compliance clock stops there, never earlier than the
letter could have arrived; the notification moves to `delivered`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit
from services.core.calendar import WorkingDayCalendar, due_by
from services.core.db import models as m
from services.core.logs import get_logger
from services.core.notifications import move
from services.core.states import Status, can_transition

LETTER_DELIVERY_WD = 2
"""Working days after the day of posting by which a first-class letter is deemed to arrive."""
log = get_logger("letters")


class LetterNotFound(LookupError):
    """No letter task has this id."""


def deemed_informed_at(posted_at: datetime, calendar: WorkingDayCalendar) -> datetime:
    """When a letter posted at `posted_at` is deemed to have reached the survivor: 23:59:59
    Europe/London on the second working day after the London day of posting."""
    return due_by(posted_at, LETTER_DELIVERY_WD, calendar)


async def mark_printed(session: AsyncSession, task_id: int, by: str, at: datetime) -> m.LetterTask:
    """Record that the letter was printed (the first time only); in the caller's transaction."""
    task = await session.get(m.LetterTask, task_id, with_for_update=True)
    if task is None:
        raise LetterNotFound(task_id)
    if task.printed_at is None:
        task.printed_at = at
        notification = await session.get_one(m.Notification, task.notification_id)
        audit.record(
            session,
            at=at,
            actor=by,
            action="letter.printed",
            case_id=notification.case_id,
            notification_id=notification.id,
            letter_task_id=task.id,
        )
        log.info("letter.printed", letter_task_id=task.id, notification_id=notification.id)
    return task


async def mark_posted(
    session: AsyncSession,
    task_id: int,
    by: str,
    at: datetime,
    *,
    calendar: WorkingDayCalendar | None = None,
) -> m.LetterTask:
    """Record that `by` ("staff:<id>") posted the letter at `at`, in the caller's transaction.

    Sets `posted_at`/`posted_by` (and `printed_at` if nobody marked it printed), and on the
    notification `informed_at` = `deemed_informed_at(at)` (an earlier `informed_at`, say from
    telling the survivor in person, is kept) and the status `delivered`. Marking a letter posted
    twice changes nothing the second time. Pass the process's calendar (`rt.calendar`, with its
    proclamation file); by default the bank holidays as the `holidays` package knows them.

    Publishing the change on `notifications.status` after the commit is the caller's part.
    """
    task = await session.get(m.LetterTask, task_id, with_for_update=True)
    if task is None:
        raise LetterNotFound(task_id)
    if task.posted_at is not None:
        return task
    notification = await session.get_one(m.Notification, task.notification_id, with_for_update=True)
    task.posted_at, task.posted_by = at, by
    task.printed_at = task.printed_at or at
    informed = deemed_informed_at(at, calendar or WorkingDayCalendar())
    if notification.informed_at is None or informed < notification.informed_at:
        notification.informed_at = informed
    if can_transition(Status(notification.status), Status.DELIVERED):
        move(
            session,
            notification,
            Status.DELIVERED,
            now=at,
            actor=by,
            reason="posted",
            action="letter.posted",
            rule=notification.rule,
            letter_task_id=task.id,
        )
    else:
        # Already delivered, or told in person: the posting is recorded, the status stays.
        audit.record(
            session,
            at=at,
            actor=by,
            action="letter.posted",
            case_id=notification.case_id,
            notification_id=notification.id,
            rule=notification.rule,
            letter_task_id=task.id,
            status=notification.status,
        )
    log.info("letter.posted", letter_task_id=task.id, notification_id=notification.id)
    return task
