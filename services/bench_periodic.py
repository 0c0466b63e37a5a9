"""`carehub bench periodic`: what the dispatcher's periodic work costs against a long history.

A national deployment keeps years of notifications (`CAREHUB_RETENTION_DAYS`, seven years by
default: hundreds of millions of rows). The dispatcher's beats (the gauges, the re-drive, the
silence check-ins, the feedback questions...) run every few seconds or minutes whatever the
traffic, so a beat that reads the whole history costs more every day. This seeds a throw-away
PostgreSQL database with `history` finished events and their notifications, spread over a year,
and times each beat with nothing left to do: what stays is the cost of asking.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Interval, bindparam, update

from services.bench import _seed_pipeline, throwaway_database
from services.core import gauges
from services.core.audit_seal import FULL_SWEEP_EVERY, HORIZON, SealCursor, seal_pending
from services.core.calendar import load_calendar
from services.core.clock import SystemClock
from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.db.protected import seal
from services.core.keys import configure_keys
from services.core.runtime import Runtime
from services.core.settings import load_settings
from services.rules.actions import carry_out_actions
from services.rules.dispatcher import (
    SEAL_BATCH,
    alert_parked,
    redrive,
    release_due,
    release_fallbacks,
    seal_audit,
)
from services.rules.feedback import ask_for_feedback
from services.rules.ruleset import RuleSet, load_rules
from services.rules.silence import prompt_silence

Beat = Callable[[], Awaitable[Any]]

# The history's events (half of them key stages) and their notifications, in SQL: a million rows
# take seconds this way.
# Every event has its survivor's text (delivered; one in fifty failed) and, every other event,
# their advocate's e-mail (sent: SMTP has no receipts), with one attempt each.
_EVENTS = """
INSERT INTO case_events (source, event_id, type, urn, event_time, received_at, payload,
                         payload_hash, status, published_at, processed_at, rules_version)
SELECT 'bench.history', 'h-' || g,
       (ARRAY['police.suspect_arrested', 'police.suspect_interviewed',
              'court.hearing_scheduled', 'police.suspect_charged'])[1 + g % 4],
       c.urn, t, t, $3::bytea,
       md5(g::text) || md5(g::text), 'processed', t, t, 'history'
FROM (SELECT g, $2::timestamptz - make_interval(secs => 31536000.0 * ($1 - g) / $1) AS t,
             (SELECT array_agg(urn ORDER BY id) FROM cases) AS urns
      FROM generate_series(1, $1) AS g) AS s,
     LATERAL (SELECT s.urns[1 + s.g % array_length(s.urns, 1)] AS urn) AS c
"""
_NOTIFICATIONS = """
INSERT INTO notifications (id, case_event_id, case_id, event_source, event_id, recipient_role,
                           survivor_id, advocate_id, channel, language, detail, template,
                           template_version, rules_version, rule, status, status_reason,
                           send_at, due_by, created_at, updated_at, queued_at, sent_at,
                           informed_at, provider_ref, attempts)
SELECT md5(e.id::text || r.role)::uuid::text, e.id, c.id, e.source, e.event_id, r.role,
       cs.survivor_id, CASE WHEN r.role = 'survivor' THEN NULL ELSE aa.advocate_id END,
       CASE WHEN r.role = 'survivor' THEN 'sms' ELSE 'email' END, 'en', 'discreet',
       CASE WHEN r.role = 'survivor' THEN 'survivor_arrest' ELSE 'advocate_arrest' END,
       1, 'history', 'history', r.status, NULL,
       e.received_at, e.received_at + interval '1 day', e.received_at, e.received_at,
       e.received_at, e.received_at,
       CASE WHEN r.status = 'failed' THEN NULL ELSE e.received_at + interval '1 minute' END,
       'hist-' || e.id || r.role, 1
FROM case_events e
JOIN cases c ON c.urn = e.urn
JOIN case_survivors cs ON cs.case_id = c.id
JOIN advocate_assignments aa ON aa.survivor_id = cs.survivor_id
CROSS JOIN LATERAL (
    SELECT 'survivor' AS role, CASE WHEN e.id % 50 = 0 THEN 'failed' ELSE 'delivered' END
        AS status
    UNION ALL
    SELECT 'advocate', 'sent' WHERE e.id % 2 = 0
) AS r
WHERE e.source = 'bench.history'
"""
_ATTEMPTS = """
INSERT INTO delivery_attempts (notification_id, attempt_no, channel, started_at, finished_at,
                               outcome, provider_ref)
SELECT id, 1, channel, sent_at, sent_at, CASE WHEN status = 'failed' THEN 'failed' ELSE 'sent' END,
       provider_ref
FROM notifications WHERE rules_version = 'history'
"""
# One decision a notification (`send`), as the rules consumer writes them.
_DECISIONS = """
INSERT INTO decisions (case_event_id, case_id, outcome, recipient_role, recipient_id,
                       survivor_id, channel, template, send_at, due_by, rule, notification_id,
                       decided_at)
SELECT case_event_id, case_id, 'send', recipient_role, coalesce(advocate_id, survivor_id),
       survivor_id, channel, template, send_at, due_by, rule, id, created_at
FROM notifications WHERE rules_version = 'history'
"""
# One audit row a notification (its last step; a real one has three or four).
_AUDIT = """
INSERT INTO audit_log (at, actor, action, case_id, case_event_id, notification_id, codes)
SELECT sent_at, 'notifier', 'notification.' || status, case_id, case_event_id, id, '{}'::json
FROM notifications WHERE rules_version = 'history'
"""


async def seed_history(dsn: str, events: int, now: datetime) -> dict[str, int]:
    """`events` finished events over the year before `now`, with their notifications."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # One sealed payload for all of them: a beat that reads one can decrypt it.
            await conn.execute(_EVENTS, events, now, seal(b"{}"))
            await conn.execute(_NOTIFICATIONS)
            await conn.execute(_ATTEMPTS)
            await conn.execute(_DECISIONS)
            await conn.execute(_AUDIT)
        await conn.execute("ANALYZE")
        counts = {}
        tables = ("case_events", "notifications", "decisions", "delivery_attempts", "audit_log")
        for table in tables:
            counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
        return counts
    finally:
        await conn.close()


class NoBroker:
    """The beats have nothing to publish against a finished history; if one tried, the figure
    would not be what it claims."""

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a periodic beat published against a finished history")


async def finished_history(rt: Runtime, rules: RuleSet, cases: int, events: int) -> dict[str, int]:
    """`cases` open a year, and `events` finished events on them over that year, with nothing
    left to do: the check-ins and feedback questions the year called for are written (and
    cancelled, so nothing is due). Returns the rows of the history's tables."""
    now = rt.clock.now()
    # Opened a year ago, so every survivor is due a check-in if nothing was said.
    await _seed_pipeline(rt.sessions, now.replace(year=now.year - 1), cases)
    url = rt.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    rows = await seed_history(url, events, now)
    await prompt_silence(rt, rules)
    await ask_for_feedback(rt, rules)
    async with rt.sessions.begin() as session:
        await session.execute(
            update(m.Notification)
            .where(m.Notification.rules_version != "history")
            .values(status="cancelled")
        )
    while await seal_audit(rt):  # the history sealed into the chain, as it would be
        pass
    # The marks as a running system has them: its candidate matured (`HORIZON` on) and two
    # hourly sweeps made since, so that the sweeps' floor is at the marks.
    head = m.AuditChainHead
    await _seal_after(rt, head.candidate_at, HORIZON)
    for _ in range(2):
        await _seal_after(rt, head.full_sweep_at, FULL_SWEEP_EVERY)
    return rows


async def _seal_after(rt: Runtime, mark: Any, by: timedelta) -> int:
    """A round from the marks, with one of the sealer's marks made `by` older first."""
    async with rt.sessions.begin() as session:
        await session.execute(
            update(m.AuditChainHead).values({mark: mark - bindparam(None, by, type_=Interval())})
        )
    return await seal_pending(rt.sessions, now=rt.clock.now(), batch=SEAL_BATCH)


def beats(rt: Runtime, rules: RuleSet) -> dict[str, Beat]:
    """The dispatcher's periodic work (`services.rules.dispatcher.run_loop`), one call each."""

    async def sample() -> None:
        async with rt.sessions() as session:
            await gauges.sample(session, rt.clock.now())

    async def from_marks() -> None:
        # A round from the marks, which a caught-up sealer makes once a minute (`SealCursor`).
        await seal_pending(rt.sessions, now=rt.clock.now(), batch=SEAL_BATCH)

    async def sweep() -> None:
        # The sealer's full sweep, which it makes once every `FULL_SWEEP_EVERY`.
        await _seal_after(rt, m.AuditChainHead.full_sweep_at, FULL_SWEEP_EVERY)

    return {
        "release_due": lambda: release_due(rt),
        "release_fallbacks": lambda: release_fallbacks(rt),
        "carry_out_actions": lambda: carry_out_actions(rt),
        "seal_audit": lambda: seal_audit(rt),
        "seal_audit_from_marks": from_marks,
        "seal_audit_full_sweep": sweep,
        "redrive": lambda: redrive(rt),
        "alert_parked": lambda: alert_parked(rt),
        "gauges": sample,
        "prompt_silence": lambda: prompt_silence(rt, rules),
        "ask_for_feedback": lambda: ask_for_feedback(rt, rules),
    }


async def _time(beat: Beat, repeats: int) -> float:
    taken = []
    for _ in range(repeats):
        started = time.perf_counter()
        await beat()
        taken.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(taken), 2)


async def bench_periodic(
    history: int, cases: int, admin_dsn: str, repeats: int = 5
) -> dict[str, Any]:
    """Milliseconds each periodic beat takes with `history` past events on `cases` cases."""
    figures: dict[str, Any] = {"bench": "periodic", "history_events": history, "cases": cases}
    with tempfile.TemporaryDirectory(prefix="carehub-bench-") as tmp:
        async with throwaway_database(admin_dsn) as database_url:
            settings = load_settings(
                var_dir=Path(tmp), database_url=database_url, log_level="WARNING"
            )
            configure_keys(settings)
            engine = make_engine(database_url)
            try:
                await upgrade(engine)
                rt = Runtime(
                    settings,
                    engine,
                    session_factory(engine),
                    SystemClock(),
                    load_calendar(None),
                    NoBroker(),  # type: ignore[arg-type]
                )
                rules = load_rules(settings.rules_file)
                started = time.perf_counter()
                figures["rows"] = await finished_history(rt, rules, cases, history)
                figures["seed_s"] = round(time.perf_counter() - started, 1)
                figures["ms"] = {
                    name: await _time(beat, repeats) for name, beat in beats(rt, rules).items()
                }
            finally:
                await engine.dispose()
    # What the beats cost a minute at this configuration's intervals: every dispatcher pass
    # while idle, the re-drive beat (re-drive, parked alert, gauges), the seal (from the marks
    # once a minute), its full sweep and the silence check (check-ins and feedback).
    ms = figures["ms"]
    each = {
        "pass": 60_000 / settings.dispatch_interval_ms,
        "redrive": 60 / max(1, settings.redrive_after_s // 4),
        "seal": 60 / settings.audit_seal_interval_s,
        "marks": 60 / SealCursor.every,
        "sweep": 60 / FULL_SWEEP_EVERY.total_seconds(),
        "silence": 60 / settings.silence_check_s,
    }
    figures["ms_per_minute"] = round(
        each["pass"] * (ms["release_due"] + ms["release_fallbacks"] + ms["carry_out_actions"])
        + (each["seal"] - each["marks"]) * ms["seal_audit"]
        + each["marks"] * ms["seal_audit_from_marks"]
        + each["sweep"] * ms["seal_audit_full_sweep"]
        + each["redrive"] * (ms["redrive"] + ms["alert_parked"] + ms["gauges"])
        + each["silence"] * (ms["prompt_silence"] + ms["ask_for_feedback"]),
        1,
    )
    return figures
