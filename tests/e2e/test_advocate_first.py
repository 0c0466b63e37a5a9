"""Distressing news under a clock set from outside the process, through the real broker and
PostgreSQL: the advocate is told first, the survivor's message is held, the supervisor is
alerted at half the window, and a detail-free fallback goes before the deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from services import demo
from services.core.clock import write_clock_file
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.embedded_broker import free_port
from tests.e2e.processes import CarehubProcess, base_env


async def _seeded(pg_url: str, at: Any) -> Any:
    engine = make_engine(pg_url)
    await upgrade(engine)
    async with session_factory(engine).begin() as session:
        await demo.seed(session, at)
    return engine


async def _settle(sessions: Any, at: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await demo.settled(sessions, demo.DEMO_URN, at):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the stack did not settle at {at}")


async def _nfa_rows(sessions: Any) -> dict[str, m.Notification]:
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(m.Notification).where(m.Notification.event_id == "demo-0003")
            )
        ).all()
    return {row.template: row for row in rows}


def _start(pg_url: str, clock: Path, cwd: Path) -> CarehubProcess:
    env = base_env(
        CAREHUB_DATABASE_URL=pg_url,
        CAREHUB_CLOCK_FILE=str(clock),
        CAREHUB_EMBEDDED_BROKER_PORT=str(free_port()),
        CAREHUB_HTTP_PORT="0",
        CAREHUB_KAFKA_SESSION_TIMEOUT_MS="3000",
        CAREHUB_DISPATCH_INTERVAL_MS="50",
    )
    return CarehubProcess("run", ["run"], env, cwd).start()


async def test_held_news_escalates_then_falls_back(pg_url: str, tmp_path: Path) -> None:
    steps = demo.script()
    clock = tmp_path / "clock"
    write_clock_file(clock, steps[0].at)
    engine = await _seeded(pg_url, steps[0].at)
    sessions = session_factory(engine)
    proc = _start(pg_url, clock, tmp_path)
    try:
        for step in steps:
            write_clock_file(clock, step.at)
            await demo.post_events(str(proc.address), step.events)
            await _settle(sessions, step.at)
            if step.events and step.events[0]["id"] == "demo-0003":
                rows = await _nfa_rows(sessions)
                assert rows["advocate_tell_first"].status == "delivered"
                assert rows["survivor_get_in_touch"].status == "held"
                assert rows["survivor_get_in_touch"].hold_reason == "advocate_first"
                assert rows["supervisor_hold_alert"].status == "scheduled"
        rows = await _nfa_rows(sessions)
        async with sessions() as session:
            actions = set((await session.scalars(select(m.AuditEntry.action))).all())
    finally:
        proc.stop()
        await engine.dispose()
    told, held, alert = (
        rows["advocate_tell_first"],
        rows["survivor_get_in_touch"],
        rows["supervisor_hold_alert"],
    )
    assert told.informed_at == steps[3].at  # the advocate, at once (Wed 10:00)
    assert alert.status == "delivered" and alert.informed_at == steps[4].at  # Thu 05:00
    assert held.status == "delivered" and held.informed_at == steps[5].at  # Thu 12:00
    assert held.due_by is not None and held.informed_at < held.due_by
    assert {"decision.hold", "notification.fallback_released"} <= actions


async def test_alert_is_cancelled_once_the_survivor_was_told(pg_url: str, tmp_path: Path) -> None:
    steps = demo.script()
    clock = tmp_path / "clock"
    write_clock_file(clock, steps[0].at)
    engine = await _seeded(pg_url, steps[0].at)
    sessions = session_factory(engine)
    proc = _start(pg_url, clock, tmp_path)
    try:
        for step in steps[:4]:
            write_clock_file(clock, step.at)
            await demo.post_events(str(proc.address), step.events)
            await _settle(sessions, step.at)
        # The advocate told her in person (what the portal will record).
        async with sessions.begin() as session:
            held = (
                await session.scalars(
                    select(m.Notification).where(
                        m.Notification.event_id == "demo-0003",
                        m.Notification.template == "survivor_get_in_touch",
                    )
                )
            ).one()
            held.status = "told_in_person"
        for step in steps[4:]:
            write_clock_file(clock, step.at)
            await _settle(sessions, step.at)
        await asyncio.sleep(0.5)
        rows = await _nfa_rows(sessions)
    finally:
        proc.stop()
        await engine.dispose()
    assert rows["supervisor_hold_alert"].status == "cancelled"
    assert rows["supervisor_hold_alert"].status_reason == "hold_resolved"
    assert rows["survivor_get_in_touch"].status == "told_in_person"
