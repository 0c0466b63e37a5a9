"""The dispatcher's periodic beats must not read the history whole: the tables that grow with
every event keep seven years of it, and the beats run every few seconds whatever the traffic.

Each beat runs against a small finished history on PostgreSQL while its statements are
captured; each is then explained with sequential scans switched off, so that the planner takes
an index wherever one answers the question. A scan of a growing table with no index condition
(or with no index at all) is a read of the whole history.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import event, select

from services.bench_periodic import Beat, NoBroker, beats, finished_history
from services.core import gauges
from services.core.clock import FixedClock
from services.core.db import models as m
from services.core.runtime import Runtime
from services.portal import views
from services.portal.views import operations
from services.reports.compliance import compliance_report
from services.rules.ruleset import RuleSet, load_rules
from tests.integration.runtimes import migrated_runtime
from tests.integration.test_bench_pipeline import run_bench

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
# Tables that grow with every event (the others grow with people, cases and staff).
GROWING = {"case_events", "notifications", "delivery_attempts", "decisions", "audit_log"}
# A partial index holds a bounded part of its table: reading it whole is fine.
BOUNDED_INDEXES = {
    "ix_notifications_not_told",  # the work in hand
    "ix_audit_log_parked_alerts",  # one row for each event that ever waited too long for its case
}


def _whole_reads(plan: dict[str, Any], limited: bool = False) -> list[str]:
    """The scans of growing tables in this plan that read them whole: not by an index
    condition, nor in an index's order under a limit (`max(seq)`), nor of a bounded index."""
    found = []
    if plan.get("Relation Name") in GROWING:
        bounded = (
            "Index Cond" in plan
            or "Recheck Cond" in plan
            or plan.get("Index Name") in BOUNDED_INDEXES
            or (limited and "Index Name" in plan)
        )
        if not bounded:
            found.append(f"{plan['Node Type']} on {plan['Relation Name']}")
    # A limit bounds a scan right under it (through the row locks), not a join or a sort's.
    below = plan["Node Type"] == "Limit" or (limited and plan["Node Type"] == "LockRows")
    for child in plan.get("Plans", []):
        found += _whole_reads(child, below)
    return found


def _thrown_away(plan: dict[str, Any]) -> list[str]:
    """The scans of growing tables in this (analysed) plan that read rows only to drop them."""
    found = []
    dropped = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    if plan.get("Relation Name") in GROWING and dropped:
        found.append(f"{plan['Node Type']} on {plan['Relation Name']} dropped {dropped} rows")
    for child in plan.get("Plans", []):
        found += _thrown_away(child)
    return found


@contextlib.asynccontextmanager
async def finished(
    make_settings: Any, pg_url: str, *, cases: int, events: int
) -> AsyncIterator[tuple[Runtime, RuleSet]]:
    """A runtime on a new PostgreSQL database holding a finished history (`finished_history`)."""
    settings = make_settings(database_url=pg_url)
    rules = load_rules(settings.rules_file)
    async with migrated_runtime(settings, FixedClock(NOW), NoBroker()) as rt:
        await finished_history(rt, rules, cases=cases, events=events)
        yield rt, rules


async def whole_reads(
    rt: Runtime, calls: dict[str, Beat], *, analyse: bool = False
) -> tuple[set[str], list[str]]:
    """Run each call while capturing its statements, then explain each: the names of the calls
    that ran a statement, and every whole read of a growing table (named by its call). With
    `analyse`, the statements are run again, and a growing table's rows read only to be
    filtered away count too (a read by a condition that grows with the history)."""
    captured: list[tuple[str, str, Any]] = []
    name = ""

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("INSERT", "BEGIN", "COMMIT", "SAVEPOINT")):
            captured.append((name, statement, parameters))

    event.listen(rt.engine.sync_engine, "before_cursor_execute", capture)
    try:
        for name, call in calls.items():  # noqa: B007 - read by capture
            await call()
    finally:
        event.remove(rt.engine.sync_engine, "before_cursor_execute", capture)
    offenders = []
    async with rt.engine.connect() as conn:
        # On tables this small the planner would rightly read them whole; told not to, it
        # reaches each through an index condition wherever an index can answer.
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
            await conn.exec_driver_sql(f"SET {setting} = off")
        for called, statement, parameters in captured:
            how = "ANALYZE, FORMAT JSON" if analyse else "FORMAT JSON"
            explained = await conn.exec_driver_sql(f"EXPLAIN ({how}) {statement}", parameters)
            plan = explained.scalar_one()[0]["Plan"]
            for whole in _whole_reads(plan) + (_thrown_away(plan) if analyse else []):
                offenders.append(f"{called}: {whole} in {statement[:160]}")
        await conn.rollback()
    return {called for called, _, _ in captured}, offenders


async def test_no_periodic_beat_reads_a_growing_table_whole(
    pg_url: str, make_settings: Any
) -> None:
    async with finished(make_settings, pg_url, cases=20, events=300) as (rt, rules):
        ran, offenders = await whole_reads(rt, beats(rt, rules))
    assert ran >= {"gauges", "prompt_silence", "redrive", "seal_audit_full_sweep"}
    assert offenders == [], "\n".join(offenders)


async def test_the_operations_page_does_not_read_a_growing_table_whole(
    pg_url: str, make_settings: Any
) -> None:
    """Staff open it when something is wrong: it lists the last fortnight's failed and
    in-doubt deliveries, not by reading every failure since the service began."""
    # A year of history: one text in fifty failed, nearly all of them long ago.
    async with finished(make_settings, pg_url, cases=5, events=300) as (rt, rules):

        async def page() -> None:
            async with rt.sessions() as session:
                await operations(session, NOW)

        ran, offenders = await whole_reads(rt, {"operations": page}, analyse=True)
    assert ran == {"operations"}
    assert offenders == [], "\n".join(offenders)


async def test_the_status_gauge_counts_only_what_nobody_has_been_told_of(
    pg_url: str, make_settings: Any
) -> None:
    async with finished(make_settings, pg_url, cases=5, events=40) as (rt, rules):
        async with rt.sessions.begin() as session:
            texts = (
                await session.scalars(
                    select(m.Notification)
                    .where(m.Notification.status == "delivered")
                    .order_by(m.Notification.id)
                    .limit(2)
                )
            ).all()
            # One waiting to go, one text sent and waiting for its receipt.
            texts[0].status, texts[0].informed_at = "queued", None
            texts[1].status, texts[1].informed_at = "sent", None
        async with rt.sessions() as session:
            figures = await gauges.sample(session, NOW)
    # The history's delivered texts, e-mails sent (and so told), failures and cancelled
    # prompts are final: counting them would read every notification ever made.
    assert figures["by_status"] == {"queued": 1, "sent": 1}
    assert REGISTRY.get_sample_value("carehub_notifications_by_status", {"status": "sent"}) == 1
    assert REGISTRY.get_sample_value("carehub_notifications_by_status", {"status": "held"}) == 0


def test_bench_periodic_prints_what_each_beat_costs_against_its_history() -> None:
    figures = run_bench("periodic", "--history", "300", "--cases", "12")
    # 300 events: every one's survivor text, every other one's advocate e-mail.
    assert figures["rows"]["case_events"] == 300
    assert figures["rows"]["notifications"] == 450
    assert set(figures["ms"]) == {
        "release_due",
        "release_fallbacks",
        "carry_out_actions",
        "seal_audit",
        "seal_audit_from_marks",
        "seal_audit_full_sweep",
        "redrive",
        "alert_parked",
        "gauges",
        "prompt_silence",
        "ask_for_feedback",
    }
    assert all(ms > 0 for ms in figures["ms"].values())
    assert figures["ms_per_minute"] > 0


async def test_the_compliance_report_does_not_read_a_growing_table_whole(
    pg_url: str, make_settings: Any
) -> None:
    """A quarter's report finds the quarter's duties among years of them."""
    async with finished(make_settings, pg_url, cases=5, events=300) as (rt, rules):

        async def report() -> None:
            async with rt.sessions() as session:
                figures = await compliance_report(
                    session, start=date(2026, 7, 1), end=date(2026, 9, 30), team_id=None, now=NOW
                )
                total = figures.total
                assert total.on_time + total.late + total.missed > 0  # the quarter's duties

        ran, offenders = await whole_reads(rt, {"compliance_report": report})
    assert ran == {"compliance_report"}
    assert offenders == [], "\n".join(offenders)


async def test_the_portal_views_do_not_read_a_growing_table_whole(
    pg_url: str, make_settings: Any
) -> None:
    """An advocate's caseload, a survivor's timeline and a supervisor's team view look at
    their own people's cases, not at everyone's history."""
    async with finished(make_settings, pg_url, cases=20, events=300) as (rt, rules):
        async with rt.sessions() as session:
            mine = sorted((await session.scalars(select(m.Survivor.id).limit(3))).all())

        def view(make: Any) -> Beat:
            async def run() -> None:
                async with rt.sessions() as session:
                    await make(session)

            return run

        ran, offenders = await whole_reads(
            rt,
            {
                "caseload": view(lambda s: views.caseload(s, mine, NOW)),
                "timeline": view(lambda s: views.timeline(s, mine[0], NOW)),
                "team_view": view(lambda s: views.team_view(s, mine, NOW)),
            },
        )
    assert ran == {"caseload", "timeline", "team_view"}
    assert offenders == [], "\n".join(offenders)
