"""The per-sender send rate holds across notifier processes: it lives in the database."""

from __future__ import annotations

import asyncio
import time

from services.core.db.engine import make_engine, session_factory, upgrade
from services.notifier.rate_limit import SendRateLimiter


async def test_two_processes_share_one_senders_rate(database_url: str) -> None:
    # Two engines and two limiters stand for two notifier processes.
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        await upgrade(engines[0])
        is_sqlite = database_url.startswith("sqlite")
        limiters = [
            SendRateLimiter(session_factory(e), per_second=20, is_sqlite=is_sqlite) for e in engines
        ]
        started = time.time()
        slots = await asyncio.gather(
            *(limiters[n % 2].reserve("twilio:+447700900001") for n in range(20))
        )
        other = await limiters[1].reserve("twilio:MG-other")
    finally:
        for engine in engines:
            await engine.dispose()
    ordered = sorted(slots)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    # 20 per second: every slot at least 50 ms after the one before, whoever reserved it.
    assert min(gaps) >= 0.05 - 1e-6
    assert ordered[-1] - started >= 19 * 0.05 - 0.01
    # Another sender has its own rate.
    assert other - started < 0.5


async def test_a_rate_of_zero_never_waits(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        limiter = SendRateLimiter(session_factory(engine), per_second=0, is_sqlite=True)
        assert not limiter.enabled
        assert [await limiter.wait("twilio:x") for _ in range(3)] == [0.0, 0.0, 0.0]
    finally:
        await engine.dispose()
