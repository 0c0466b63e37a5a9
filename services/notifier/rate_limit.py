"""A per-sender send rate that holds across every notifier process, shared through the database.

Each message reserves the next free slot of its sender (one row in `send_rates`: the earliest
Unix time the next message may go) with one atomic upsert, then waits until its slot. Slots are
`1 / rate` seconds apart, so however many processes send, the sender never exceeds its rate.
Real time, not the injectable clock: the provider counts in real seconds.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.db import models as m


class SendRateLimiter:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], per_second: float, *, is_sqlite: bool
    ) -> None:
        self.sessions = sessions
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.is_sqlite = is_sqlite

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    async def reserve(self, sender: str) -> float:
        """Reserve the sender's next slot; return the Unix time it begins."""
        now = time.time()
        table = m.SendRate.__table__
        assert isinstance(table, Table)
        insert = (sqlite.insert if self.is_sqlite else postgresql.insert)(table)
        greatest = func.max if self.is_sqlite else func.greatest
        statement = (
            insert.values(sender=sender, next_at=now + self.interval)
            .on_conflict_do_update(
                index_elements=[table.c.sender],
                set_={"next_at": greatest(table.c.next_at, now) + self.interval},
            )
            .returning(table.c.next_at)
        )
        async with self.sessions.begin() as session:
            next_at = float((await session.execute(statement)).scalar_one())
        return next_at - self.interval

    async def wait(self, sender: str) -> float:
        """Wait for the sender's next slot; return how long we waited (seconds)."""
        if not self.enabled:
            return 0.0
        slot = await self.reserve(sender)
        delay = slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return max(0.0, delay)
