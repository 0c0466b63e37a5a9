"""`carehub bench …`: measured performance, figures as JSON on the last line.

`bench ingest`: native police records validated, recorded and published per second, from a
file drop and over concurrent signed HTTP batches, on a throw-away PostgreSQL database.

`bench notifier`: messages per second through the Twilio channel against the stand-in (in its
own process, on the other core), rate limiting off. It seeds survivors with safe numbers and N
due text messages in a throw-away PostgreSQL database, runs the dispatcher and the notifier on
the embedded broker, and measures until every message was accepted by the stand-in and recorded
`sent` (or `delivered`, when its receipt came back first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import func, insert, select

from services.core.db import models as m
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.settings import load_settings

FAKE_NUMBERS = [f"+447700900{n:03d}" for n in range(1000)]


@contextlib.asynccontextmanager
async def throwaway_database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards."""
    name = f"carehub_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        yield f"postgresql+asyncpg://{base}/{name}"
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.contextmanager
def standin_process(account_sid: str, auth_token: str) -> Any:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "twilio-standin",
            "--port",
            str(port),
            "--account-sid",
            account_sid,
            "--auth-token",
            auth_token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("the Twilio stand-in did not start")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _rss_mb_of(pid: int) -> float | None:
    """Peak resident memory of another process (VmHWM), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def _seed(sessions: Any, now: datetime, messages: int, survivors: int) -> None:
    async with sessions.begin() as session:
        team = m.Team(name="Bench team", is_default=True)
        session.add(team)
        await session.flush()
        isva = m.Advocate(
            staff_ref="BENCH-1",
            role="isva",
            team_id=team.id,
            display_name="Alex Example",
            email="alex.isva@example.org",
            phone="+447700900002",
            created_at=now,
        )
        session.add(isva)
        case = m.Case(urn="01BN1234567", opened_at=now)
        session.add(case)
        await session.flush()
        event = m.CaseEvent(
            source="bench/01",
            event_id="bench-1",
            type="police.suspect_arrested",
            urn=case.urn,
            event_time=now,
            received_at=now,
            payload={"data": {}},
            payload_hash="0" * 64,
            status="processed",
            processed_at=now,
        )
        session.add(event)
        await session.flush()
        ids: list[int] = []
        for n in range(survivors):
            survivor = m.Survivor(
                party_ref=f"bench:{n}",
                full_name="Sam Example",
                preferred_name="Sam",
                created_at=now,
            )
            session.add(survivor)
            await session.flush()
            ids.append(survivor.id)
            session.add_all(
                [
                    m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=now),
                    m.AdvocateAssignment(
                        survivor_id=survivor.id,
                        advocate_id=isva.id,
                        valid_from=now - timedelta(days=1),
                    ),
                    m.ContactPreference(
                        survivor_id=survivor.id,
                        version=1,
                        recorded_at=now,
                        recorded_by="bench",
                        reason_code="bench",
                        phone=FAKE_NUMBERS[n % len(FAKE_NUMBERS)],
                        sms_safe=True,
                        safe_window_start=datetime.min.time(),
                        safe_window_end=datetime.max.time().replace(microsecond=0),
                    ),
                ]
            )
        rows = [
            {
                "id": str(uuid.uuid4()),
                "case_event_id": event.id,
                "case_id": case.id,
                "event_source": event.source,
                "event_id": event.event_id,
                "recipient_role": "survivor",
                "survivor_id": ids[n % survivors],
                "channel": "sms",
                "language": "en",
                "detail": "discreet",
                "template": "survivor_case_update",
                "template_version": 1,
                "rules_version": "bench",
                "rule": f"bench:{n}",
                "status": "scheduled",
                "send_at": now,
                "due_by": now + timedelta(days=1),
                "created_at": now,
                "updated_at": now,
                "attempts": 0,
            }
            for n in range(messages)
        ]
        for start in range(0, len(rows), 1000):
            await session.execute(insert(m.Notification), rows[start : start + 1000])


async def bench_notifier(
    messages: int, survivors: int, admin_dsn: str, callbacks: bool, give_up_after_s: float
) -> dict[str, Any]:
    from services import notifier
    from services.core.runner import running_stack
    from services.rules import dispatcher

    account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    survivors = max(1, min(survivors, messages))
    async with throwaway_database(admin_dsn) as database_url:
        embedded = EmbeddedBroker(free_port())
        await embedded.astart()
        try:
            with standin_process(account_sid, auth_token) as (standin_url, standin_pid):
                async with httpx.AsyncClient(base_url=standin_url) as control:
                    await control.post("/_standin/control", json={"callbacks": callbacks})
                http_port = free_port()
                settings = load_settings(
                    env="test",
                    database_url=database_url,
                    kafka_bootstrap=embedded.bootstrap,
                    http_port=http_port,
                    var_dir=f"/tmp/carehub-bench-{os.getpid()}",
                    sms_channel="twilio",
                    twilio_account_sid=account_sid,
                    twilio_auth_token=auth_token,
                    twilio_from="+447700900001",
                    twilio_base_url=standin_url,
                    public_base_url=f"http://127.0.0.1:{http_port}",
                    sms_allowlist=",".join(FAKE_NUMBERS),
                    sms_rate_per_s=0,
                    log_level="WARNING",
                    kafka_session_timeout_ms=6000,
                )
                async with running_stack(
                    settings, [dispatcher, notifier], own_broker=False
                ) as stack:
                    sessions = stack.runtime.sessions
                    now = stack.runtime.clock.now()
                    await _seed(sessions, now, messages, survivors)
                    started = time.perf_counter()
                    done = 0
                    deadline = started + give_up_after_s
                    while time.perf_counter() < deadline:
                        async with sessions() as session:
                            done = int(
                                await session.scalar(
                                    select(func.count()).where(
                                        m.Notification.status.in_(("sent", "delivered", "failed"))
                                    )
                                )
                                or 0
                            )
                        if done >= messages:
                            break
                        await asyncio.sleep(0.05)
                    elapsed = time.perf_counter() - started
                    async with sessions() as session:
                        rows = (
                            await session.execute(
                                select(m.Notification.status, m.Notification.sent_at)
                            )
                        ).all()
                async with httpx.AsyncClient(base_url=standin_url) as control:
                    stats = (await control.get("/_standin/stats")).json()
                standin_rss = _rss_mb_of(standin_pid)
        finally:
            await embedded.astop()
    sent = [r.sent_at for r in rows if r.status in ("sent", "delivered") and r.sent_at]
    latencies = sorted(max(0.0, (s - now).total_seconds()) * 1000 for s in sent)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return float(round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1))

    return {
        "bench": "notifier",
        "messages": messages,
        "survivors": survivors,
        "completed": done,
        "sent": len(sent),
        "failed": sum(1 for r in rows if r.status == "failed"),
        "seconds": round(elapsed, 3),
        "messages_per_s": round(len(sent) / elapsed, 1) if elapsed else None,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "standin_creates": stats.get("creates_accepted"),
        "callbacks": callbacks,
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "standin_rss_mb": standin_rss,
        "cpus": os.cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_police_file(path: Any, events: int, *, first_serial: int = 10000) -> int:
    """A native police JSON-lines drop: per case one crime recorded (one victim), then arrests.

    Fake data only: Ofcom drama-range numbers, example.org addresses, URNs 01BN<serial><yy>.
    """
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        case = 0
        while written < events:
            urn = f"01BN{first_serial + case:05d}26"
            base = {"source_system": "NICHE", "force_code": "01", "urn": urn}
            out.write(
                json.dumps(
                    {
                        **base,
                        "record_type": "CRIME_RECORDED",
                        "record_id": f"B{first_serial + case}-CR",
                        "occurrence_ref": f"CR-{case:07d}-26",
                        "event_dt": "2026-11-02T09:30:00Z",
                        "received_dt": "2026-11-02T09:45:00Z",
                        "offence_group": "SXO",
                        "parties": [
                            {
                                "party_ref": f"P-{case}",
                                "party_role": "VICTIM",
                                "forenames": "Sam",
                                "surname": "Example",
                                "mobile": FAKE_NUMBERS[case % len(FAKE_NUMBERS)],
                                "ok_to_text": "Y",
                                "consent_to_refer": "Y",
                            }
                        ],
                    }
                )
                + "\n"
            )
            written += 1
            for n in range(min(3, events - written)):
                out.write(
                    json.dumps(
                        {
                            **base,
                            "record_type": "ARREST",
                            "record_id": f"B{first_serial + case}-ARR-{n}",
                            "event_dt": "2026-11-03T14:05:00Z",
                            "arrest_dt": "2026-11-03T13:50:00",
                        }
                    )
                    + "\n"
                )
                written += 1
            case += 1
    return written


async def bench_ingest(events: int, admin_dsn: str, concurrency: int) -> dict[str, Any]:
    """Events validated, recorded and published per second: a file drop, then concurrent HTTP."""
    import tempfile
    from pathlib import Path

    from services import ingest
    from services.core.runner import running_stack
    from services.ingest.client import send_file
    from services.ingest.feeds import sign

    secret = secrets.token_hex(16)
    figures: dict[str, Any] = {"bench": "ingest", "events": events, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        drop = Path(tmp) / "police.jsonl"
        write_police_file(drop, events)
        second = Path(tmp) / "police-http.jsonl"
        write_police_file(second, events, first_serial=60000)
        async with throwaway_database(admin_dsn) as database_url:
            embedded = EmbeddedBroker(free_port())
            await embedded.astart()
            try:
                settings = load_settings(
                    database_url=database_url,
                    kafka_bootstrap=embedded.bootstrap,
                    http_port=0,
                    var_dir=tmp,
                    feed_secret_police=secret,
                    ingest_feed_topics=False,
                    log_level="WARNING",
                )
                async with running_stack(settings, [ingest], own_broker=False) as stack:
                    started = time.perf_counter()
                    counts = await send_file(
                        stack.url, drop, feed="police", secret=secret, batch_size=500
                    )
                    file_s = time.perf_counter() - started
                    figures["file"] = {
                        **counts,
                        "seconds": round(file_s, 3),
                        "events_per_s": round(counts["accepted"] / file_s, 1),
                    }
                    lines = second.read_text().splitlines()
                    batches = [lines[i : i + 500] for i in range(0, len(lines), 500)]
                    accepted = 0
                    slots = asyncio.Semaphore(concurrency)
                    async with httpx.AsyncClient(base_url=stack.url, timeout=120) as client:

                        async def post(batch: list[str]) -> int:
                            body = ("[" + ",".join(batch) + "]").encode()
                            stamp = str(int(time.time()))
                            async with slots:
                                response = await client.post(
                                    "/v1/feeds/police/events",
                                    content=body,
                                    headers={
                                        "content-type": "application/json",
                                        "x-carehub-timestamp": stamp,
                                        "x-carehub-signature": sign(secret, stamp, body),
                                    },
                                )
                            return int(response.json()["counts"]["accepted"])

                        started = time.perf_counter()
                        for n in await asyncio.gather(*(post(b) for b in batches)):
                            accepted += n
                        http_s = time.perf_counter() - started
                    figures["http"] = {
                        "accepted": accepted,
                        "concurrency": concurrency,
                        "seconds": round(http_s, 3),
                        "events_per_s": round(accepted / http_s, 1),
                    }
            finally:
                await embedded.astop()
    figures["events_per_s"] = figures["file"]["events_per_s"]
    figures["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return figures
