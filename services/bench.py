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


# --- `bench pipeline` ------------------------------------------------------------------------
#
# One run: a throw-away database seeded with cases, survivors, advocates and preferences; the
# embedded broker; `carehub run` (every service, one process) as a child process, exactly as an
# operator starts it; N canonical events produced to `feeds.police`, the topic ingest consumes
# (one event per record, key: URN); and a wait until every resulting notification was handed
# to the outbox channel. Then the baseline: bare aiokafka reading the same records, and the same
# rows written with one executemany per table and batch, on a second throw-away database.

PIPELINE_TYPES = ("police.suspect_arrested", "police.suspect_interviewed")
PIPELINE_SOURCE = "police/01"
SERVICES_ALL = ("ingest", "rules", "dispatcher", "notifier", "portal")


def _urn(serial: int) -> str:
    return f"01BP{serial:07d}26"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _seed_pipeline(sessions: Any, now: datetime, cases: int) -> list[int]:
    """Cases with one survivor each, their ISVA and current preferences; per case how many
    notifications one of the bench's events makes (2: survivor and advocate; 1: the survivor
    chose key stages only, so only the advocate is told of a non-key-stage event)."""
    per_event: list[int] = []
    async with sessions.begin() as session:
        team = m.Team(name="Bench team", is_default=True)
        session.add(team)
        await session.flush()
        advocates = [
            m.Advocate(
                staff_ref=f"BENCH-{n}",
                role="supervisor" if n == 0 else "isva",
                team_id=team.id,
                display_name=f"Alex Example {n}",
                email=f"alex.{n}@example.org",
                phone="+447700900002",
                created_at=now,
            )
            for n in range(1 + max(1, cases // 50))
        ]
        session.add_all(advocates)
        await session.flush()
        team.supervisor_id = advocates[0].id
        for start in range(0, cases, 1000):
            chunk = range(start, min(cases, start + 1000))
            case_rows = [m.Case(urn=_urn(n), opened_at=now) for n in chunk]
            survivors = [
                m.Survivor(
                    party_ref=f"bench:{n}",
                    full_name="Sam Example",
                    preferred_name="Sam",
                    created_at=now,
                )
                for n in chunk
            ]
            session.add_all(case_rows + survivors)
            await session.flush()
            for n, case, survivor in zip(chunk, case_rows, survivors, strict=True):
                everything = n % 2 == 0
                per_event.append(2 if everything else 1)
                session.add_all(
                    [
                        m.CaseSurvivor(case_id=case.id, survivor_id=survivor.id, added_at=now),
                        m.AdvocateAssignment(
                            survivor_id=survivor.id,
                            advocate_id=advocates[1 + n % (len(advocates) - 1)].id,
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
                            frequency="all" if everything else "key_stages",
                        ),
                    ]
                )
            await session.flush()
    return per_event


def _pipeline_event(run: str, n: int, cases: int, at: datetime) -> tuple[str, dict[str, Any]]:
    """The n-th event of a run: immediate, non-distressing, for case n mod `cases`."""
    urn = _urn(n % cases)
    return urn, {
        "specversion": "1.0",
        "id": f"{run}-{n}",
        "source": PIPELINE_SOURCE,
        "type": PIPELINE_TYPES[(n // cases) % len(PIPELINE_TYPES)],
        "subject": urn,
        "time": _iso(at - timedelta(minutes=1)),
        "datacontenttype": "application/json",
        "data": {},
    }


@contextlib.contextmanager
def carehub_processes(env: dict[str, str], var_dir: Any, only: list[str] | None) -> Any:
    """`carehub run` (or one `carehub run --only X` per service) as child processes; yields
    {name: (pid, HTTP port)} once each printed its ready line."""
    from pathlib import Path

    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    ports: dict[str, int] = {}
    try:
        for name in only or ["all"]:
            args = [sys.executable, "-m", "services.cli", "run"]
            if name != "all":
                args += ["--only", name.rstrip("0123456789")]
            ports[name] = free_port()
            port_env = {**env, "CAREHUB_HTTP_PORT": str(ports[name])}
            logs[name] = Path(var_dir) / f"carehub-{name}.log"
            with open(logs[name], "wb") as out:
                procs[name] = subprocess.Popen(
                    args, env=port_env, stdout=out, stderr=subprocess.STDOUT
                )
        deadline = time.monotonic() + 60
        waiting = set(procs)
        while waiting and time.monotonic() < deadline:
            for name in list(waiting):
                if procs[name].poll() is not None:
                    tail = logs[name].read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"carehub {name} exited early:\n{tail}")
                if b"carehub ready" in logs[name].read_bytes():
                    waiting.discard(name)
            time.sleep(0.05)
        if waiting:
            raise RuntimeError(f"carehub {sorted(waiting)} did not become ready in 60 s")
        yield {name: (proc.pid, ports[name]) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _cpu_s_of(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="ascii") as comm:
                    if comm.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


class _CpuMeter:
    """CPU seconds used by each process of the run (and PostgreSQL's) between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        now = {name: _cpu_s_of(pid) or 0.0 for name, pid in self.pids.items()}
        # PostgreSQL: each backend by its pid, so one that ended in between counts nothing.
        now |= {f"postgres:{pid}": _cpu_s_of(pid) or 0.0 for pid in _postgres_pids()}
        return now

    def used(self) -> dict[str, float]:
        end = self._read()
        used = {
            name: end[name] - self.start.get(name, 0.0)  # a backend that began since: all of it
            for name in end
            if name in self.start or name.startswith("postgres:")
        }
        postgres = sum(v for k, v in used.items() if k.startswith("postgres:"))
        used = {k: round(v, 2) for k, v in used.items() if not k.startswith("postgres:")}
        return used | {"postgres": round(postgres, 2)}


class _Journal:
    """Counts the outbox journal's lines (one per hand-over) without reading the database."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as journal:
                journal.seek(self.offset)
                chunk = journal.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return self.lines


async def _produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[str, dict[str, Any]]],
    rate: float | None,
) -> dict[str, float]:
    """Produce `records` (key, event): flat out, or `rate` a second on a fixed schedule.
    Returns when each event was handed to the producer (Unix seconds, by event id)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    produced: dict[str, float] = {}
    try:
        futures = []
        start = time.time()
        for n, (key, event) in enumerate(records):
            if rate:
                delay = start + n / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            produced[event["id"]] = time.time()
            futures.append(await producer.send(topic, json.dumps(event).encode(), key=key.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return produced


def _percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return float(round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1))

    return {"p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


# What the pipeline bench sets for its stack itself (`--setting` may not).
BENCH_OWNS = frozenset(
    {
        "CAREHUB_DATABASE_URL",
        "CAREHUB_KAFKA_BOOTSTRAP",
        "CAREHUB_VAR_DIR",
        "CAREHUB_LOG_LEVEL",
        "CAREHUB_MIGRATE_ON_START",
        "CAREHUB_HTTP_PORT",
    }
)


async def bench_pipeline(
    events: int,
    admin_dsn: str,
    *,
    rate: float | None = None,
    cases: int | None = None,
    split: bool = False,
    notifiers: int = 1,
    log_level: str = "INFO",
    stack_settings: dict[str, str] | None = None,
    baseline: bool = True,
    give_up_after_s: float = 600.0,
) -> dict[str, Any]:
    """Events per second from `feeds.police` to the outbox, latencies, RSS, and the baseline."""
    import tempfile
    from pathlib import Path

    from services.core.db.engine import make_engine, session_factory, upgrade
    from services.core.keys import configure_keys
    from services.core.topics import FEEDS_POLICE

    cases = max(1, cases if cases is not None else max(10, events // 10))
    run = f"bench{uuid.uuid4().hex[:6]}"
    warm = min(20, cases)
    figures: dict[str, Any] = {
        "bench": "pipeline",
        "events": events,
        "cases": cases,
        "rate": rate,
        "processes": "split" if split else "one",
        "notifiers": notifiers if split else None,
        "log_level": log_level,
        "settings": dict(sorted((stack_settings or {}).items())),
        "produced_to": FEEDS_POLICE.name,
        "cpus": os.cpu_count(),
        # Another job on the machine shows here, and makes the figures worth less.
        "load_before": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="carehub-bench-") as tmp:
        var = Path(tmp)
        settings = load_settings(var_dir=var, log_level="WARNING")
        configure_keys(settings)  # the child processes read the same development keyring
        async with throwaway_database(admin_dsn) as database_url:
            engine = make_engine(database_url)
            try:
                await upgrade(engine)
                now = datetime.now(UTC)
                per_case = await _seed_pipeline(session_factory(engine), now, cases)
            finally:
                await engine.dispose()
            embedded = EmbeddedBroker(free_port())
            await embedded.astart()
            try:
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")},
                    "CAREHUB_DATABASE_URL": database_url,
                    "CAREHUB_KAFKA_BOOTSTRAP": embedded.bootstrap,
                    "CAREHUB_VAR_DIR": str(var),
                    "CAREHUB_LOG_LEVEL": log_level,
                    "CAREHUB_MIGRATE_ON_START": "false",
                    **{k: v for k, v in (stack_settings or {}).items() if k not in BENCH_OWNS},
                }
                # A second notifier is `notifier2` (its figures under that name): `--only notifier`.
                more = [f"notifier{n}" for n in range(2, notifiers + 1)]
                only = ["ingest", "rules", "dispatcher", "notifier", *more] if split else None
                journal = _Journal(var / "outbox" / "journal.log")
                with carehub_processes(env, var, only) as processes:
                    pids = {name: pid for name, (pid, _) in processes.items()}
                    # Warm-up: every consumer group has joined and every code path has run once.
                    warm_records = [
                        _pipeline_event(f"{run}w", n, cases, datetime.now(UTC)) for n in range(warm)
                    ]
                    await _produce(embedded.bootstrap, FEEDS_POLICE.name, warm_records, None)
                    warm_expected = sum(per_case[n % cases] for n in range(warm))
                    await _wait_for(journal, warm_expected, 120.0)
                    at = datetime.now(UTC)
                    records = [_pipeline_event(run, n, cases, at) for n in range(events)]
                    expected = sum(per_case[n % cases] for n in range(events))
                    broker_pid = embedded.process.pid if embedded.process else 0
                    cpu = _CpuMeter({**{f"carehub_{k}": v for k, v in pids.items()},
                                     "broker": broker_pid, "bench": os.getpid()})  # fmt: skip
                    started = time.time()
                    produced = await _produce(embedded.bootstrap, FEEDS_POLICE.name, records, rate)
                    produce_s = time.time() - started
                    finished = await _wait_for(journal, warm_expected + expected, give_up_after_s)
                    # Lines in the outbox journal for the run: one per hand-over, so a
                    # notification handed over twice shows here, not in the database's count.
                    handovers = journal.count() - warm_expected
                    figures["cpu_s"] = cpu.used()
                    figures["batch_sizes"] = await _batch_sizes(
                        [port for _, port in processes.values()]
                    )
                    rss = {name: _rss_mb_of(pid) for name, pid in pids.items()}
                    rss["broker"] = _rss_mb_of(broker_pid)
                handed = await _handed_over(database_url, run)
                figures["stages_s"] = await _stages(database_url, run, started)
                figures["hops_ms"] = await _hops(database_url, run, produced)
                latencies = [
                    (done - produced[event_id]) * 1000
                    for event_id, done in handed
                    if event_id in produced
                ]
                last = max((done for _, done in handed), default=time.time())
                elapsed = max(1e-9, last - started)
                figures.update(
                    {
                        "notifications": len(handed),
                        "expected_notifications": expected,
                        "handovers": handovers,
                        "complete": finished and len(handed) == expected,
                        "notifications_per_event": round(len(handed) / events, 2),
                        "seconds": round(elapsed, 3),
                        "produce_seconds": round(produce_s, 3),
                        "events_per_s": round(events / elapsed, 1),
                        "notifications_per_s": round(len(handed) / elapsed, 1),
                        **_percentiles(latencies),
                        "rss_mb": {
                            **{f"carehub_{k}": v for k, v in rss.items() if k != "broker"},
                            "broker": rss.get("broker"),
                            "bench": round(
                                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                            ),
                        },
                    }
                )
                if baseline:
                    figures["baseline"] = await _baseline(
                        admin_dsn, embedded.bootstrap, FEEDS_POLICE.name, run, events, cases
                    )
                    base = figures["baseline"]["events_per_s"]
                    figures["ratio_to_baseline"] = (
                        round(figures["events_per_s"] / base, 3) if base else None
                    )
            finally:
                await embedded.astop()
    figures["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


async def _wait_for(journal: _Journal, count: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while journal.count() < count:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _batch_sizes(ports: list[int]) -> dict[str, float]:
    """The mean records per consumed batch of each consumer (its /metrics histogram)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for port in ports:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                for suffix, into in (("_sum", sums), ("_count", counts)):
                    head = f'carehub_consumer_batch_size{suffix}{{consumer="'
                    if line.startswith(head):
                        name = line[len(head) :].split('"', 1)[0]
                        into[name] = into.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return {name: round(sums[name] / counts[name], 1) for name in sums if counts.get(name)}


async def _fetch(database_url: str, query: str, *args: Any) -> list[Any]:
    """The rows of one query on the run's database, on a connection of its own."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _stages(database_url: str, run: str, started: float) -> dict[str, float | None]:
    """When each stage had finished the run's events, in seconds from the first production:
    where a backlog stood."""
    (row,) = await _fetch(
        database_url,
        "SELECT (SELECT max(received_at) FROM case_events WHERE event_id LIKE $1) AS ingest,"
        " (SELECT max(processed_at) FROM case_events WHERE event_id LIKE $1) AS rules,"
        " (SELECT max(queued_at) FROM notifications WHERE event_id LIKE $1) AS dispatcher,"
        " (SELECT max(a.finished_at) FROM delivery_attempts a JOIN notifications n"
        "  ON n.id = a.notification_id WHERE n.event_id LIKE $1) AS notifier",
        f"{run}-%",
    )
    return {
        stage: round(row[stage].timestamp() - started, 3) if row[stage] else None
        for stage in ("ingest", "rules", "dispatcher", "notifier")
    }


HOPS = (
    ("ingest", "received_at"),
    ("rules", "processed_at"),
    ("dispatcher", "queued_at"),
    ("notifier_claim", "started_at"),
    ("notifier_send", "finished_at"),
)


async def _hops(
    database_url: str, run: str, produced: dict[str, float]
) -> dict[str, dict[str, float | None]]:
    """Where each handed-over notification's latency went, hop by hop (p50, p95 and p99 of
    each): production to ingest's record (`received_at`), to the rules consumer's decision
    (`processed_at`), to the dispatcher's release (`queued_at`), to the notifier's claim (the
    attempt's `started_at`) and to the recorded hand-over (`finished_at`). The processes
    share this machine's clock."""
    rows = await _fetch(
        database_url,
        "SELECT n.event_id, e.received_at, e.processed_at, n.queued_at, a.started_at,"
        " a.finished_at FROM notifications n"
        " JOIN case_events e ON e.id = n.case_event_id"
        " JOIN delivery_attempts a ON a.notification_id = n.id AND a.outcome = 'sent'"
        " WHERE n.event_id LIKE $1",
        f"{run}-%",
    )
    spans: dict[str, list[float]] = {name: [] for name, _ in HOPS}
    for row in rows:
        before = produced.get(row["event_id"])
        if before is None or any(row[column] is None for _, column in HOPS):
            continue
        for name, column in HOPS:
            at = row[column].timestamp()
            spans[name].append((at - before) * 1000)
            before = at
    return {
        name: {k: v for k, v in _percentiles(values).items() if k != "max_ms"}
        for name, values in spans.items()
    }


async def _handed_over(database_url: str, run: str) -> list[tuple[str, float]]:
    """(event id, Unix time the hand-over was recorded) of each of the run's notifications."""
    rows = await _fetch(
        database_url,
        "SELECT n.event_id, a.finished_at FROM notifications n"
        " JOIN delivery_attempts a ON a.notification_id = n.id"
        " WHERE n.event_id LIKE $1 AND n.status IN ('delivered', 'sent')"
        " AND a.outcome = 'sent'",
        f"{run}-%",
    )
    return [(r["event_id"], r["finished_at"].timestamp()) for r in rows]


_BASELINE_SQL = {
    "case_events": (
        "INSERT INTO case_events (id, source, event_id, type, urn, event_time, received_at,"
        " payload, payload_hash, status, published_at, processed_at, rules_version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'processed', $7, $7, 'bench')"
    ),
    "decisions": (
        "INSERT INTO decisions (case_event_id, case_id, outcome, recipient_role, recipient_id,"
        " survivor_id, channel, template, send_at, due_by, hold_reason, rule, notification_id,"
        " decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $9)"
    ),
    "notifications": (
        "INSERT INTO notifications (id, case_event_id, case_id, event_source, event_id,"
        " recipient_role, survivor_id, advocate_id, channel, language, detail, template,"
        " template_version, rules_version, rule, status, send_at, due_by, created_at, updated_at,"
        " queued_at, sent_at, informed_at, provider_ref, attempts) VALUES ($1, $2, $3, $4, $5,"
        " $6, $7, $8, $9, 'en', 'discreet', $10, 1, 'bench', $11, 'delivered', $12, $12, $12,"
        " $12, $12, $12, $12, $13, 1)"
    ),
    "delivery_attempts": (
        "INSERT INTO delivery_attempts (notification_id, attempt_no, channel, started_at,"
        " finished_at, outcome, provider_ref, to_address, subject, body, language,"
        " template_version, provider_status) VALUES ($1, 1, $2, $3, $3, 'sent', $4, $5, $6, $7,"
        " 'en', 1, 'written')"
    ),
    "audit_log": (
        "INSERT INTO audit_log (at, actor, action, case_id, case_event_id, notification_id, rule,"
        " codes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
}


async def _baseline(
    admin_dsn: str, bootstrap: str, topic: str, run: str, events: int, cases: int
) -> dict[str, Any]:
    """Bare aiokafka reading the run's records, and per batch the rows the pipeline leaves
    (case event, decisions, notifications, delivery attempts, audit rows) written with one
    executemany per table in one transaction, then the offsets committed."""
    from aiokafka import AIOKafkaConsumer

    from services.core.cloudevents import payload_hash
    from services.core.db.engine import make_engine, session_factory, upgrade
    from services.core.db.protected import seal

    async with throwaway_database(admin_dsn) as database_url:
        engine = make_engine(database_url)
        try:
            await upgrade(engine)
            await _seed_pipeline(session_factory(engine), datetime.now(UTC), cases)
        finally:
            await engine.dispose()
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        people = {
            r["urn"]: (r["case_id"], r["survivor_id"], r["advocate_id"], r["frequency"] == "all")
            for r in await conn.fetch(
                "SELECT c.urn, c.id AS case_id, cs.survivor_id, aa.advocate_id, cp.frequency"
                " FROM cases c JOIN case_survivors cs ON cs.case_id = c.id"
                " JOIN advocate_assignments aa ON aa.survivor_id = cs.survivor_id"
                " JOIN contact_preferences cp ON cp.survivor_id = cs.survivor_id"
            )
        }
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"{run}.baseline",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen = 0
        started: float | None = None
        rows_written = 0
        try:
            while seen < events:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                records = [r for batch in batches.values() for r in batch]
                if not records:
                    continue
                started = started or time.perf_counter()
                mine = [json.loads(r.value) for r in records if r.value]
                mine = [e for e in mine if str(e.get("id", "")).startswith(f"{run}-")]
                if mine:
                    rows_written += await _baseline_batch(conn, mine, people, payload_hash, seal)
                await consumer.commit()
                seen += len(mine)
            elapsed = time.perf_counter() - (started or time.perf_counter())
        finally:
            await consumer.stop()
            await conn.close()
    return {
        "events": seen,
        "rows": rows_written,
        "seconds": round(elapsed, 3),
        "events_per_s": round(seen / elapsed, 1) if elapsed else None,
    }


async def _baseline_batch(
    conn: Any,
    batch: list[dict[str, Any]],
    people: dict[str, tuple[int, int, int, bool]],
    digest: Any,
    seal: Any,
) -> int:
    now = datetime.now(UTC)
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _BASELINE_SQL}
    async with conn.transaction():
        ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT nextval(pg_get_serial_sequence('case_events', 'id'))"
                " FROM generate_series(1, $1)",
                len(batch),
            )
        ]
        for row_id, event in zip(ids, batch, strict=True):
            case_id, survivor_id, advocate_id, everything = people[event["subject"]]
            at = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
            rows["case_events"].append(
                (row_id, event["source"], event["id"], event["type"], event["subject"], at, now,
                 seal(body), digest(event))
            )  # fmt: skip
            audit = rows["audit_log"]
            audit.append((now, "ingest", "event.recorded", None, row_id, None, None, "{}"))
            told = [("advocate", advocate_id, "email")]
            if everything:
                told.append(("survivor", survivor_id, "sms"))
            else:
                rows["decisions"].append(
                    (row_id, case_id, "suppress", "survivor", survivor_id, survivor_id, None,
                     None, now, "not_a_key_stage", "bench.survivor", None)
                )  # fmt: skip
                audit.append((now, "rules", "decision.suppress", case_id, row_id, None,
                              "bench.survivor", "{}"))  # fmt: skip
            for role, person, channel in told:
                nid = str(uuid.uuid4())
                rule = f"bench.{role}"
                rows["decisions"].append(
                    (row_id, case_id, "send", role, person, survivor_id, channel, "t", now, None,
                     rule, nid)
                )  # fmt: skip
                rows["notifications"].append(
                    (nid, row_id, case_id, event["source"], event["id"], role,
                     survivor_id, advocate_id if role == "advocate" else None, channel,
                     "survivor_case_update", rule, now, f"outbox:{nid}")
                )  # fmt: skip
                rows["delivery_attempts"].append(
                    (nid, channel, now, f"outbox:{nid}", seal(b"alex@example.org"),
                     seal(b"An update"), seal(b"x" * 400))
                )  # fmt: skip
                for action, actor in (
                    ("decision.send", "rules"),
                    ("notification.queued", "dispatcher"),
                    ("notification.sending", "notifier"),
                    ("notification.delivered", "notifier"),
                ):
                    audit.append((now, actor, action, case_id, row_id, nid, rule, "{}"))
        for table in ("case_events", "decisions", "notifications", "delivery_attempts"):
            await conn.executemany(_BASELINE_SQL[table], rows[table])
        await conn.executemany(_BASELINE_SQL["audit_log"], rows["audit_log"])
    return sum(len(r) for r in rows.values())
