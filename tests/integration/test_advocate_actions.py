"""What an advocate asks for about a held message (release it, they told the survivor in person,
cancel it) is carried out by the dispatcher: once, in request order, never against the
survivor's opt-out or safe channels, and never leaving the held message's fallback or the
supervisor's alert to go as well. On SQLite and PostgreSQL.

The held message is made the real way: the demo survivor's crime record and "no further
action" are recorded and decided by the rules consumer, with no broker (the dispatcher's
publishes go to a list).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services import demo
from services.core.calendar import load_calendar
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.records import NotificationDue
from services.core.runtime import Runtime
from services.ingest.recording import record_event
from services.rules.actions import carry_out_actions
from services.rules.consumer import RulesConsumer
from services.rules.dispatcher import release_due, release_fallbacks
from services.rules.engine import Engine
from services.rules.ruleset import load_rules

STEPS = demo.script()
CRIME_AT, NFA_AT = STEPS[0].at, STEPS[3].at  # Mon 16 Nov 10:00, Wed 18 Nov 10:00 (London = UTC)
FALLBACK_AT = datetime(2026, 11, 19, 12, 0, tzinfo=UTC)  # the held message goes by itself
STAFF = "staff:7"


class ListBroker:
    """Stands in for Kafka: keeps what the dispatcher publishes."""

    def __init__(self) -> None:
        self.due: list[str] = []

    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        self.due.append(NotificationDue.decode(message).notification_id)


@dataclass
class HeldNews:
    rt: Runtime
    clock: FixedClock
    broker: ListBroker
    held_id: str  # the survivor's detail-free message, held for the advocate
    alert_id: str  # the supervisor's "while held" alert about it
    alert_at: datetime  # half the time allowed, early on Thursday
    others: list[Runtime] = field(default_factory=list)

    async def ask(self, action: str, at: datetime, reason_code: str | None = None) -> int:
        """Record an action as the portal does; return its id."""
        async with self.rt.sessions.begin() as session:
            row = m.AdvocateAction(
                notification_id=self.held_id,
                action=action,
                reason_code=reason_code,
                note="Spoke with her at the centre." if action == "told_in_person" else None,
                requested_by=STAFF,
                requested_at=at,
            )
            session.add(row)
            await session.flush()
            return row.id

    async def row(self, nid: str) -> m.Notification:
        async with self.rt.sessions() as session:
            return await session.get_one(m.Notification, nid)

    async def action(self, action_id: int) -> m.AdvocateAction:
        async with self.rt.sessions() as session:
            return await session.get_one(m.AdvocateAction, action_id)

    async def audit(self, action_id: int) -> list[m.AuditEntry]:
        async with self.rt.sessions() as session:
            entries = await session.scalars(select(m.AuditEntry).order_by(m.AuditEntry.seq))
            return [e for e in entries if e.codes.get("advocate_action_id") == action_id]

    async def runtime(self) -> Runtime:
        """Another dispatcher process's runtime on the same database."""
        engine = make_engine(self.rt.settings.resolved_database_url)
        other = Runtime(
            self.rt.settings,
            engine,
            session_factory(engine),
            self.clock,
            self.rt.calendar,
            None,  # type: ignore[arg-type]
        )
        self.others.append(other)
        return other


@pytest.fixture
async def news(make_settings: Any, database_url: str) -> AsyncIterator[HeldNews]:
    settings = make_settings(database_url=database_url)
    engine = make_engine(settings.resolved_database_url)
    await upgrade(engine)
    clock, broker = FixedClock(CRIME_AT), ListBroker()
    rt = Runtime(
        settings,
        engine,
        session_factory(engine),
        clock,
        load_calendar(None),
        broker,  # type: ignore[arg-type]
    )
    rules = RulesConsumer(rt, Engine(load_rules(), rt.calendar))
    async with rt.sessions.begin() as session:
        await demo.seed(session, CRIME_AT)
    for step in (STEPS[0], STEPS[3]):
        clock.set(step.at)
        async with rt.sessions.begin() as session:
            (event,) = step.events
            outcome = await record_event(
                session,
                event,
                json.dumps(event).encode(),
                now=step.at,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None, outcome.errors
            await rules.process(session, [outcome.case_event_id], step.at)
    async with rt.sessions() as session:
        rows = {
            n.template: n
            for n in await session.scalars(
                select(m.Notification).where(m.Notification.event_id == "demo-0003")
            )
        }
    held, alert = rows["survivor_get_in_touch"], rows["supervisor_hold_alert"]
    assert (held.status, held.hold_reason, held.send_at) == ("held", "advocate_first", FALLBACK_AT)
    assert (alert.status, alert.send_condition, alert.related_id) == (
        "scheduled",
        "while_held",
        held.id,
    )
    assert alert.send_at is not None and NFA_AT < alert.send_at < FALLBACK_AT
    made = HeldNews(rt, clock, broker, held.id, alert.id, alert.send_at)
    try:
        yield made
    finally:
        for each in (rt, *made.others):
            await each.engine.dispose()


async def test_a_release_inside_the_safe_window_goes_now_and_stops_the_alert(
    news: HeldNews,
) -> None:
    at = NFA_AT + timedelta(minutes=30)
    news.clock.set(at)
    asked = await news.ask("release", at - timedelta(seconds=20))

    assert await carry_out_actions(news.rt) == 1
    assert await carry_out_actions(news.rt) == 0  # once only

    held, alert, action = (
        await news.row(news.held_id),
        await news.row(news.alert_id),
        await news.action(asked),
    )
    assert (held.status, held.send_at, held.status_reason) == (
        "scheduled",
        at,
        "released_by_advocate",
    )
    assert (alert.status, alert.status_reason) == ("cancelled", "hold_resolved")
    assert (action.carried_out_at, action.outcome, action.outcome_reason) == (at, "done", None)
    entries = await news.audit(asked)
    assert [(e.action, e.actor, e.notification_id) for e in entries] == [
        ("advocate_action.release", STAFF, news.held_id),
        ("notification.cancelled", STAFF, news.alert_id),
    ]
    assert entries[0].codes["outcome"] == "done"

    await release_due(news.rt)
    assert news.held_id in news.broker.due and news.alert_id not in news.broker.due
    # Its fallback time comes: nothing goes a second time.
    news.clock.set(FALLBACK_AT)
    assert await release_fallbacks(news.rt) == 0
    before = len(news.broker.due)
    await release_due(news.rt)
    assert len(news.broker.due) == before


async def test_a_release_late_in_the_evening_waits_for_the_survivors_window(
    news: HeldNews,
) -> None:
    night = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)  # 23:00 for her (Europe/London)
    news.clock.set(night)
    asked = await news.ask("release", night)
    assert await carry_out_actions(news.rt) == 1
    held = await news.row(news.held_id)
    assert held.status == "scheduled"
    assert held.send_at == datetime(2026, 11, 19, 9, 0, tzinfo=UTC)  # her window opens
    assert (await news.action(asked)).outcome == "done"

    news.clock.set(news.alert_at)  # the alert's time: it does not go, and nor does she get it yet
    await release_due(news.rt)
    assert news.alert_id not in news.broker.due and news.held_id not in news.broker.due
    news.clock.set(datetime(2026, 11, 19, 9, 0, 1, tzinfo=UTC))
    await release_due(news.rt)
    assert news.broker.due.count(news.held_id) == 1


async def test_a_release_after_the_survivor_opted_out_is_refused_and_stays_held(
    news: HeldNews,
) -> None:
    at = NFA_AT + timedelta(hours=1)
    news.clock.set(at)
    async with news.rt.sessions.begin() as session:
        current = (await session.scalars(select(m.ContactPreference))).one()
        session.add(
            m.ContactPreference(
                **{
                    c.key: getattr(current, c.key)
                    for c in m.ContactPreference.__table__.columns
                    if c.key not in {"id", "version", "reason_code", "opted_out", "recorded_at"}
                },
                version=2,
                reason_code="stop_received",
                recorded_at=at - timedelta(minutes=10),
                opted_out=True,
            )
        )
    asked = await news.ask("release", at)
    assert await carry_out_actions(news.rt) == 1

    held, alert, action = (
        await news.row(news.held_id),
        await news.row(news.alert_id),
        await news.action(asked),
    )
    assert (held.status, held.send_at) == ("held", FALLBACK_AT)
    assert alert.status == "scheduled"  # the hold is not resolved: the supervisor still hears
    assert (action.outcome, action.outcome_reason, action.carried_out_at) == (
        "refused",
        "opted_out",
        at,
    )
    (entry,) = await news.audit(asked)
    assert (entry.action, entry.actor) == ("advocate_action.release", STAFF)
    assert entry.codes == {
        "advocate_action_id": asked,
        "outcome": "refused",
        "reason": "opted_out",
        "status": "held",
    }


async def test_a_release_after_the_fallback_went_is_moot(news: HeldNews) -> None:
    news.clock.set(FALLBACK_AT)
    assert await release_fallbacks(news.rt) == 1
    await release_due(news.rt)
    assert news.broker.due.count(news.held_id) == 1

    late = FALLBACK_AT + timedelta(minutes=3)
    news.clock.set(late)
    asked = await news.ask("release", late - timedelta(seconds=5))
    assert await carry_out_actions(news.rt) == 1
    action, held = await news.action(asked), await news.row(news.held_id)
    assert (action.outcome, action.outcome_reason, action.carried_out_at) == (
        "moot",
        "queued",
        late,
    )
    assert held.status == "queued" and held.updated_at == FALLBACK_AT  # untouched
    (entry,) = await news.audit(asked)
    assert entry.codes["outcome"] == "moot" and entry.codes["reason"] == "queued"
    await release_due(news.rt)
    assert news.broker.due.count(news.held_id) == 1


async def test_told_in_person_sets_when_she_was_informed_and_stops_the_fallback(
    news: HeldNews,
) -> None:
    told_at = NFA_AT + timedelta(hours=4)
    news.clock.set(told_at + timedelta(minutes=2))
    asked = await news.ask("told_in_person", told_at)
    assert await carry_out_actions(news.rt) == 1

    held, alert = await news.row(news.held_id), await news.row(news.alert_id)
    assert (held.status, held.informed_at) == ("told_in_person", told_at)
    assert (alert.status, alert.status_reason) == ("cancelled", "hold_resolved")
    assert (await news.action(asked)).outcome == "done"
    for moment in (news.alert_at, FALLBACK_AT):
        news.clock.set(moment)
        assert await release_fallbacks(news.rt) == 0
        await release_due(news.rt)
    assert news.held_id not in news.broker.due and news.alert_id not in news.broker.due


async def test_a_cancel_needs_a_reason_and_records_it(news: HeldNews) -> None:
    at = NFA_AT + timedelta(hours=2)
    news.clock.set(at)
    no_reason = await news.ask("cancel", at - timedelta(minutes=2))
    free_text = await news.ask("cancel", at - timedelta(minutes=1), "she rang, do not send")
    assert await carry_out_actions(news.rt) == 2
    assert (await news.row(news.held_id)).status == "held"
    refused = [await news.action(no_reason), await news.action(free_text)]
    assert [(a.outcome, a.outcome_reason) for a in refused] == [
        ("refused", "reason_code_missing"),
        ("refused", "reason_code_unknown"),
    ]
    (entry,) = await news.audit(free_text)
    assert "she rang" not in json.dumps(entry.codes)  # codes only in the audit trail

    cancel = await news.ask("cancel", at, "survivor_asked")
    release = await news.ask("release", at + timedelta(seconds=1))  # a colleague, a moment later
    assert await carry_out_actions(news.rt) == 2
    held, alert = await news.row(news.held_id), await news.row(news.alert_id)
    assert (held.status, held.status_reason) == ("cancelled", "survivor_asked")
    assert alert.status == "cancelled"
    assert (await news.action(cancel)).outcome == "done"
    moot = await news.action(release)
    assert (moot.outcome, moot.outcome_reason) == ("moot", "cancelled")
    (entry, _alert_cancelled) = await news.audit(cancel)
    assert (entry.action, entry.actor, entry.codes["reason"]) == (
        "advocate_action.cancel",
        STAFF,
        "survivor_asked",
    )


async def test_an_action_that_fails_is_refused_without_blocking_the_next(
    news: HeldNews, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> datetime:
        raise RuntimeError("a bug in the window arithmetic")

    monkeypatch.setattr("services.rules.actions.next_safe_time", broken)
    at = NFA_AT + timedelta(hours=1)
    news.clock.set(at)
    first = await news.ask("release", at - timedelta(minutes=1))
    second = await news.ask("told_in_person", at)
    assert await carry_out_actions(news.rt) == 2
    failed, done = await news.action(first), await news.action(second)
    assert (failed.outcome, failed.outcome_reason) == ("refused", "error:RuntimeError")
    assert done.outcome == "done"
    assert (await news.row(news.held_id)).status == "told_in_person"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_dispatchers_carry_out_each_action_once_in_request_order(
    news: HeldNews,
) -> None:
    at = NFA_AT + timedelta(hours=1)
    news.clock.set(at)
    first = await news.ask("release", at - timedelta(minutes=2))
    second = await news.ask("told_in_person", at - timedelta(minutes=1))
    other = await news.runtime()

    # A dispatcher is in the middle of the first action: the second waits for it, so the
    # later request can never overtake the earlier one.
    async with other.sessions.begin() as session:
        claimed = await session.scalar(
            select(m.AdvocateAction).where(m.AdvocateAction.id == first).with_for_update()
        )
        assert claimed is not None
        assert await carry_out_actions(news.rt) == 0
    assert (await news.row(news.held_id)).status == "held"
    assert (await news.action(second)).carried_out_at is None

    # Something else holds the message itself (a fallback being released): the action waits.
    async with other.sessions.begin() as session:
        await session.scalar(
            select(m.Notification).where(m.Notification.id == news.held_id).with_for_update()
        )
        assert await carry_out_actions(news.rt) == 0
    assert (await news.action(first)).carried_out_at is None

    # Two passes at once, again and again until nothing is left: each action once.
    done = 0
    for _ in range(5):
        done += sum(await asyncio.gather(carry_out_actions(news.rt), carry_out_actions(other)))
    assert done == 2
    a, b = await news.action(first), await news.action(second)
    assert (a.outcome, b.outcome, b.outcome_reason) == ("done", "moot", "scheduled")
    assert len(await news.audit(first)) == 2  # the release and the alert's cancellation
    assert len(await news.audit(second)) == 1
    async with news.rt.sessions() as session:
        scheduled = await session.scalar(
            select(func.count()).where(
                m.AuditEntry.notification_id == news.held_id,
                m.AuditEntry.action == "advocate_action.release",
            )
        )
    assert scheduled == 1
