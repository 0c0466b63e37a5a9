"""The dispatcher is woken when the rules consumer has committed notifications due now, in one
process and across processes (PostgreSQL's NOTIFY), instead of finding them at its next poll.

Each test sets the poll (`CAREHUB_DISPATCH_INTERVAL_MS`) to two minutes: the dispatcher's first
pass runs as the stack starts, before any event, so a message handed over within the test's
wait can only have been released by a wake.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text

from services.cli import SERVICES
from services.core.embedded_broker import EmbeddedBroker
from services.core.runner import running_stack
from services.rules import due_signal
from tests.integration.test_pipeline import CE, crime_recorded, seed_team, wait_for_files

POLL_MS = 120_000


async def post(url: str, event: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202


async def test_news_due_now_is_released_without_waiting_for_the_poll(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, dispatch_interval_ms=POLL_MS
    )
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        await asyncio.sleep(0.5)  # the dispatcher's first pass is over: it now waits the poll
        await post(stack.url, crime_recorded("01AB1234524", "w1"))
        files = await wait_for_files(settings.resolved_outbox_dir, 2, timeout=30)
        signal = due_signal.here(stack.runtime)
        assert signal is not None and signal.wakes >= 1
    assert len(files) == 2 and "survivor" in {f["recipient_role"] for f in files}


async def test_a_dispatcher_in_another_process_is_woken_through_postgresql(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker
) -> None:
    """`carehub run --only rules` and `--only dispatcher` as separate processes (two stacks
    here, each with its own engine and connections): the rules consumer's NOTIFY, delivered
    at its commit, wakes the other's LISTEN. The listening connection is then killed, as a
    failover would; it is opened again, and the next news is released without the poll."""
    settings = make_settings(
        database_url=pg_url, kafka_bootstrap=broker.bootstrap, dispatch_interval_ms=POLL_MS
    )
    rest = [SERVICES[name] for name in ("ingest", "rules", "notifier")]
    async with (
        running_stack(settings, [SERVICES["dispatcher"]], own_broker=False) as dispatching,
        running_stack(settings, rest, own_broker=False) as deciding,
    ):
        assert due_signal.here(deciding.runtime) is None  # it must use PostgreSQL to wake
        await seed_team(deciding)
        await asyncio.sleep(0.5)
        await post(deciding.url, crime_recorded("01AB1234524", "w1"))
        await wait_for_files(settings.resolved_outbox_dir, 2, timeout=30)

        async with dispatching.runtime.engine.connect() as conn:
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND query LIKE '%carehub_due%'"
                )
            )
        assert killed == 1
        await asyncio.sleep(6)  # the listener notices within its 5 s check and listens again
        await post(deciding.url, crime_recorded("01AB1234525", "w2"))
        await wait_for_files(settings.resolved_outbox_dir, 4, timeout=30)
