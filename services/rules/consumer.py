"""The rules consumer: claims recorded case events, decides, and writes the outcome.

For a batch of `case-events` records it claims the rows still unprocessed, and in ONE
transaction writes decisions, notifications and audit rows; the offset is committed only after
that transaction (see services.core.kafka). Reprocessing can never double anything: a claimed
row is skipped, and notification ids are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit, metrics
from services.core.db import models as m
from services.core.db.queries import in_chunks
from services.core.domain import (
    CaseContext,
    Decision,
    EventFacts,
    EventStatus,
    Outcome,
    Role,
    notification_id,
)
from services.core.logs import get_logger
from services.core.notifications import move
from services.core.records import BadRecord, CaseEventRef
from services.core.rendering import catalogue
from services.core.runtime import Runtime
from services.core.states import Status
from services.rules import due_signal
from services.rules.context import load_case_contexts
from services.rules.engine import Engine, recipient_key

log = get_logger("rules")
ACTOR = "rules"


def event_facts(row: m.CaseEvent) -> EventFacts:
    data = row.payload.get("data") if isinstance(row.payload, dict) else None
    return EventFacts(
        source=row.source,
        event_id=row.event_id,
        type=row.type,
        urn=row.urn,
        time=row.event_time,
        agency_received_at=row.agency_received_at,
        data=data if isinstance(data, dict) else {},
    )


@dataclass
class _Planned:
    """One event of a batch, in the order it is decided, with what was found out before any
    write: its case (None: not known yet, so it is parked), and its decisions or the error that
    stopped them."""

    row: m.CaseEvent
    case_id: int | None
    # Kept apart from `row`: a rolled-back savepoint expires the row's attributes, its id too.
    row_id: int
    decisions: list[Decision] = field(default_factory=list)
    survivors: int = 0  # on the case, for the audit of an event that made no decision
    error: str | None = None


class _Effects:
    """Metrics and log lines of a batch, kept until its writes stand (a batch redone event by
    event must not count twice)."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        # A notification the batch made is due now: the dispatcher is to be woken.
        self.due_now = False

    def add(self, effect: Callable[[], None]) -> None:
        self.pending.append(effect)

    def apply(self) -> None:
        for effect in self.pending:
            effect()


class RulesConsumer:
    def __init__(self, rt: Runtime, engine: Engine) -> None:
        self.rt = rt
        self.engine = engine

    async def handle_batch(self, records: Iterable[bytes]) -> int:
        """Process a batch of `case-events` records; return how many events were finished."""
        ids: list[int] = []
        for raw in records:
            try:
                ids.append(CaseEventRef.decode(raw).case_event_id)
            except BadRecord as exc:
                log.warning("record.malformed", topic="case-events", reason=str(exc))
        metrics.CONSUMER_BATCH.labels("rules").observe(len(ids))
        if not ids:
            return 0
        now = self.rt.clock.now()
        due_now: list[bool] = []
        async with self.rt.sessions.begin() as session:
            done = await self.process(
                session, sorted(set(ids)), now, on_due_now=lambda: due_now.append(True)
            )
            if due_now:
                await due_signal.announce(self.rt, session)  # heard once this commits
        if due_now:
            due_signal.after_commit(self.rt)
        for row_id, status in done:
            metrics.EVENTS_PROCESSED.labels(status).inc()
            log.info("event.processed", case_event_id=row_id, status=status)
        return len(done)

    async def process(
        self,
        session: AsyncSession,
        ids: list[int],
        now: datetime,
        *,
        on_due_now: Callable[[], None] | None = None,
    ) -> list[tuple[int, str]]:
        """Claim the events `ids` still unprocessed and decide them in the caller's transaction.

        The batch is read first in a fixed number of queries (its events, their cases, the
        events parked for those cases, the cases' context, which notifications exist already),
        then decided (pure), then written with no query per event. The writes go optimistically
        under one savepoint; if an event's writes raise anything but a database error, that is
        rolled back and the batch written again with a savepoint per event, so the one bad event
        is marked failed and the others go through. A database error rewinds the whole batch.

        `on_due_now` is called (once the batch's writes stand, before the caller commits) if
        the batch made a notification that is due now, for the dispatcher to be woken.
        """
        # Nothing is flushed behind a query's back: each query below reads rows this batch has
        # not written (the one that does, `_supersede_older`, flushes first).
        with session.no_autoflush:
            # Each event with its case (by URN, unique), in one query; only the events locked.
            claimed = (
                await session.execute(
                    select(m.CaseEvent, m.Case)
                    .outerjoin(m.Case, m.Case.urn == m.CaseEvent.urn)
                    .where(m.CaseEvent.id.in_(ids), m.CaseEvent.processed_at.is_(None))
                    .order_by(m.CaseEvent.id)
                    .with_for_update(of=m.CaseEvent, skip_locked=True)
                )
            ).all()
            # Parked events wait until their case is known; re-driven with its first event.
            rows = [row for row, _ in claimed if row.status != EventStatus.AWAITING_CONTEXT]
            if not rows:
                return []
            cases = {
                case.urn: case
                for row, case in claimed
                if case is not None and row.status != EventStatus.AWAITING_CONTEXT
            }
            plan = await self._plan(session, rows, cases, now)
            existing = await _existing_notifications(session, plan)
            effects = _Effects()
            try:
                async with session.begin_nested():
                    written = set(existing)
                    done = [
                        await self._write(session, item, written, effects, now) for item in plan
                    ]
            except DBAPIError:
                raise  # the database itself failed: give the whole batch back to the broker
            except Exception:  # noqa: BLE001 - one bad event must not block its partition
                # Rolled back to the savepoint (which expired what it had changed): read the
                # events again, and write each under a savepoint of its own.
                for chunk in in_chunks(sorted(item.row_id for item in plan)):
                    (
                        await session.scalars(
                            select(m.CaseEvent)
                            .where(m.CaseEvent.id.in_(chunk))
                            .execution_options(populate_existing=True)
                        )
                    ).all()
                effects, written = _Effects(), set(existing)
                done = [
                    await self._write_alone(session, item, written, effects, now) for item in plan
                ]
        effects.apply()
        if effects.due_now and on_due_now is not None:
            on_due_now()
        return done

    async def _plan(
        self,
        session: AsyncSession,
        rows: Sequence[m.CaseEvent],
        cases: dict[str, m.Case],
        now: datetime,
    ) -> list[_Planned]:
        """The batch in the order it is decided, each event with its case (`cases`, by URN)
        and decisions: an event of a known case is followed by the events parked for that case
        (oldest first)."""
        parked: dict[str, list[m.CaseEvent]] = {}
        for chunk in in_chunks(sorted(cases)):
            for waiting in await session.scalars(
                select(m.CaseEvent)
                .where(
                    m.CaseEvent.urn.in_(chunk),
                    m.CaseEvent.status == EventStatus.AWAITING_CONTEXT,
                    m.CaseEvent.processed_at.is_(None),
                )
                .order_by(m.CaseEvent.event_time, m.CaseEvent.id)
            ):
                parked.setdefault(waiting.urn, []).append(waiting)
        plan: list[_Planned] = []
        for row in rows:
            case = cases.get(row.urn)
            plan.append(_Planned(row, case.id if case is not None else None, row.id))
            if case is not None:
                plan += [_Planned(p, case.id, p.id) for p in parked.pop(row.urn, [])]
        contexts, broken = await self._contexts(session, list(cases.values()), now)
        for item in plan:
            if item.case_id is None:
                continue
            if item.case_id in broken:
                item.error = broken[item.case_id]
                continue
            context = contexts[item.case_id]
            item.survivors = len(context.survivors)
            try:
                item.decisions = self.engine.decide(event_facts(item.row), context, now)
            except Exception as exc:  # noqa: BLE001 - one bad event must not block its partition
                log.exception("event.failed", case_event_id=item.row.id, error=type(exc).__name__)
                item.error = type(exc).__name__
        return plan

    async def _contexts(
        self, session: AsyncSession, cases: list[m.Case], now: datetime
    ) -> tuple[dict[int, CaseContext], dict[int, str]]:
        """The cases' contexts, and the error of each case whose context cannot be read (a
        protected value that does not decrypt): only that case's events fail."""
        try:
            return await load_case_contexts(session, cases, now), {}
        except DBAPIError:
            raise
        except Exception:  # noqa: BLE001 - find the case at fault, one at a time
            contexts: dict[int, CaseContext] = {}
            broken: dict[int, str] = {}
            for case in cases:
                try:
                    contexts |= await load_case_contexts(session, [case], now)
                except DBAPIError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    log.exception("event.failed", case_id=case.id, error=type(exc).__name__)
                    broken[case.id] = type(exc).__name__
            return contexts, broken

    async def _write(
        self,
        session: AsyncSession,
        item: _Planned,
        existing: set[str],
        effects: _Effects,
        now: datetime,
    ) -> tuple[int, str]:
        """Write one planned event's outcome (no savepoint of its own: see `process`)."""
        row = item.row
        if item.case_id is None:
            row.status = EventStatus.AWAITING_CONTEXT
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="event.awaiting_context",
                case_event_id=row.id,
                type=row.type,
            )
            return row.id, str(row.status)
        if item.error is None:
            await self._write_decisions(session, item, existing, effects, now)
            row.status = EventStatus.PROCESSED
        else:
            self._failed(session, item, item.error, now)
        row.processed_at = now
        row.rules_version = self.engine.rules.version
        return row.id, str(row.status)

    async def _write_alone(
        self,
        session: AsyncSession,
        item: _Planned,
        existing: set[str],
        effects: _Effects,
        now: datetime,
    ) -> tuple[int, str]:
        """`_write` under a savepoint of its own: an event whose writes fail is marked failed."""
        if item.case_id is None or item.error is not None:
            return await self._write(session, item, existing, effects, now)
        own = _Effects()
        try:
            async with session.begin_nested():
                await self._write_decisions(session, item, existing, own, now)
                item.row.status = EventStatus.PROCESSED
        except DBAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad event must not block its partition
            log.exception("event.failed", case_event_id=item.row_id, error=type(exc).__name__)
            self._failed(session, item, type(exc).__name__, now)
        else:
            effects.pending += own.pending
            effects.due_now = effects.due_now or own.due_now
        item.row.processed_at = now
        item.row.rules_version = self.engine.rules.version
        return item.row.id, str(item.row.status)

    def _failed(self, session: AsyncSession, item: _Planned, error: str, now: datetime) -> None:
        row = item.row
        row.status = EventStatus.FAILED
        row.error_code = error
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action="event.failed",
            case_id=item.case_id,
            case_event_id=row.id,
            error=error,
        )

    async def _write_decisions(
        self,
        session: AsyncSession,
        item: _Planned,
        existing: set[str],
        effects: _Effects,
        now: datetime,
    ) -> None:
        row, case_id, decisions = item.row, item.case_id, item.decisions
        assert case_id is not None
        if not decisions:
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="event.no_decision",
                case_id=case_id,
                case_event_id=row.id,
                type=row.type,
                survivors=item.survivors,
                rules_version=self.engine.rules.version,
            )
        # A message that points at another (a tell-first, an alert) is written after it.
        for decision in sorted(decisions, key=lambda d: d.related_rule is not None):
            await self._write_decision(session, row, case_id, decision, existing, effects, now)

    async def _write_decision(
        self,
        session: AsyncSession,
        row: m.CaseEvent,
        case_id: int,
        decision: Decision,
        existing: set[str],
        effects: _Effects,
        now: datetime,
    ) -> None:
        nid: str | None = None
        if decision.makes_notification and decision.template is not None:
            nid = notification_id(row.source, row.event_id, recipient_key(decision), decision.rule)
            if nid not in existing:
                replaced = await _supersede_older(session, row, case_id, decision, now)
                notification = self._notification(nid, row, case_id, decision, now)
                notification.supersedes_id = replaced
                session.add(notification)
                existing.add(nid)
                status = _initial_status(decision)
                effects.add(lambda: metrics.NOTIFICATIONS.labels(status).inc())
                if status == Status.SCHEDULED.value and decision.send_at is not None:
                    effects.due_now = effects.due_now or decision.send_at <= now
        session.add(
            m.DecisionRow(
                case_event_id=row.id,
                case_id=case_id,
                outcome=decision.outcome.value,
                recipient_role=decision.recipient.role.value,
                recipient_id=decision.recipient.id,
                survivor_id=decision.survivor_id,
                channel=decision.channel.value if decision.channel else None,
                template=decision.template,
                send_at=decision.send_at,
                due_by=decision.due_by,
                hold_reason=decision.hold_reason,
                rule=decision.rule,
                notification_id=nid,
                decided_at=now,
            )
        )
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action=f"decision.{decision.outcome.value}",
            case_id=case_id,
            case_event_id=row.id,
            notification_id=nid,
            rule=decision.rule,
            recipient_role=decision.recipient.role.value,
            recipient_id=decision.recipient.id,
            channel=decision.channel.value if decision.channel else None,
            hold_reason=decision.hold_reason,
        )
        outcome = decision.outcome.value
        effects.add(lambda: metrics.DECISIONS.labels(outcome).inc())
        if decision.outcome is Outcome.ESCALATE:
            # Nobody (no advocate, no supervisor) can act on this: operations must know now.
            event_row_id, rule, reason = row.id, decision.rule, decision.hold_reason
            effects.add(
                lambda: log.warning(
                    "decision.escalated", case_event_id=event_row_id, rule=rule, reason=reason
                )
            )

    def _notification(
        self, nid: str, row: m.CaseEvent, case_id: int, decision: Decision, now: datetime
    ) -> m.Notification:
        assert decision.template is not None
        info = catalogue()[decision.template]
        survivor_role = decision.recipient.role.value == "survivor"
        related = None
        if decision.related_rule is not None and decision.survivor_id is not None:
            related = notification_id(
                row.source, row.event_id, f"survivor:{decision.survivor_id}", decision.related_rule
            )
        return m.Notification(
            id=nid,
            case_event_id=row.id,
            case_id=case_id,
            event_source=row.source,
            event_id=row.event_id,
            recipient_role=decision.recipient.role.value,
            survivor_id=decision.survivor_id,
            advocate_id=None if survivor_role else decision.recipient.id,
            channel=decision.channel.value if decision.channel else None,
            language=decision.language,
            detail=decision.detail.value,
            template=decision.template,
            template_version=info.version,
            rules_version=self.engine.rules.version,
            rule=decision.rule,
            status=_initial_status(decision),
            hold_reason=decision.hold_reason if decision.outcome is Outcome.HOLD else None,
            related_id=related,
            send_condition=decision.condition,
            coalesce_key=decision.coalesce_key,
            send_at=decision.send_at,
            due_by=decision.due_by,
            created_at=now,
            updated_at=now,
        )


async def _supersede_older(
    session: AsyncSession, row: m.CaseEvent, case_id: int, decision: Decision, now: datetime
) -> str | None:
    """Cancel the survivor's unsent messages of older events in the same coalesce group.

    One update, not five (trauma-informed rule 11), and never a stale hearing date: the newest
    event's message replaces them. Returns the id of the one it replaces most recently.
    """
    if decision.coalesce_key is None or decision.recipient.role is not Role.SURVIVOR:
        return None
    # This batch's earlier messages must be in the database for the query to find them.
    await session.flush()
    older = (
        await session.scalars(
            select(m.Notification)
            .join(m.CaseEvent, m.CaseEvent.id == m.Notification.case_event_id)
            .where(
                m.Notification.case_id == case_id,
                m.Notification.survivor_id == decision.survivor_id,
                m.Notification.recipient_role == "survivor",
                m.Notification.coalesce_key == decision.coalesce_key,
                m.Notification.status.in_((Status.SCHEDULED.value, Status.HELD.value)),
                m.Notification.case_event_id != row.id,
                m.CaseEvent.event_time <= row.event_time,
            )
            .order_by(m.CaseEvent.event_time, m.Notification.created_at)
            .with_for_update()
        )
    ).all()
    for old in older:
        move(
            session,
            old,
            Status.CANCELLED,
            now=now,
            actor=ACTOR,
            reason="superseded_by_newer_event",
            action="notification.superseded",
            case_event_id=row.id,
            rule=old.rule,
            coalesce_key=decision.coalesce_key,
        )
    return older[-1].id if older else None


async def _existing_notifications(session: AsyncSession, plan: list[_Planned]) -> set[str]:
    """Which of the notifications the batch's decisions would make exist already (a redelivery,
    a re-drive): one query, where each decision used to ask on its own."""
    wanted = sorted(
        {
            notification_id(item.row.source, item.row.event_id, recipient_key(d), d.rule)
            for item in plan
            for d in item.decisions
            if d.makes_notification and d.template is not None
        }
    )
    found: set[str] = set()
    for chunk in in_chunks(wanted):
        found |= set(
            await session.scalars(select(m.Notification.id).where(m.Notification.id.in_(chunk)))
        )
    return found


def _initial_status(decision: Decision) -> str:
    return Status.HELD.value if decision.outcome is Outcome.HOLD else Status.SCHEDULED.value
