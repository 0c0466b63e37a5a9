"""Carrying out what advocates asked for about held messages.

The portal never moves a notification: it records an `advocate_actions` row, and the dispatcher
carries it out here, under the same row locks and state table as every other change. Each action
ends with `carried_out_at` and an outcome: `done`; `moot` (the message had moved on: sent by its
fallback, cancelled, superseded, or settled by an earlier action); or `refused` (what was asked
is no longer allowed: trauma-informed rules 1, 7 and 14 bind an advocate too).

What the portal writes (`requested_by` = "staff:<id>", `requested_at` = when they asked):
- `release`: send the held survivor message at the next time inside their safe window, and never
  later than its own fallback time (which already weighs the deadline against quiet hours). It
  overrides the advocate-first hold and the end-of-week rule; it is refused if the survivor has
  opted out or chosen no updates, or the message has no channel that is safe on the day it goes.
- `told_in_person`: the advocate told the survivor face to face, at `told_at` when they said
  when (else at `requested_at`); that is when they were informed (`informed_at`, where the
  compliance clock stops).
- `cancel`: the message must not go; `reason_code` is one of `CANCEL_REASONS`, and becomes its
  `status_reason`.

Whatever is done, the "while held" messages about the held one (the supervisor alert) are
cancelled with it: the hold is resolved.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit, metrics
from services.core.calendar import london_date
from services.core.db import models as m
from services.core.db.queries import current_preferences, to_domain_preference
from services.core.domain import Channel, Frequency, channel_is_safe
from services.core.logs import get_logger
from services.core.notifications import move
from services.core.runtime import Runtime
from services.core.states import Status, can_transition
from services.rules.timing import next_safe_time

RELEASE, TOLD_IN_PERSON, CANCEL = "release", "told_in_person", "cancel"
KINDS = (RELEASE, TOLD_IN_PERSON, CANCEL)
DONE, MOOT, REFUSED = "done", "moot", "refused"
# Codes only: a reason lands in `status_reason` and the audit trail, which never hold free text.
# The advocate's own words go in the action's protected `note`.
CANCEL_REASONS = frozenset({"survivor_asked", "duplicate", "wrong_details", "other"})
log = get_logger("dispatcher")


async def carry_out_actions(rt: Runtime) -> int:
    """Carry out pending advocate actions in request order, a batch per call; return how many.

    Several dispatchers may run this at once: each claims its own actions (`SKIP LOCKED`), and an
    action waits for the next pass while its message is locked elsewhere or an earlier action
    on the same message is still being carried out, so the first request always wins. The
    change, its audit rows and `carried_out_at` commit together: after a crash the action is
    still pending, and once carried out it is never carried out again.
    """
    now = rt.clock.now()
    carried = 0
    async with rt.sessions.begin() as session:
        actions = (
            await session.scalars(
                select(m.AdvocateAction)
                .where(m.AdvocateAction.carried_out_at.is_(None))
                .order_by(m.AdvocateAction.requested_at, m.AdvocateAction.id)
                .limit(rt.settings.dispatch_batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for action in actions:
            if await _earlier_action_pending(session, action):
                continue
            row = await session.scalar(
                select(m.Notification)
                .where(m.Notification.id == action.notification_id)
                .with_for_update(skip_locked=True)
            )
            if row is None:  # being changed by another pass or process right now
                continue
            try:
                async with session.begin_nested():
                    outcome, reason = await _carry_out(session, action, row, now)
            except DBAPIError:
                raise  # the database failed: the whole batch stays pending
            except Exception as exc:  # noqa: BLE001 - one bad action must not block the rest
                log.exception(
                    "advocate_action.failed", advocate_action_id=action.id, error=type(exc).__name__
                )
                outcome, reason = REFUSED, f"error:{type(exc).__name__}"[:64]
                await session.refresh(row)  # the savepoint's rollback may have expired it
                _record(session, action, row, now, outcome=outcome, reason=reason)
            action.carried_out_at = now
            action.outcome = outcome
            action.outcome_reason = reason
            carried += 1
            log.info(
                "advocate_action.carried_out",
                advocate_action_id=action.id,
                notification_id=row.id,
                action=action.action,
                outcome=outcome,
                reason=reason,
            )
    return carried


async def _earlier_action_pending(session: AsyncSession, action: m.AdvocateAction) -> bool:
    """Whether an earlier action on the same message is not carried out yet (another
    dispatcher holds it; this pass's own earlier ones are already marked)."""
    earlier = or_(
        m.AdvocateAction.requested_at < action.requested_at,
        and_(
            m.AdvocateAction.requested_at == action.requested_at,
            m.AdvocateAction.id < action.id,
        ),
    )
    found = await session.scalar(
        select(m.AdvocateAction.id)
        .where(
            m.AdvocateAction.notification_id == action.notification_id,
            m.AdvocateAction.carried_out_at.is_(None),
            earlier,
        )
        .limit(1)
    )
    return found is not None


async def _carry_out(
    session: AsyncSession, action: m.AdvocateAction, row: m.Notification, now: datetime
) -> tuple[str, str | None]:
    """Do one action on its locked message; return its outcome and reason."""
    refusal = _malformed(action, row)
    if refusal is not None:
        _record(session, action, row, now, outcome=REFUSED, reason=refusal)
        return REFUSED, refusal
    if row.status != Status.HELD:
        _record(session, action, row, now, outcome=MOOT, reason=row.status)
        return MOOT, row.status
    why: str | None
    send_at: datetime | None = None
    if action.action == RELEASE:
        send_at, refusal = await _release_time(session, row, now)
        if send_at is None:
            _record(session, action, row, now, outcome=REFUSED, reason=refusal)
            return REFUSED, refusal
        target, why = Status.SCHEDULED, "released_by_advocate"
        row.personal_line = action.personal_line
    elif action.action == TOLD_IN_PERSON:
        target, why = Status.TOLD_IN_PERSON, "told_in_person"
        row.informed_at = row.informed_at or action.told_at or action.requested_at
    else:
        target, why = Status.CANCELLED, action.reason_code
    move(
        session,
        row,
        target,
        now=now,
        actor=action.requested_by,
        reason=why,
        action=f"advocate_action.{action.action}",
        rule=row.rule,
        advocate_action_id=action.id,
        outcome=DONE,
        send_at=send_at.isoformat() if send_at is not None else None,
    )
    if send_at is not None:
        row.send_at = send_at
    metrics.NOTIFICATIONS.labels(row.status).inc()
    await _resolve_companions(session, action, row, now)
    return DONE, None


def _malformed(action: m.AdvocateAction, row: m.Notification) -> str | None:
    """Why this action can never be carried out as written, or None."""
    if action.action not in KINDS:
        return "unknown_action"
    if row.recipient_role != "survivor" or row.survivor_id is None:
        return "not_a_survivor_message"
    if action.action == CANCEL and action.reason_code not in CANCEL_REASONS:
        return "reason_code_missing" if not action.reason_code else "reason_code_unknown"
    return None


async def _release_time(
    session: AsyncSession, row: m.Notification, now: datetime
) -> tuple[datetime | None, str | None]:
    """When a released message goes, or None and why it may not go at all.

    Opt-out and unsafe channels are absolute, even for an advocate (rule 14); quiet hours give
    way only to the deadline, as they do in the message's own fallback time.
    """
    assert row.survivor_id is not None
    found = (await current_preferences(session, [row.survivor_id])).get(row.survivor_id)
    if found is None:
        return None, "no_contact_preferences"
    pref = to_domain_preference(found)
    if pref.opted_out:
        return None, "opted_out"
    if pref.frequency is Frequency.NONE:
        return None, "frequency_none"
    if row.channel is None:
        return None, "no_safe_channel"
    if row.channel == Channel.LETTER_TASK:
        send_at = now  # a letter is read when the post comes: no quiet hours to wait for
    else:
        send_at = next_safe_time(now, pref)
        if row.send_at is not None and row.send_at < send_at:
            send_at = max(now, row.send_at)  # never later than it would have gone by itself
    if not channel_is_safe(pref, row.channel, london_date(send_at)):
        return None, "channel_no_longer_safe"
    return send_at, None


async def _resolve_companions(
    session: AsyncSession, action: m.AdvocateAction, row: m.Notification, now: datetime
) -> None:
    """Cancel the unsent "while held" messages about `row` (a supervisor alert): the advocate
    has acted, so they would only alarm. One locked elsewhere is being sent already."""
    companions = (
        await session.scalars(
            select(m.Notification)
            .where(
                m.Notification.related_id == row.id,
                m.Notification.send_condition == "while_held",
            )
            .with_for_update(skip_locked=True)
        )
    ).all()
    for companion in companions:
        if not can_transition(Status(companion.status), Status.CANCELLED):
            continue
        move(
            session,
            companion,
            Status.CANCELLED,
            now=now,
            actor=action.requested_by,
            reason="hold_resolved",
            rule=companion.rule,
            advocate_action_id=action.id,
        )
        log.info("notification.cancelled", notification_id=companion.id, reason="hold_resolved")


def _record(
    session: AsyncSession,
    action: m.AdvocateAction,
    row: m.Notification,
    now: datetime,
    *,
    outcome: str,
    reason: str | None,
) -> None:
    """The audit row of an action that changed nothing (moot or refused), and why."""
    audit.record(
        session,
        at=now,
        actor=action.requested_by,
        action=f"advocate_action.{action.action}" if action.action in KINDS else "advocate_action",
        case_id=row.case_id,
        notification_id=row.id,
        rule=row.rule,
        advocate_action_id=action.id,
        outcome=outcome,
        reason=reason,
        status=row.status,
    )
