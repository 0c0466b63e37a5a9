"""Shared fixtures: real PostgreSQL databases, a real embedded broker, in-process stacks."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.settings import Settings, load_settings

# The tests' "now": a Wednesday late morning, inside every default safe window. A stack's clock
# ticks on from here (CAREHUB_CLOCK_FILE), so results never depend on when the suite runs.
CLOCK_T0 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)

PG_ADMIN_DSN = os.environ.get("CAREHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_base() -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards."""
    name = f"carehub_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({type(exc).__name__}): "
            "start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    try:
        yield f"postgresql+asyncpg://{_pg_base().split('://', 1)[1]}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(autouse=True)
def keyring(tmp_path: Path) -> Iterator[Path]:
    """Every test has a keyring: the development one at tmp_path/var/keys.json, created at first
    use. A `carehub` child process started in tmp_path (or with CAREHUB_VAR_DIR=tmp_path/var)
    finds the same file, so what one writes the other reads."""
    from services.core.keys import DEV_KEYRING, configure_keys, use_keyring

    var = tmp_path / "var"
    configure_keys(load_settings(var_dir=var, env="test"), lazy=True)
    try:
        yield var / DEV_KEYRING
    finally:
        use_keyring(None)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'carehub.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'carehub.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (tansu), fresh for each test: it keeps data in memory only."""
    embedded = EmbeddedBroker(free_port())
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    """A clock file that starts at CLOCK_T0 and ticks on in real time."""
    from services.core.clock import write_clock_file

    path = tmp_path / "clock"
    write_clock_file(path, CLOCK_T0, ticking=True)
    return path


@pytest.fixture
def make_settings(tmp_path: Path, clock_file: Path) -> Any:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "var_dir": tmp_path / "var",
            "clock_file": clock_file,
            "http_port": 0,
            "kafka_session_timeout_ms": 3000,
            "dispatch_interval_ms": 50,
            # Each consumer group costs a join of seconds at start-up: only the tests of the
            # feeds.* topics turn ingest's consumer on.
            "ingest_feed_topics": False,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
async def stack(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> AsyncIterator[Any]:
    """The whole service in this process, on the real broker, for each database."""
    from services.cli import SERVICES
    from services.core.runner import running_stack

    settings = make_settings(database_url=database_url, kafka_bootstrap=broker.bootstrap)
    async with running_stack(settings, list(SERVICES.values()), own_broker=False) as running:
        yield running


@pytest.fixture
async def ingest_stack(
    make_settings: Any, database_url: str, broker: EmbeddedBroker
) -> AsyncIterator[Any]:
    """Only the ingest service (no consumers, so no group joins to wait for)."""
    from services import ingest
    from services.core.runner import running_stack

    settings = make_settings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, ingest_feed_topics=False
    )
    async with running_stack(settings, [ingest], own_broker=False) as running:
        yield running
