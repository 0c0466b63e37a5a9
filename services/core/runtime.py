"""What a running carehub process is made of, wired once and handed to each service's `mount`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core.calendar import WorkingDayCalendar
from services.core.clock import Clock
from services.core.settings import Settings

BackgroundTask = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    calendar: WorkingDayCalendar
    broker: KafkaBroker
    # Long-running loops (the dispatcher, sweeps) the runner starts after the broker and stops
    # before it.
    background: list[tuple[str, BackgroundTask]] = field(default_factory=list)
    # Run once the consumers have stopped (their messages in hand finished or handed back):
    # what those messages needed until the end, such as the notifier's channels.
    closers: list[BackgroundTask] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


class Service(Protocol):
    """A service module: adds its routes, subscribers and background loops to a process."""

    NAME: str

    def mount(self, rt: Runtime, app: FastAPI) -> None: ...
