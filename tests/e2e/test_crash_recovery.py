"""Events in, notifications out, across separate processes on the real embedded broker and real
PostgreSQL, with the rules consumer and the notifier killed (SIGKILL) mid-stream and restarted:
nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from services.core.db import models as m
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.embedded_broker import free_port
from tests.conftest import REPO
from tests.e2e.processes import CarehubProcess, base_env, wait_until
from tests.integration.test_pipeline import add_team, arrested, crime_recorded

CASES = 120  # each: crime_recorded and suspect_arrested, 2 notifications each
BATCH = 6


def urn(i: int) -> str:
    return f"01AB{10000 + i:05d}26"


def events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(CASES):
        out.append(crime_recorded(urn(i), f"c{i}"))
        out.append(arrested(urn(i), f"a{i}"))
    # Interleave so arrests of early cases arrive while later crimes are still coming in.
    return out


async def seed_team(url: str) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    async with session_factory(engine).begin() as session:
        await add_team(session, datetime.now(UTC))
    await engine.dispose()


async def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            processed = await session.scalar(
                select(func.count()).where(m.CaseEvent.processed_at.is_not(None))
            )
            delivered = await session.scalar(
                select(func.count()).where(m.Notification.status == "delivered")
            )
            total = await session.scalar(select(func.count()).select_from(m.Notification))
        return {
            "processed": processed or 0,
            "delivered": delivered or 0,
            "notifications": total or 0,
        }
    finally:
        await engine.dispose()


async def separate_processes(
    pg_url: str, tmp_path: Path, clock_file: Path
) -> tuple[Path, CarehubProcess, dict[str, CarehubProcess]]:
    """A seeded database, the broker started, and each service ready to start as its own
    process over the outbox: (outbox, broker, services)."""
    await seed_team(pg_url)
    port = free_port()
    outbox = tmp_path / "outbox"
    env = base_env(
        CAREHUB_DATABASE_URL=pg_url,
        CAREHUB_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
        CAREHUB_EMBEDDED_BROKER_PORT=str(port),
        CAREHUB_OUTBOX_DIR=str(outbox),
        CAREHUB_HTTP_PORT="0",
        CAREHUB_KAFKA_SESSION_TIMEOUT_MS="6000",
        CAREHUB_KAFKA_MAX_RECORDS="20",
        CAREHUB_REDRIVE_AFTER_S="20",
        CAREHUB_LOG_LEVEL="INFO",
        CAREHUB_CLOCK_FILE=str(clock_file),
    )
    broker = CarehubProcess("broker", ["broker"], env, tmp_path).start()
    names = ("ingest", "rules", "dispatcher", "notifier")
    procs = {name: CarehubProcess(name, ["run", "--only", name], env, tmp_path) for name in names}
    return outbox, broker, procs


async def flowing(
    pg_url: str, procs: dict[str, CarehubProcess]
) -> tuple[list[dict[str, Any]], threading.Event, threading.Thread]:
    """Start every service and a feeder posting the events slowly; return once the first
    notifications are delivered: (the events, set when all are posted, the feeder)."""
    for proc in procs.values():
        proc.start()
    items = events()
    posted = threading.Event()
    feeder = threading.Thread(
        target=post_slowly, args=(procs["ingest"].address, items, posted), daemon=True
    )
    feeder.start()

    async def working() -> bool:
        return (await counts(pg_url))["delivered"] >= 10

    await wait_until(working, 60, "the first deliveries")
    return items, posted, feeder


async def delivered_once(pg_url: str, outbox: Path, events: int, expected: int) -> None:
    """Wait until every event is processed and `expected` notifications are delivered; then
    check the outbox took each exactly once (its journal: one line a hand-over)."""

    async def all_delivered() -> bool:
        c = await counts(pg_url)
        return c["processed"] == events and c["delivered"] == expected

    await wait_until(all_delivered, 120, f"{expected} delivered notifications")
    await asyncio.sleep(1.5)  # give a doubled delivery, if there were one, time to appear
    journal = Counter(line.split()[0] for line in (outbox / "journal.log").read_text().splitlines())
    doubled = {nid: n for nid, n in journal.items() if n > 1}
    assert not doubled, f"handed over more than once: {doubled}"
    # A file is a hand-over (written whole, then renamed into place); its journal line follows.
    # A kill between the two leaves a file without a line, and the resumed send finds the file
    # by id and sends nothing: so such a file was handed over exactly once.
    files = {path.stem for path in outbox.glob("*.json")}
    assert set(journal) <= files, f"journaled but never written: {set(journal) - files}"
    assert len(files) == expected, (len(files), expected)
    print({"handed_over": len(files), "killed_before_journaling": len(files) - len(journal)})


def post_slowly(url: str, items: list[dict[str, Any]], done: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(items), BATCH):
            response = client.post(
                "/v1/events",
                content=json.dumps(items[start : start + BATCH]),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert response.status_code == 207, response.text
            assert response.json()["counts"]["accepted"] == len(items[start : start + BATCH])
            time.sleep(0.25)
    done.set()


async def test_sigkill_mid_stream_loses_and_doubles_nothing(
    pg_url: str, tmp_path: Path, clock_file: Path
) -> None:
    outbox, broker, procs = await separate_processes(pg_url, tmp_path, clock_file)
    try:
        items, posted, feeder = await flowing(pg_url, procs)
        assert not posted.is_set(), "the stream ended before the kill: not mid-stream"
        # Both consumers die at once, mid-transaction or mid-send, offsets uncommitted.
        procs["rules"].kill()
        procs["notifier"].kill()
        before_restart = await counts(pg_url)
        assert before_restart["processed"] < len(items)
        procs["rules"].start()
        procs["notifier"].start()
        feeder.join(timeout=120)
        assert posted.is_set()

        expected = CASES * 4
        await delivered_once(pg_url, outbox, len(items), expected)
        final = await counts(pg_url)
        assert final == {"processed": len(items), "delivered": expected, "notifications": expected}
        files = list(outbox.glob("*.json"))
        assert len(files) == expected
        roles = Counter(json.loads(p.read_text())["template"] for p in files)
        assert roles == {
            "survivor_welcome": CASES,
            "advocate_new_referral": CASES,
            "survivor_case_update": CASES,
            "advocate_case_update": CASES,
        }
    finally:
        for proc in procs.values():
            proc.stop()
        broker.stop()


def grace_period_s(service: str) -> int:
    """`terminationGracePeriodSeconds` in the service's Kubernetes manifest: how long it has
    between SIGTERM and SIGKILL in a cluster."""
    manifest = (REPO / "deploy" / "k8s" / "services" / f"{service}.yaml").read_text("utf-8")
    found = re.search(r"terminationGracePeriodSeconds:\s*(\d+)", manifest)
    assert found, f"no grace period in {service}.yaml"
    return int(found.group(1))


async def test_sigterm_under_load_stops_in_the_grace_period_and_hands_back_the_rest(
    pg_url: str, tmp_path: Path, clock_file: Path
) -> None:
    """A rolling restart of every service at once while events flow: each process, sent SIGTERM,
    finishes or hands back what it holds and exits 0 well within the grace period its manifest
    gives it (so Kubernetes never has to SIGKILL it); started again, the stack delivers every
    notification exactly once."""
    outbox, broker, procs = await separate_processes(pg_url, tmp_path, clock_file)
    names = tuple(procs)
    try:
        items, posted, feeder = await flowing(pg_url, procs)
        # Ingest keeps answering the feeder until it goes; the others stop mid-stream.
        took: dict[str, float] = {}
        codes: dict[str, int | None] = {}

        def terminate(name: str) -> None:
            proc = procs[name].proc
            assert proc is not None
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout=grace_period_s(name))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = None
            took[name] = round(time.monotonic() - started, 1)

        assert not posted.is_set(), "the stream ended before the restart: not under load"
        await asyncio.gather(*(asyncio.to_thread(terminate, n) for n in names if n != "ingest"))
        print({"stopped_in_s": took, "exit_codes": codes, "then": await counts(pg_url)})
        for name in took:
            assert codes[name] == 0, f"{name} did not exit cleanly: {codes[name]}"
            assert "service.stopped" in procs[name].output(), procs[name].output()[-2000:]
            # Well within its grace period: half of it at most, on this shared machine.
            assert took[name] <= grace_period_s(name) / 2, (name, took[name])
        for name in took:
            procs[name].start()
        feeder.join(timeout=120)
        assert posted.is_set()
        await delivered_once(pg_url, outbox, len(items), CASES * 4)
    finally:
        for proc in procs.values():
            proc.stop()
        broker.stop()
