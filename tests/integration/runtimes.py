"""A runtime for calling the services' functions directly: a migrated database, a clock and a
stand-in broker, no consumers running."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from services.core.calendar import load_calendar
from services.core.clock import FixedClock
from services.core.db.engine import make_engine, session_factory, upgrade
from services.core.runtime import Runtime


@contextlib.asynccontextmanager
async def migrated_runtime(settings: Any, clock: FixedClock, broker: Any) -> AsyncIterator[Runtime]:
    """A Runtime on `settings`' database (migrated first), with this clock and broker; its
    engine is disposed of on the way out."""
    engine = make_engine(settings.resolved_database_url)
    await upgrade(engine)
    try:
        yield Runtime(settings, engine, session_factory(engine), clock, load_calendar(None), broker)
    finally:
        await engine.dispose()
