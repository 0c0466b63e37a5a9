"""A consumed batch of feed records is recorded in runs: consecutive valid events that create
no case go in one multi-row insert, everything else on its own, and the outcome is what
recording each record on its own in turn gives — statuses, row order, audit order — on SQLite
and PostgreSQL. A run the database refuses is recorded one by one, so only the bad record is
refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.cloudevents import validate_event
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.ingest.feeds import ingest_values
from services.ingest.recording import record_run
from tests.conftest import CLOCK_T0
from tests.integration.test_pipeline import arrested, crime_recorded

NOW = CLOCK_T0
SKEW = timedelta(minutes=5)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def value(record: dict[str, Any]) -> tuple[str, bytes]:
    return ("police", json.dumps(record).encode())


async def test_a_batch_is_recorded_in_runs_as_each_record_on_its_own(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    earlier = arrested("01AB1000124", "k0")
    async with sessions.begin() as session:
        await ingest_values(
            session,
            [value(earlier), value(arrested("01AB1000124", "k9"))],
            now=NOW,
            way_in="kafka",
            max_skew=SKEW,
        )
    changed = dict(earlier, time=earlier["time"].replace("Z", ".5Z"))
    no_type = {k: v for k, v in arrested("01AB1000224", "k5").items() if k != "type"}
    batch = [
        arrested("01AB1000124", "k1"),
        arrested("01AB1000124", "k2"),
        crime_recorded("01AB1000224", "k3"),  # creates a case: on its own, in its place
        arrested("01AB1000124", "k1"),  # the same pair again in the batch
        no_type,  # not an event
        arrested("01AB1000224", "k4"),
        changed,  # k0 again, with other words
        arrested("01AB1000124", "k9"),  # recorded before
    ]
    async with sessions.begin() as session:
        outcomes = await ingest_values(
            session, [value(r) for r in batch], now=NOW, way_in="kafka", max_skew=SKEW
        )
    assert [o.status for o in outcomes] == [
        "accepted", "accepted", "accepted", "duplicate", "invalid", "accepted", "conflict",
        "duplicate",
    ]  # fmt: skip
    async with sessions() as session:
        recorded = (
            await session.scalars(select(m.CaseEvent.event_id).order_by(m.CaseEvent.id))
        ).all()
        trail = [
            (entry.action, entry.case_event_id)
            for entry in await session.scalars(select(m.AuditEntry).order_by(m.AuditEntry.seq))
        ][2:]  # after the two recorded before
        rejected = (
            await session.scalars(
                select(m.RejectedRecord.reason_code).order_by(m.RejectedRecord.id)
            )
        ).all()
    assert recorded == ["k0", "k9", "k1", "k2", "k3", "k4"]  # in the records' order
    ids = {o.case_event_id for o in outcomes if o.status == "accepted"}
    assert [action for action, _ in trail] == [
        "event.recorded", "event.recorded", "event.recorded", "event.rejected", "event.recorded",
        "event.rejected",
    ]  # fmt: skip
    assert {case_event for _, case_event in trail if case_event is not None} == ids
    assert rejected == ["invalid_field", "conflicting_duplicate"]


async def test_a_run_is_one_insert_however_long(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    inserts: list[str] = []

    def count(*args: Any) -> None:
        statement = args[2].lstrip().upper()
        if statement.startswith("INSERT INTO CASE_EVENTS"):
            inserts.append(statement)

    batch = [value(arrested("01AB1000124", f"r{n}")) for n in range(300)]
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with sessions.begin() as session:
            outcomes = await ingest_values(session, batch, now=NOW, way_in="kafka", max_skew=SKEW)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert [o.status for o in outcomes] == ["accepted"] * 300
    assert len(inserts) == 1


@pytest.mark.postgres
async def test_a_run_the_database_refuses_is_recorded_one_by_one(pg_url: str) -> None:
    engine = make_engine(pg_url)
    await upgrade(engine)
    try:
        nul = arrested("01AB1000124", "n2")
        nul["source"] = "police/0\u0000"  # valid JSON; PostgreSQL text cannot hold NUL
        offered = [arrested("01AB1000124", "n1"), nul, arrested("01AB1000124", "n3")]
        run: list[tuple[object, Any, bytes, str | None]] = [
            (obj, validate_event(obj, now=NOW, max_skew=SKEW), json.dumps(obj).encode(), "police")
            for obj in offered
        ]
        async with session_factory(engine).begin() as session:
            outcomes = await record_run(session, run, now=NOW, way_in="kafka", max_skew=SKEW)
        assert [o.status for o in outcomes] == ["accepted", "invalid", "accepted"]
        async with session_factory(engine)() as session:
            kept = (await session.scalars(select(m.RejectedRecord))).one()
            recorded = (
                await session.scalars(select(m.CaseEvent.event_id).order_by(m.CaseEvent.id))
            ).all()
        assert kept.reason_code == "unstorable"
        assert recorded == ["n1", "n3"]
    finally:
        await engine.dispose()
