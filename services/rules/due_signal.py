"""Waking the dispatcher when the rules consumer has made notifications due now.

The dispatcher looks for due notifications every `CAREHUB_DISPATCH_INTERVAL_MS` (250 ms), so a
message due now waited up to that long before it was queued: most of an update's latency at
the rates carehub sees. The rules consumer now says when a batch it committed made a
notification due now, and the dispatcher releases at once (`release_due` only, not its other
work):

- in one process (`carehub run`, the embedded default), through an `asyncio.Event`;
- across processes on PostgreSQL (`carehub run --only rules` and a dispatcher elsewhere),
  through `NOTIFY carehub_due`, sent in the rules consumer's transaction so that PostgreSQL
  delivers it only once the rows are committed, and heard by every dispatcher's `LISTEN`.

The poll stays as it was: a wake lost (a dropped listening connection, a dispatcher started
after the commit) costs at most one interval, never a message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.logs import get_logger
from services.core.runtime import Runtime

CHANNEL = "carehub_due"
SIGNAL = "carehub.due_signal"  # the dispatcher's DueSignal, in Runtime.extras
log = get_logger("dispatcher")


class DueSignal:
    """Set when notifications became due now; the dispatcher waits on it between passes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.wakes = 0

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True (and cleared) if it was set within `timeout_s`, else False."""
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout_s)
            except TimeoutError:
                return False
        self._event.clear()
        self.wakes += 1
        return True


def here(rt: Runtime) -> DueSignal | None:
    """This process's dispatcher's signal, if this process runs a dispatcher that wakes."""
    signal = rt.extras.get(SIGNAL)
    return signal if isinstance(signal, DueSignal) else None


async def announce(rt: Runtime, session: AsyncSession) -> None:
    """In the caller's transaction, before it commits: tell the dispatchers of other processes
    (PostgreSQL only; one in this process is told by `after_commit`)."""
    if rt.settings.dispatch_wake and not rt.settings.is_sqlite and here(rt) is None:
        await session.execute(select(func.pg_notify(CHANNEL, "")))


def after_commit(rt: Runtime) -> None:
    """Once the caller's transaction has committed: wake this process's dispatcher."""
    signal = here(rt)
    if signal is not None:
        signal.set()


async def listen(rt: Runtime, signal: DueSignal, *, recheck_s: float = 5.0) -> None:
    """Set `signal` on every `NOTIFY carehub_due` (PostgreSQL), on a connection of its own,
    opened again whenever it is lost; runs until cancelled."""
    while True:
        try:
            async with rt.engine.connect() as conn:
                raw: Any = (await conn.get_raw_connection()).driver_connection

                def heard(*_: Any) -> None:
                    signal.set()

                try:
                    await raw.add_listener(CHANNEL, heard)
                    log.info("dispatcher.listening", channel=CHANNEL)
                    # A notification missed while the connection was being opened is covered
                    # by the poll; waking once now costs one look.
                    signal.set()
                    while not raw.is_closed():
                        await asyncio.sleep(recheck_s)
                        # Finds a connection that died quietly (named, for operators).
                        await raw.execute(f"SELECT 1 -- {CHANNEL} listener")
                finally:
                    # Never back to the pool still listening, or broken: closed instead.
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the poll covers us; try again shortly
            log.warning("dispatcher.listen_lost", error=type(exc).__name__)
        await asyncio.sleep(recheck_s)
