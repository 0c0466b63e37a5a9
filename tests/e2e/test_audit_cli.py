"""`carehub audit verify` as an operator runs it: ok on an honest trail, exit 1 naming the row
after someone with full rights edited one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.cli import SERVICES
from services.core.embedded_broker import EmbeddedBroker
from services.core.runner import running_stack
from tests.e2e.processes import base_env
from tests.e2e.test_cli import carehub, last_json
from tests.integration.test_pipeline import CE, crime_recorded, seed_team, wait_for_files


async def test_audit_verify_passes_then_names_a_tampered_row(
    make_settings: Any, pg_url: str, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = make_settings(database_url=pg_url, kafka_bootstrap=broker.bootstrap)
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as stack:
        await seed_team(stack)
        async with httpx.AsyncClient(base_url=stack.url) as client:
            event = crime_recorded("01AB1234524", "a1")
            assert (await client.post("/v1/events", json=event, headers=CE)).status_code == 202
        await wait_for_files(settings.resolved_outbox_dir, 2)
    env = base_env(CAREHUB_DATABASE_URL=pg_url)
    done = await asyncio.to_thread(carehub, ["audit", "verify"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = last_json(done.stdout)
    assert report["ok"] is True and report["rows_checked"] == report["seals_checked"] > 5

    # Someone with full rights on the database rewrites what a decision said.
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
        seq = await conn.fetchval("SELECT min(seq) FROM audit_log WHERE action = 'decision.send'")
        await conn.execute("UPDATE audit_log SET codes = '{\"edited\": true}' WHERE seq = $1", seq)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER ALL")
    finally:
        await conn.close()
    done = await asyncio.to_thread(carehub, ["audit", "verify"], env, tmp_path)
    assert done.returncode == 1
    report = last_json(done.stdout)
    assert report["ok"] is False and report["first_problem_seq"] == seq
    assert str(seq) in done.stderr
