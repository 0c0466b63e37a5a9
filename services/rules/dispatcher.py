"""The dispatcher: releases due notifications onto `notifications.due`, and re-drives work the
broker never carried.

Release is a transactional outbox: due rows move `scheduled -> queued` under
`FOR UPDATE SKIP LOCKED` (so several dispatchers never release one row twice), the transaction
commits, and only then are the ids published. A crash between the two leaves rows `queued`
and unpublished; the re-drive publishes them again after `CAREHUB_REDRIVE_AFTER_S`, and the
notifier, which acts only on a row still `queued` (or a `sending` it must check), never sends
twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol, cast

from fastapi import FastAPI
from sqlalchemy import Table, false, func, literal_column, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit, gauges, metrics
from services.core.audit_seal import SealCursor, seal_pending
from services.core.db import models as m
from services.core.db.queries import in_chunks
from services.core.domain import EventStatus
from services.core.kafka import publish_all
from services.core.logs import get_logger
from services.core.notifications import move
from services.core.records import CaseEventRef, NotificationDue
from services.core.runtime import Runtime
from services.core.states import Status, check_transition
from services.core.topics import CASE_EVENTS, NOTIFICATIONS_DUE
from services.rules import due_signal
from services.rules.actions import carry_out_actions
from services.rules.feedback import ask_for_feedback
from services.rules.ruleset import load_rules
from services.rules.silence import prompt_silence

NAME = "dispatcher"
SEAL_BATCH = 5000
SEAL_ROUNDS = 4
SEAL_CURSOR = "carehub.seal_cursor"  # this process's SealCursor, in Runtime.extras
ACTOR = "dispatcher"
log = get_logger(NAME)


_NOTIFICATIONS = cast(Table, m.Notification.__table__)


class _Addressed(Protocol):
    """A notification row, mapped or read as columns: whom it is for."""

    recipient_role: str
    survivor_id: int | None
    advocate_id: int | None


def recipient_key(row: _Addressed) -> bytes:
    who = row.survivor_id if row.recipient_role == "survivor" else row.advocate_id
    return f"{row.recipient_role}:{who}".encode()


async def release_fallbacks(rt: Runtime) -> int:
    """Held news whose advocate has not acted by its fallback time goes out detail-free.

    The held message was written detail-free for exactly this case (trauma-informed rules 3
    and 4: the deadline still binds), and its `send_at` is the fallback time the rules chose.
    """
    now = rt.clock.now()
    async with rt.sessions.begin() as session:
        rows = (
            await session.scalars(
                select(m.Notification)
                .where(
                    m.Notification.status == Status.HELD,
                    m.Notification.hold_reason == "advocate_first",
                    m.Notification.send_at <= now,
                )
                .limit(rt.settings.dispatch_batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            row.status = check_transition(row.status, Status.SCHEDULED)
            row.updated_at = now
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="notification.fallback_released",
                case_id=row.case_id,
                notification_id=row.id,
                rule=row.rule,
                hold_reason=row.hold_reason,
            )
            log.info("notification.fallback_released", notification_id=row.id)
    return len(rows)


async def _still_wanted(session: AsyncSession, row: m.Notification, now: datetime) -> bool:
    """A "while_held" message (a supervisor alert) is moot once its held message has moved on."""
    if row.send_condition != "while_held" or row.related_id is None:
        return True
    related = await session.get(m.Notification, row.related_id)
    if related is not None and related.status == Status.HELD:
        return True
    move(
        session, row, Status.CANCELLED, now=now, actor=ACTOR, reason="hold_resolved", rule=row.rule
    )
    log.info("notification.cancelled", notification_id=row.id, reason="hold_resolved")
    return False


async def release_due(rt: Runtime) -> int:
    """Queue every scheduled notification whose `send_at` has come; return how many.

    In SQLAlchemy Core, not the ORM: the columns it needs are read, the rows moved on in one
    UPDATE and their audit rows written in one statement (a "while held" message, which may be
    cancelled instead, goes through `_still_wanted` as a mapped row)."""
    now = rt.clock.now()
    table = _NOTIFICATIONS
    check_transition(Status.SCHEDULED, Status.QUEUED)  # what every row below moves through
    async with rt.sessions.begin() as session:
        candidates = (
            await session.execute(
                select(
                    table.c.id,
                    table.c.case_id,
                    table.c.rule,
                    table.c.channel,
                    table.c.recipient_role,
                    table.c.survivor_id,
                    table.c.advocate_id,
                    table.c.send_condition,
                )
                .where(table.c.status == Status.SCHEDULED, table.c.send_at <= now)
                .order_by(table.c.send_at)
                .limit(rt.settings.dispatch_batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        rows = []
        for row in candidates:
            if row.send_condition == "while_held":
                mapped = await session.get_one(m.Notification, row.id)  # locked above
                if not await _still_wanted(session, mapped, now):
                    continue
            rows.append(row)
        for chunk in in_chunks([row.id for row in rows]):
            await session.execute(
                update(table)
                .where(table.c.id.in_(chunk))
                .values(status=Status.QUEUED, queued_at=now, updated_at=now)
            )
        await audit.insert_rows(
            session,
            [
                audit.row_values(
                    at=now,
                    actor=ACTOR,
                    action="notification.queued",
                    case_id=row.case_id,
                    notification_id=row.id,
                    rule=row.rule,
                )
                for row in rows
            ],
        )
        due = [
            (NotificationDue(r.id, r.channel or "", recipient_key(r).decode()), recipient_key(r))
            for r in rows
        ]
    await _publish_due(rt, due)
    for _ in due:
        metrics.NOTIFICATIONS.labels(Status.QUEUED.value).inc()
    return len(due)


async def _publish_due(rt: Runtime, due: list[tuple[NotificationDue, bytes]]) -> None:
    """Hand the released ids to the broker together (a few requests, not a round trip each;
    one recipient's stay in order on their partition)."""
    try:
        await publish_all(
            rt.broker, [(record.encode(), NOTIFICATIONS_DUE.name, key) for record, key in due]
        )
    except Exception as exc:  # noqa: BLE001 - the re-drive publishes them again
        log.warning("notification.publish_failed", count=len(due), error=type(exc).__name__)
        return
    for record, _ in due:
        log.info("notification.queued", notification_id=record.notification_id)


async def redrive(rt: Runtime) -> dict[str, int]:
    """Publish again what the database holds but the broker did not deliver in time.

    Events recorded but unpublished or unprocessed, and notifications queued but not picked up,
    for longer than `CAREHUB_REDRIVE_AFTER_S`. Every consumer is idempotent, so a record that
    was merely slow is handled once all the same.
    """
    now = rt.clock.now()
    cutoff = now - timedelta(seconds=rt.settings.redrive_after_s)
    limit = rt.settings.dispatch_batch_size
    # However busy a consumer, a record waiting this long was lost.
    lost_before = now - 10 * (now - cutoff)
    async with rt.sessions.begin() as session:
        # While the rules consumer is working through a backlog (it processed an event lately),
        # published events are waiting their turn in `case-events`, not lost: publishing them
        # again would only add duplicates for it to skip, a batch every pass, while it is
        # already behind. An event never published is re-driven all the same.
        last_processed = await session.scalar(select(func.max(m.CaseEvent.processed_at)))
        rules_busy = last_processed is not None and last_processed >= cutoff
        events = (
            await session.scalars(
                select(m.CaseEvent)
                .where(
                    m.CaseEvent.processed_at.is_(None),
                    m.CaseEvent.status == EventStatus.PENDING,
                    or_(
                        m.CaseEvent.published_at.is_(None) & (m.CaseEvent.received_at < cutoff),
                        (m.CaseEvent.published_at < cutoff) & (false() if rules_busy else true()),
                        m.CaseEvent.published_at < lost_before,
                    ),
                )
                .order_by(m.CaseEvent.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        refs = [CaseEventRef(e.id, e.source, e.event_id, e.type, e.urn) for e in events]
        for e in events:
            e.published_at = now
        # While the notifier is working through a backlog (it began a send lately), queued rows
        # are waiting their turn, not lost: publishing them again would only add duplicates.
        last_send = await session.scalar(select(func.max(m.DeliveryAttempt.started_at)))
        notifier_busy = last_send is not None and last_send >= cutoff
        stale = (
            await session.scalars(
                select(m.Notification)
                .where(
                    or_(
                        (m.Notification.status == Status.QUEUED)
                        & (m.Notification.queued_at < cutoff)
                        & (false() if notifier_busy else true()),
                        (m.Notification.status == Status.QUEUED)
                        & (m.Notification.queued_at < lost_before),
                        # A send cut off by a crash, or a provider lookup that failed: the
                        # notifier asks the provider before it sends again. After a failed
                        # lookup, not before the `send_at` the notifier set (with back-off).
                        (m.Notification.status == Status.SENDING)
                        & (m.Notification.updated_at < cutoff)
                        & or_(
                            m.Notification.status_reason.is_(None),
                            m.Notification.status_reason != "lookup_failed",
                            m.Notification.send_at.is_(None),
                            m.Notification.send_at <= now,
                        ),
                    )
                )
                .order_by(m.Notification.updated_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in stale:
            if row.status == Status.QUEUED:
                row.queued_at = now
            row.updated_at = now
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="notification.redriven",
                case_id=row.case_id,
                notification_id=row.id,
            )
        due = [
            (NotificationDue(r.id, r.channel or "", recipient_key(r).decode()), recipient_key(r))
            for r in stale
        ]
    try:
        await publish_all(
            rt.broker, [(ref.encode(), CASE_EVENTS.name, ref.subject.encode()) for ref in refs]
        )
    except Exception as exc:  # noqa: BLE001 - `published_at` was renewed: the next re-drive retries
        log.warning("event.publish_failed", count=len(refs), error=type(exc).__name__)
    await _publish_due(rt, due)
    if refs or due:
        log.info("redrive.done", events=len(refs), notifications=len(due))
    return {"events": len(refs), "notifications": len(due)}


async def alert_parked(rt: Runtime) -> int:
    """Raise to operations each event parked for want of its case longer than
    `CAREHUB_PARKED_ALERT_AFTER_S` (a court event whose police record never came): one warning
    and one audit row per event, and the gauge of how many are waiting that long."""
    now = rt.clock.now()
    cutoff = now - timedelta(seconds=rt.settings.parked_alert_after_s)
    async with rt.sessions.begin() as session:
        too_long = (
            m.CaseEvent.status == EventStatus.AWAITING_CONTEXT,
            m.CaseEvent.received_at < cutoff,
        )
        count = await session.scalar(select(func.count()).where(*too_long))
        metrics.PARKED_TOO_LONG.set(int(count or 0))
        already = (
            select(m.AuditEntry.seq)
            .where(
                # In literals: the condition of `ix_audit_log_parked_alerts`.
                m.AuditEntry.action == literal_column(f"'{m.PARKED_ALERT}'"),
                m.AuditEntry.case_event_id == m.CaseEvent.id,
            )
            .exists()
        )
        fresh = (
            await session.scalars(
                select(m.CaseEvent)
                .where(*too_long, ~already)
                .order_by(m.CaseEvent.id)
                .limit(rt.settings.dispatch_batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for event in fresh:
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action=m.PARKED_ALERT,
                case_event_id=event.id,
                type=event.type,
            )
            log.warning(
                "event.parked_too_long",
                case_event_id=event.id,
                type=event.type,
                waiting_s=int((now - event.received_at).total_seconds()),
            )
    return len(fresh)


async def seal_audit(rt: Runtime) -> int:
    """Seal the committed audit rows into the hash chain (several dispatchers take turns)."""
    sealed = 0
    cursor = rt.extras.setdefault(SEAL_CURSOR, SealCursor())
    for _ in range(SEAL_ROUNDS):  # a big backlog is sealed over several passes, not in one
        count = await seal_pending(rt.sessions, now=rt.clock.now(), batch=SEAL_BATCH, cursor=cursor)
        sealed += count
        if count < SEAL_BATCH:
            break
    return sealed


async def run_loop(rt: Runtime) -> None:
    interval = rt.settings.dispatch_interval_ms / 1000
    next_redrive: datetime | None = None
    next_silence: datetime | None = None
    next_seal = 0.0
    rules = load_rules(rt.settings.rules_file)
    loop = asyncio.get_running_loop()
    while True:
        await carry_out_actions(rt)  # first: an advocate's decision comes before the fallback
        await release_fallbacks(rt)
        released = await release_due(rt)
        now = rt.clock.now()
        if next_redrive is None or now >= next_redrive:
            await redrive(rt)
            await alert_parked(rt)
            async with rt.sessions() as session:
                await gauges.sample(session, now)
            next_redrive = now + timedelta(seconds=rt.settings.redrive_beat_s)
        if loop.time() >= next_seal:
            await seal_audit(rt)
            next_seal = loop.time() + rt.settings.audit_seal_interval_s
        if next_silence is None or now >= next_silence:
            await prompt_silence(rt, rules)
            await ask_for_feedback(rt, rules)
            next_silence = now + timedelta(seconds=rt.settings.silence_check_s)
        if released < rt.settings.dispatch_batch_size:
            await _until_next_pass(rt, interval)


async def _until_next_pass(rt: Runtime, interval: float) -> None:
    """Wait `interval` for the next whole pass; meanwhile, each time the rules consumer says
    it has made notifications due now (`due_signal`), release them at once."""
    signal = due_signal.here(rt)
    if signal is None:
        await asyncio.sleep(interval)
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + interval
    while (left := deadline - loop.time()) > 0:
        if await signal.wait(left):
            started = loop.time()
            if await release_due(rt) >= rt.settings.dispatch_batch_size:
                return  # a backlog: the whole pass now, then more (advocates' actions first)
            # Under load a release takes longer: the wakes that come meanwhile wait a few times
            # as long, and are released together, so waking never takes more than a fifth of
            # the process. Idle, a release takes a few milliseconds and so does the wait.
            await asyncio.sleep(min(4 * (loop.time() - started), max(0.0, deadline - loop.time())))


def mount(rt: Runtime, app: FastAPI) -> None:
    if rt.settings.dispatch_wake:
        signal = rt.extras[due_signal.SIGNAL] = due_signal.DueSignal()
        if not rt.settings.is_sqlite:
            rt.background.append((f"{NAME}.listen", lambda: due_signal.listen(rt, signal)))
    rt.background.append((NAME, lambda: run_loop(rt)))
