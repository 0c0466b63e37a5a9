"""What carehub's own PostgreSQL connections ask of the server."""

from __future__ import annotations

from sqlalchemy import text

from services.core.db.engine import make_engine


async def _shown(pg_url: str, setting: str) -> str | None:
    engine = make_engine(pg_url)
    try:
        async with engine.connect() as conn:
            shown = await conn.scalar(text(f"SHOW {setting}"))
            return None if shown is None else str(shown)
    finally:
        await engine.dispose()


async def test_our_postgresql_sessions_do_not_stay_idle_in_a_transaction(pg_url: str) -> None:
    """The sealer's marks assume no transaction stays open for an hour: carehub's own
    connections have PostgreSQL end one left idle for ten minutes."""
    assert await _shown(pg_url, "idle_in_transaction_session_timeout") == "10min"
