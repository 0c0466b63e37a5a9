"""Notifier: turns due notifications into messages through the configured channels, records
every attempt, follows receipts and inbound texts, and announces progress on
`notifications.status`."""

from __future__ import annotations

import asyncio
import time
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
    NotYet,
    Outcome,
    Step,
    StepAnswer,
    _announce,
    hand_over,
    hand_over_run,
    record_and_claim,
    takes_run,
)
from services.notifier.rate_limit import SendRateLimiter

NAME = "notifier"
# At most this many of one recipient's messages are claimed in one step (on a channel that finds
# a cut-off message by our id; elsewhere one).
RUN = 16
log = get_logger(NAME)
T = TypeVar("T")
R = TypeVar("R")


class Together(Generic[T, R]):
    """Requests of concurrent deliveries answered together, in one database transaction.

    The first request starts a round at once; those that come while it runs wait for the next,
    so under load a transaction carries several recipients' notifications, and alone one
    carries one, as before. `run` answers a round in order, an Exception standing for that
    request's own error. One recipient's notifications still go one after another (the next
    are claimed in the transaction that records the ones before), and over Twilio or SMTP one
    at a time: a resumed text is matched at Twilio by its number and words, which is only
    unambiguous with one text of theirs unresolved, and SMTP cannot be asked at all.
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
    # recipient's sends and claims their next messages. Each message is still claimed before its
    # own send and recorded after it, and no transaction is open during a send.
    steps: Together[Step, StepAnswer] = Together(
        lambda batch: record_and_claim(rt, channels, batch), rt.settings.notifier_concurrency
    )
    # A run's sends must all begin well before another process could take a claimed message
    # for one cut off by a crash (`CAREHUB_REDRIVE_AFTER_S`).
    budget_s = rt.settings.redrive_after_s / 2

    async def send_in_order(ids: list[str]) -> None:
        """One recipient's notifications, one after another, in the order they came."""
        # One already being sent by this process (a re-driven record) is left to that send.
        mine = [nid for nid in ids if nid not in in_flight]
        in_flight.update(mine)
        try:
            async with slots:
                await send_queue(mine)
        finally:
            in_flight.difference_update(mine)

    async def send_queue(pending: list[str]) -> None:
        """Each step records the sends before it and claims the next run of messages: up to
        `RUN` where the channel finds a cut-off message by our id, else one (`claim_runs`).
        The sends of a run go one after another, in order."""
        sent: list[tuple[Claim, Outcome]] = []
        error: Exception | None = None
        stop = False
        while sent or (pending and error is None and not stop):
            take = pending[:RUN] if error is None and not stop else []
            answer = await steps.ask((sent, take))  # raises if recording a send failed
            sent = []
            taken = [got for got in answer if not isinstance(got, NotYet)]
            pending = pending[len(taken) :]  # what was not claimed yet is always the rest
            claims = [got for got in taken if isinstance(got, Claim)]
            if not stop and takes_run(channels, claims):
                # The outbox: the run in one go, in order (nothing to look up, no rate to keep).
                for got in taken:
                    if isinstance(got, Exception):
                        error = error or got
                outcomes = await hand_over_run(rt, channels, claims)
                sent = list(zip(claims, outcomes, strict=True))
                continue
            started = time.monotonic()
            for n, got in enumerate(taken):
                if isinstance(got, Exception):
                    error = error or got
                elif got is None or stop:
                    continue
                elif sent and time.monotonic() - started > budget_s:
                    # The rest stay `sending`: the re-drive finds each at the channel by our
                    # id, or sends it; nothing after them in this queue goes before them.
                    left = sum(isinstance(rest, Claim) for rest in taken[n:])
                    log.warning("notifier.run_handed_back", notifications=left)
                    stop = True
                else:
                    sent.append((got, await hand_over(rt, channels, got, limiter)))
        if error is not None:
            raise error

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
