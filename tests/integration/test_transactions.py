"""Transactions mean the same on SQLite as on PostgreSQL: a savepoint never commits on its own."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.core.db.engine import make_engine


async def test_rolling_back_a_transaction_undoes_its_released_savepoints(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        with pytest.raises(RuntimeError):
            async with engine.begin() as conn:
                async with conn.begin_nested():  # the first statement of the transaction
                    await conn.execute(text("INSERT INTO probe VALUES (1)"))
                raise RuntimeError("the database work after it failed")
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM probe"))).scalar() == 0
    finally:
        await engine.dispose()
