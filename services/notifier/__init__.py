"""Notifier: turns due notifications into messages through the configured channels, records
every attempt, and announces progress on `notifications.status`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from services.core import metrics
from services.core.kafka import batch_subscriber_options
from services.core.logs import get_logger
from services.core.records import BadRecord, NotificationDue
from services.core.runtime import Runtime
from services.core.topics import NOTIFICATIONS_DUE
from services.notifier.channels import channels_from_settings
from services.notifier.delivery import deliver

NAME = "notifier"
log = get_logger(NAME)


def mount(rt: Runtime, app: FastAPI) -> None:
    channels = channels_from_settings(rt.settings)
    # Provider callbacks (delivery receipts, inbound SMS) are mounted here by the notifier work.
    app.include_router(APIRouter(prefix="/v1/providers"))

    @rt.broker.subscriber(NOTIFICATIONS_DUE.name, **batch_subscriber_options(rt.settings, NAME))  # type: ignore[untyped-decorator]
    async def on_due(records: list[Any]) -> None:
        ids: list[str] = []
        for raw in records:
            try:
                ids.append(NotificationDue.decode(raw).notification_id)
            except BadRecord as exc:
                log.warning("record.malformed", topic=NOTIFICATIONS_DUE.name, reason=str(exc))
        metrics.CONSUMER_BATCH.labels(NAME).observe(len(ids))
        # One at a time and in order: a redelivered batch finds the finished ones done.
        for nid in dict.fromkeys(ids):
            await deliver(rt, channels, nid)
