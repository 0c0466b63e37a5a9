"""Ingest: canonical events and each feed's native format in (HTTP, Kafka feed topics, files),
validated, deduplicated, recorded, and published to `case-events`; rejected records kept with
their reason and announced on `case-events.dlq`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from faststream.kafka.annotations import KafkaMessage

from services.core import metrics
from services.core.kafka import batch_subscriber_options
from services.core.logs import get_logger
from services.core.runtime import Runtime
from services.core.topics import FEEDS_COURT, FEEDS_CPS, FEEDS_POLICE, FEEDS_PROBATION
from services.ingest import routes
from services.ingest.feeds import ingest_values

NAME = "ingest"
log = get_logger(NAME)
FEED_TOPICS = {
    FEEDS_POLICE.name: "police",
    FEEDS_CPS.name: "cps",
    FEEDS_COURT.name: "court",
    FEEDS_PROBATION.name: "probation",
}


def raw_values(message: Any) -> list[tuple[str, bytes]]:
    """(topic, value bytes) of each record in a consumed batch, whatever FastStream decoded."""
    records = message.raw_message
    if not isinstance(records, tuple | list):
        records = (records,)
    return [(r.topic, r.value if isinstance(r.value, bytes) else b"") for r in records]


def mount(rt: Runtime, app: FastAPI) -> None:
    routes.mount(rt, app)
    if not rt.settings.ingest_feed_topics:
        return
    skew = timedelta(seconds=rt.settings.event_time_skew_s)

    @rt.broker.subscriber(  # type: ignore[untyped-decorator]
        *FEED_TOPICS, **batch_subscriber_options(rt.settings, NAME)
    )
    async def on_feed(records: list[Any], message: KafkaMessage) -> None:
        values = raw_values(message)
        metrics.CONSUMER_BATCH.labels(NAME).observe(len(values))
        now = rt.clock.now()
        # One transaction for the batch; the offsets are committed after it.
        async with rt.sessions.begin() as session:
            outcomes = await ingest_values(
                session,
                [(FEED_TOPICS[topic], raw) for topic, raw in values],
                now=now,
                way_in="kafka",
                max_skew=skew,
            )
        await routes.after_commit(rt, outcomes)


__all__ = ["NAME", "mount", "raw_values"]
