"""The rules consumer decides a batch of events as it would decide them one at a time, on SQLite
and PostgreSQL: the same decisions, notifications and audit rows; one bad event is marked
failed and never takes the rest of its batch with it; events parked for want of their case are
each decided once when the case appears.

Events are recorded by ingest's recording and decided by `RulesConsumer.process`, with no broker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.domain import CaseContext, Decision, EventFacts
from services.core.runtime import Runtime
from services.ingest.recording import record_event
from services.rules.consumer import RulesConsumer
from services.rules.engine import Engine
from services.rules.ruleset import load_rules
from tests.integration.runtimes import migrated_runtime
from tests.integration.test_pipeline import add_team

T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # Wednesday, inside every default safe window


class ListBroker:
    async def publish(self, message: bytes, topic: str, **_: Any) -> None:
        return None


class PoisonedEngine(Engine):
    """The real engine, except that it fails on events whose id starts with `poison`."""

    def decide(self, event: EventFacts, context: CaseContext, now: datetime) -> list[Decision]:
        if event.event_id.startswith("poison"):
            raise RuntimeError("a bug that only this event finds")
        return super().decide(event, context, now)


class UnwritableEngine(Engine):
    """The real engine, except that for events whose id starts with `unwritable` it names a
    template that does not exist: the decision is made, writing it fails."""

    def decide(self, event: EventFacts, context: CaseContext, now: datetime) -> list[Decision]:
        decisions = super().decide(event, context, now)
        if event.event_id.startswith("unwritable"):
            return [replace(d, template="no_such_template") for d in decisions]
        return decisions


@pytest.fixture
async def rt(make_settings: Any, database_url: str) -> AsyncIterator[Runtime]:
    settings = make_settings(database_url=database_url)
    async with migrated_runtime(settings, FixedClock(T0), ListBroker()) as runtime:
        async with runtime.sessions.begin() as session:
            await add_team(session, T0)
        yield runtime


def event(etype: str, urn: str, event_id: str, data: dict[str, Any] | None = None) -> Any:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "police/01",
        "type": etype,
        "subject": urn,
        "time": (T0 - timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
        "data": data or {},
    }


def crime_recorded(urn: str, event_id: str, *, survivors: int = 1) -> Any:
    victims = [
        {
            "party_id": f"P-{event_id}-{n}",
            "name": {"full": "Casey Example", "preferred": "Casey"},
            "contact": {"phone": "+447700900321", "safe_to_text": True},
            "consent_to_referral": True,
        }
        for n in range(survivors)
    ]
    return event(
        "police.crime_recorded",
        urn,
        event_id,
        {"crime_reference": f"CR-{event_id}", "offence_category": "burglary", "victims": victims},
    )


async def record(rt: Runtime, *objs: Any) -> list[int]:
    ids = []
    async with rt.sessions.begin() as session:
        for obj in objs:
            outcome = await record_event(
                session,
                obj,
                json.dumps(obj).encode(),
                now=T0,
                way_in="http",
                max_skew=timedelta(minutes=5),
            )
            assert outcome.case_event_id is not None, outcome.errors
            ids.append(outcome.case_event_id)
    return ids


async def decide(
    rt: Runtime, ids: list[int], engine: Engine | None = None
) -> list[tuple[int, str]]:
    consumer = RulesConsumer(rt, engine or Engine(load_rules(), rt.calendar))
    async with rt.sessions.begin() as session:
        return await consumer.process(session, ids, T0)


async def outcome_of(rt: Runtime, urn: str, prefix: str) -> dict[str, Any]:
    """What the consumer left for one case, with the ids that differ between runs taken out."""
    async with rt.sessions() as session:
        events = {
            e.id: e
            for e in await session.scalars(select(m.CaseEvent).where(m.CaseEvent.urn == urn))
        }

        def name(case_event_id: int | None) -> str:
            if case_event_id is None:
                return "-"
            return events[case_event_id].event_id.removeprefix(prefix)

        decisions = await session.scalars(
            select(m.DecisionRow)
            .where(m.DecisionRow.case_event_id.in_(events))
            .order_by(m.DecisionRow.id)
        )
        notifications = await session.scalars(
            select(m.Notification)
            .where(m.Notification.case_event_id.in_(events))
            .order_by(m.Notification.created_at, m.Notification.event_id, m.Notification.rule)
        )
        nids = {n.id: n for n in await session.scalars(select(m.Notification))}

        def note(nid: str | None) -> str:
            if nid is None:
                return "-"
            row = nids[nid]
            return f"{row.event_id.removeprefix(prefix)}/{row.rule}/{row.recipient_role}"

        first_survivor = await session.scalar(
            select(func.min(m.CaseSurvivor.survivor_id))
            .join(m.Case, m.Case.id == m.CaseSurvivor.case_id)
            .where(m.Case.urn == urn)
        )

        def codes(values: dict[str, Any]) -> dict[str, Any]:
            # Each case has survivors of its own: the first, the second...
            if values.get("recipient_role") == "survivor" and first_survivor is not None:
                values = {**values, "recipient_id": values["recipient_id"] - first_survivor}
            return values

        audit = await session.scalars(
            select(m.AuditEntry)
            .where(m.AuditEntry.case_event_id.in_(events), m.AuditEntry.actor == "rules")
            .order_by(m.AuditEntry.seq)
        )
        return {
            "events": sorted(
                (e.event_id.removeprefix(prefix), e.status, e.error_code) for e in events.values()
            ),
            "decisions": [
                (
                    name(d.case_event_id),
                    d.outcome,
                    d.recipient_role,
                    d.channel,
                    d.template,
                    d.hold_reason,
                    d.rule,
                    note(d.notification_id),
                )
                for d in decisions
            ],
            "notifications": sorted(
                (
                    note(n.id),
                    n.status,
                    n.status_reason,
                    n.channel,
                    n.template,
                    note(n.supersedes_id),
                    note(n.related_id),
                    n.send_at,
                    n.due_by,
                )
                for n in notifications
            ),
            "audit": [
                (
                    a.action,
                    name(a.case_event_id),
                    note(a.notification_id),
                    a.rule,
                    codes(a.codes),
                )
                for a in audit
            ],
        }


def workload(urn: str, prefix: str) -> list[Any]:
    """A mix: plain updates, a coalesced pair (the second replaces the first) and a distressing
    outcome held for the advocate (with the supervisor's alert pointing at it)."""
    return [
        event("police.suspect_arrested", urn, f"{prefix}1"),
        event("police.suspect_bailed", urn, f"{prefix}2", {"conditions": ["no contact"]}),
        event("police.suspect_interviewed", urn, f"{prefix}3", {"under_caution": True}),
        event("police.bail_conditions_changed", urn, f"{prefix}4", {"cancelled": False}),
        event("police.decision_not_to_investigate", urn, f"{prefix}5", {"reason": "No suspect."}),
    ]


async def test_a_batch_is_decided_as_one_event_at_a_time(rt: Runtime) -> None:
    one_by_one, batched = "01AB1000124", "01AB1000224"
    for urn, prefix in ((one_by_one, "a-"), (batched, "b-")):
        (case_event,) = await record(rt, crime_recorded(urn, f"{prefix}0", survivors=2))
        await decide(rt, [case_event])
    for obj in workload(one_by_one, "a-"):
        ids = await record(rt, obj)
        await decide(rt, ids)
    ids = await record(rt, *workload(batched, "b-"))
    done = await decide(rt, ids)
    assert sorted(row_id for row_id, _ in done) == sorted(ids)
    alone, together = await outcome_of(rt, one_by_one, "a-"), await outcome_of(rt, batched, "b-")
    assert together == alone
    # The coalesced pair: the bail update replaced the first bail message, in the batch too.
    assert any(n[1] == "cancelled" for n in together["notifications"])


@pytest.mark.parametrize(
    ("bad", "engine", "error"),
    [
        ("poison-1", PoisonedEngine, "RuntimeError"),  # deciding fails
        ("unwritable-1", UnwritableEngine, "KeyError"),  # writing fails: the batch is redone
    ],
)
async def test_one_bad_event_fails_alone_and_the_rest_of_its_batch_is_decided(
    rt: Runtime, bad: str, engine: type[Engine], error: str
) -> None:
    urn = "01AB1000324"
    (case_event,) = await record(rt, crime_recorded(urn, "cr"))
    await decide(rt, [case_event])
    ids = await record(
        rt,
        event("police.suspect_arrested", urn, "good-1"),
        event("police.suspect_arrested", urn, bad),
        event("police.suspect_interviewed", urn, "good-2"),
    )
    done = await decide(rt, ids, engine(load_rules(), rt.calendar))
    assert sorted(status for _, status in done) == ["failed", "processed", "processed"]
    seen = await outcome_of(rt, urn, "")
    assert (bad, "failed", error) in seen["events"]
    assert [e for e in seen["events"] if e[0].startswith("good")] == [
        ("good-1", "processed", None),
        ("good-2", "processed", None),
    ]
    # Nothing of the bad event was written but the failure itself.
    assert [d for d in seen["decisions"] if d[0] == bad] == []
    assert [a[0] for a in seen["audit"] if a[1] == bad] == ["event.failed"]
    good = {n[0].split("/")[0] for n in seen["notifications"]}
    assert {"good-1", "good-2"} <= good and bad not in good
    # The good events' writes are those they make alone: two decisions each, audited once.
    assert (
        sorted(a[1] for a in seen["audit"] if a[1].startswith("good"))
        == ["good-1"] * 2 + ["good-2"] * 2
    )


async def test_events_parked_for_their_case_are_each_decided_once(rt: Runtime) -> None:
    urn = "01AB1000424"
    parked = await record(
        rt,
        event("police.suspect_arrested", urn, "early-1"),
        event("police.suspect_interviewed", urn, "early-2"),
        event("police.suspect_arrested", urn, "early-3"),
    )
    assert sorted(s for _, s in await decide(rt, parked)) == ["awaiting_context"] * 3
    (case_event,) = await record(rt, crime_recorded(urn, "cr"))
    done = await decide(rt, [case_event])
    assert sorted(row_id for row_id, _ in done) == sorted([case_event, *parked])
    async with rt.sessions() as session:
        per_event = dict(
            (
                await session.execute(
                    select(m.DecisionRow.case_event_id, func.count()).group_by(
                        m.DecisionRow.case_event_id
                    )
                )
            ).all()
        )
        statuses = set(
            (
                await session.scalars(select(m.CaseEvent.status).where(m.CaseEvent.id.in_(parked)))
            ).all()
        )
    assert statuses == {"processed"}
    # Each parked event: one decision for the advocate and one for the survivor, not twice.
    assert [per_event[i] for i in parked] == [2, 2, 2]


async def test_a_batch_is_read_in_a_fixed_number_of_queries(rt: Runtime) -> None:
    """Each event comes with its case in the query that claims it, and the cases' teams'
    stand-ins come in one query for every team: a batch of arrests on two cases, of two teams,
    is read in seven SELECTs, as one on one case is."""
    async with rt.sessions.begin() as session:
        other_team = m.Team(name="Team B", supervisor_id=None, is_default=False)
        session.add(other_team)
        await session.flush()
        team_b = other_team.id
    created = await record(
        rt, crime_recorded("01AB9000124", "c1"), crime_recorded("01AB9000224", "c2")
    )
    await decide(rt, created)
    async with rt.sessions.begin() as session:
        case = await session.scalar(select(m.Case).where(m.Case.urn == "01AB9000224"))
        assert case is not None
        case.team_id = team_b

    async def selects(ids: list[int]) -> int:
        counted: list[str] = []

        def count(*args: Any) -> None:
            counted.append(args[2].lstrip().split(None, 1)[0].upper())

        sa_event.listen(rt.engine.sync_engine, "before_cursor_execute", count)
        try:
            done = await decide(rt, ids)
        finally:
            sa_event.remove(rt.engine.sync_engine, "before_cursor_execute", count)
        assert {status for _, status in done} == {"processed"}
        return counted.count("SELECT")

    one = await record(rt, event("police.suspect_arrested", "01AB9000124", "a1"))
    both = await record(
        rt,
        *(
            event("police.suspect_arrested", urn, f"b{urn}{n}")
            for n in range(5)
            for urn in ("01AB9000124", "01AB9000224")
        ),
    )
    # The events with their cases, the parked events, the survivors, their preferences, their
    # advocates, the teams' stand-ins, the notifications that exist already.
    assert await selects(one) == 7
    assert await selects(both) == 7
