"""Notifier: turns due notifications into messages through the configured channels, records
every attempt, follows receipts and inbound texts, and announces progress on
`notifications.status`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from services.core import metrics
from services.core.kafka import batch_subscriber_options
from services.core.logs import get_logger
from services.core.records import BadRecord, NotificationDue
from services.core.runtime import Runtime
from services.core.topics import NOTIFICATIONS_DUE
from services.notifier import providers
from services.notifier.channels import channels_from_settings
from services.notifier.delivery import _announce, deliver
from services.notifier.rate_limit import SendRateLimiter

NAME = "notifier"
log = get_logger(NAME)


def mount(rt: Runtime, app: FastAPI) -> None:
    channels = channels_from_settings(rt.settings, rt.sessions)
    limiter = SendRateLimiter(
        rt.sessions, rt.settings.sms_rate_per_s, is_sqlite=rt.settings.is_sqlite
    )
    slots = asyncio.Semaphore(rt.settings.notifier_concurrency)
    in_flight: set[str] = set()
    app.include_router(providers.router(rt, _announce))
    rt.extras["notifier.channels"] = channels

    async def send_in_order(ids: list[str]) -> None:
        """One recipient's notifications, one after another, in the order they came."""
        for nid in ids:
            if nid in in_flight:
                continue  # already being sent by this process (a re-driven record)
            in_flight.add(nid)
            try:
                async with slots:
                    await deliver(rt, channels, nid, limiter)
            finally:
                in_flight.discard(nid)

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
        try:
            await asyncio.Event().wait()
        finally:
            for channel in channels.values():
                await channel.close()

    rt.background.append(("notifier.channels", close_channels))
