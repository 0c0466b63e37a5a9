"""Notifier: turns due notifications into messages through the configured channels, records
every attempt, follows receipts and inbound texts, and announces progress on
`notifications.status`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from fastapi import FastAPI

from services.core import metrics
from services.core.kafka import batch_subscriber_options
from services.core.logs import get_logger
from services.core.records import BadRecord, NotificationDue
from services.core.runtime import Runtime
from services.core.topics import NOTIFICATIONS_DUE
from services.notifier import providers
from services.notifier.channels import channels_from_settings
from services.notifier.delivery import (
    Claim,
    Outcome,
    Step,
    _announce,
    hand_over,
    record_and_claim,
)
from services.notifier.rate_limit import SendRateLimiter

NAME = "notifier"
log = get_logger(NAME)
T = TypeVar("T")
R = TypeVar("R")


class Together(Generic[T, R]):
    """Requests of concurrent deliveries answered together, in one database transaction.

    The first request starts a round at once; those that come while it runs wait for the next,
    so under load a transaction carries several recipients' notifications, and alone one
    carries one, as before. `run` answers a round in order, an Exception standing for that
    request's own error. One recipient's notifications still go one at a time (the next is
    claimed in the transaction that records the one before): a resumed send is matched at the
    provider by its number and words, which is only unambiguous with one message of theirs in
    flight.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R | Exception]]], most: int) -> None:
        self.run = run
        self.most = most
        self.waiting: list[tuple[T, asyncio.Future[R]]] = []
        self.rounds: asyncio.Task[None] | None = None

    async def ask(self, request: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.waiting.append((request, answer))
        if self.rounds is None or self.rounds.done():
            self.rounds = asyncio.create_task(self._answer_rounds())
        return await answer

    async def _answer_rounds(self) -> None:
        while self.waiting:
            round_, self.waiting = self.waiting[: self.most], self.waiting[self.most :]
            try:
                answers = await self.run([request for request, _ in round_])
            except Exception as exc:  # noqa: BLE001 - each request gets the error
                answers = [exc] * len(round_)
            except BaseException:
                for _, future in round_:
                    future.cancel()
                raise
            for (_, future), value in zip(round_, answers, strict=True):
                if future.done():
                    continue  # its delivery was cancelled (shutdown): the re-drive has it
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(value)


def mount(rt: Runtime, app: FastAPI) -> None:
    channels = channels_from_settings(rt.settings, rt.sessions)
    limiter = SendRateLimiter(
        rt.sessions, rt.settings.sms_rate_per_s, is_sqlite=rt.settings.is_sqlite
    )
    slots = asyncio.Semaphore(rt.settings.notifier_concurrency)
    in_flight: set[str] = set()
    app.include_router(providers.router(rt, _announce))
    rt.extras["notifier.channels"] = channels

    # The steps of the deliveries in flight share their transactions: each step records one
    # recipient's send and claims their next message. Each message is still claimed right
    # before its own send, and no transaction is open during a send.
    steps: Together[Step, Claim | None] = Together(
        lambda batch: record_and_claim(rt, channels, batch), rt.settings.notifier_concurrency
    )

    async def send_in_order(ids: list[str]) -> None:
        """One recipient's notifications, one after another, in the order they came."""
        # One already being sent by this process (a re-driven record) is left to that send.
        mine = [nid for nid in ids if nid not in in_flight]
        in_flight.update(mine)
        try:
            async with slots:
                sent: tuple[Claim, Outcome] | None = None
                for nid in [*mine, None]:
                    if sent is None and nid is None:
                        break
                    # Record the last send (if any) and claim this one (if any), together.
                    claimed = await steps.ask((sent, nid))
                    sent = None
                    if claimed is not None:
                        sent = (claimed, await hand_over(rt, channels, claimed, limiter))
        finally:
            in_flight.difference_update(mine)

    @rt.broker.subscriber(NOTIFICATIONS_DUE.name, **batch_subscriber_options(rt.settings, NAME))  # type: ignore[untyped-decorator]
    async def on_due(records: list[Any]) -> None:
        by_recipient: dict[str, list[str]] = {}
        count = 0
        for raw in records:
            try:
                due = NotificationDue.decode(raw)
            except BadRecord as exc:
                log.warning("record.malformed", topic=NOTIFICATIONS_DUE.name, reason=str(exc))
                continue
            queue = by_recipient.setdefault(due.recipient or due.notification_id, [])
            if due.notification_id not in queue:
                queue.append(due.notification_id)
                count += 1
        metrics.CONSUMER_BATCH.labels(NAME).observe(count)
        # Different recipients at once, each recipient in order; a failure of one is raised
        # after the others finished, so the batch is redelivered and the finished ones skipped.
        results = await asyncio.gather(
            *(send_in_order(ids) for ids in by_recipient.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close_channels() -> None:
        for channel in channels.values():
            await channel.close()

    # After the consumers stopped: a send in hand at SIGTERM finishes on an open channel.
    rt.closers.append(close_channels)
