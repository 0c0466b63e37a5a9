"""The rules consumer: claims recorded case events, decides, and writes the outcome.

For a batch of `case-events` records it claims the rows still unprocessed, and in ONE
transaction writes decisions, notifications and audit rows; the offset is committed only after
that transaction (see services.core.kafka). Reprocessing can never double anything: a claimed
row is skipped, and notification ids are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core import audit, metrics
from services.core.db import models as m
from services.core.domain import (
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
from services.rules.context import load_case_context
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
        async with self.rt.sessions.begin() as session:
            done = await self.process(session, sorted(set(ids)), now)
        for row_id, status in done:
            metrics.EVENTS_PROCESSED.labels(status).inc()
            log.info("event.processed", case_event_id=row_id, status=status)
        return len(done)

    async def process(
        self, session: AsyncSession, ids: list[int], now: datetime
    ) -> list[tuple[int, str]]:
        rows = (
            await session.scalars(
                select(m.CaseEvent)
                .where(m.CaseEvent.id.in_(ids), m.CaseEvent.processed_at.is_(None))
                .order_by(m.CaseEvent.id)
                .with_for_update(skip_locked=True)
            )
        ).all()
        done: list[tuple[int, str]] = []
        for row in rows:
            if row.status == EventStatus.AWAITING_CONTEXT:
                continue  # parked until its case is known; re-driven with the case's first event
            done.extend(await self._process_one(session, row, now))
        return done

    async def _process_one(
        self, session: AsyncSession, row: m.CaseEvent, now: datetime
    ) -> list[tuple[int, str]]:
        case = await session.scalar(select(m.Case).where(m.Case.urn == row.urn))
        if case is None:
            row.status = EventStatus.AWAITING_CONTEXT
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="event.awaiting_context",
                case_event_id=row.id,
                type=row.type,
            )
            return [(row.id, str(row.status))]
        try:
            async with session.begin_nested():
                await self._decide_and_write(session, row, case, now)
                row.status = EventStatus.PROCESSED
        except DBAPIError:
            raise  # the database itself failed: give the whole batch back to the broker
        except Exception as exc:  # noqa: BLE001 - one bad event must not block its partition
            log.exception("event.failed", case_event_id=row.id, error=type(exc).__name__)
            row.status = EventStatus.FAILED
            row.error_code = type(exc).__name__
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="event.failed",
                case_id=case.id,
                case_event_id=row.id,
                error=type(exc).__name__,
            )
        row.processed_at = now
        row.rules_version = self.engine.rules.version
        done: list[tuple[int, str]] = [(row.id, str(row.status))]
        # The case is known now: events that arrived before it was are processed in order.
        parked = (
            await session.scalars(
                select(m.CaseEvent)
                .where(
                    m.CaseEvent.urn == row.urn,
                    m.CaseEvent.status == EventStatus.AWAITING_CONTEXT,
                    m.CaseEvent.processed_at.is_(None),
                )
                .order_by(m.CaseEvent.event_time, m.CaseEvent.id)
            )
        ).all()
        for waiting in parked:
            waiting.status = EventStatus.PENDING
            done.extend(await self._process_one(session, waiting, now))
        return done

    async def _decide_and_write(
        self, session: AsyncSession, row: m.CaseEvent, case: m.Case, now: datetime
    ) -> None:
        context = await load_case_context(session, case, now)
        decisions = self.engine.decide(event_facts(row), context, now)
        if not decisions:
            audit.record(
                session,
                at=now,
                actor=ACTOR,
                action="event.no_decision",
                case_id=case.id,
                case_event_id=row.id,
                type=row.type,
                survivors=len(context.survivors),
                rules_version=self.engine.rules.version,
            )
        # A message that points at another (a tell-first, an alert) is written after it.
        for decision in sorted(decisions, key=lambda d: d.related_rule is not None):
            await self._write_decision(session, row, case, decision, now)

    async def _write_decision(
        self,
        session: AsyncSession,
        row: m.CaseEvent,
        case: m.Case,
        decision: Decision,
        now: datetime,
    ) -> None:
        nid: str | None = None
        if decision.makes_notification and decision.template is not None:
            nid = notification_id(row.source, row.event_id, recipient_key(decision), decision.rule)
            if await session.get(m.Notification, nid) is None:
                replaced = await _supersede_older(session, row, case, decision, now)
                notification = self._notification(nid, row, case, decision, now)
                notification.supersedes_id = replaced
                session.add(notification)
                metrics.NOTIFICATIONS.labels(_initial_status(decision)).inc()
        session.add(
            m.DecisionRow(
                case_event_id=row.id,
                case_id=case.id,
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
            case_id=case.id,
            case_event_id=row.id,
            notification_id=nid,
            rule=decision.rule,
            recipient_role=decision.recipient.role.value,
            recipient_id=decision.recipient.id,
            channel=decision.channel.value if decision.channel else None,
            hold_reason=decision.hold_reason,
        )
        metrics.DECISIONS.labels(decision.outcome.value).inc()
        if decision.outcome is Outcome.ESCALATE:
            # Nobody (no advocate, no supervisor) can act on this: operations must know now.
            log.warning(
                "decision.escalated",
                case_event_id=row.id,
                rule=decision.rule,
                reason=decision.hold_reason,
            )

    def _notification(
        self, nid: str, row: m.CaseEvent, case: m.Case, decision: Decision, now: datetime
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
            case_id=case.id,
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
    session: AsyncSession, row: m.CaseEvent, case: m.Case, decision: Decision, now: datetime
) -> str | None:
    """Cancel the survivor's unsent messages of older events in the same coalesce group.

    One update, not five (trauma-informed rule 11), and never a stale hearing date: the newest
    event's message replaces them. Returns the id of the one it replaces most recently.
    """
    if decision.coalesce_key is None or decision.recipient.role is not Role.SURVIVOR:
        return None
    older = (
        await session.scalars(
            select(m.Notification)
            .join(m.CaseEvent, m.CaseEvent.id == m.Notification.case_event_id)
            .where(
                m.Notification.case_id == case.id,
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


def _initial_status(decision: Decision) -> str:
    return Status.HELD.value if decision.outcome is Outcome.HOLD else Status.SCHEDULED.value
