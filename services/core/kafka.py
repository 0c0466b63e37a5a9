"""Kafka plumbing shared by every service: the FastStream broker, topic creation, batch consumers.

Every consumer here is batch-first and at-least-once: the handler gets a list of records,
does its database transaction, and only then is the offset committed (`AckPolicy.NACK_ON_ERROR`:
commit after success, rewind to the batch's first record on an error). FastStream's default
auto-commit is never used: it commits before the handler runs and loses a record whose handler
fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from services.core.settings import Settings
from services.core.topics import REGISTRY, Topic

_TOPIC_EXISTS = TopicAlreadyExistsError.errno


GRACEFUL_TIMEOUT_S = 15.0


def make_broker(settings: Settings) -> KafkaBroker:
    """A FastStream Kafka broker for the configured bootstrap servers.

    The producer is plain (not idempotent, not transactional): the embedded broker refuses
    both, and every consumer is idempotent anyway.
    """
    faststream_logger = logging.getLogger("carehub.faststream")
    faststream_logger.setLevel(logging.WARNING)
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id="carehub",
        enable_idempotence=False,
        logger=faststream_logger,
        request_timeout_ms=10_000,
        # On SIGTERM each subscriber waits this long for the messages in its hands. With the
        # runner's 5 s for background loops and 5 s for closing channels, a process is gone
        # within 25 s, inside the smallest grace period in deploy/k8s (30 s).
        graceful_timeout=GRACEFUL_TIMEOUT_S,
    )


async def publish_all(
    broker: KafkaBroker,
    records: Sequence[tuple[bytes, str, bytes]],
    *,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish (value, topic, key) records and wait until the broker has acknowledged them all.

    Each is handed to the producer without waiting for the one before, so the producer sends
    them in a few requests instead of one round trip each; records with the same key still go
    to their partition in order. Raises the first failure once every record has settled.
    """
    if not records:
        return
    extra: dict[str, Any] = {"headers": headers} if headers else {}
    if not isinstance(broker, KafkaBroker):  # a stand-in (tests): one plain call per record
        for value, topic, key in records:
            await broker.publish(value, topic, key=key, **extra)
        return
    pending = [
        await broker.publish(value, topic, key=key, no_confirm=True, **extra)
        for value, topic, key in records
    ]
    results = await asyncio.gather(*pending, return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome


async def parse_any_headers(
    records: tuple[ConsumerRecord[Any, Any], ...],
    parse: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[Any]],
) -> Any:
    """FastStream's batch parser, given only headers it can read.

    It decodes every header value as UTF-8 and raises on one that is not, before any handler
    runs; with the commit-after-success policy the batch would then be fetched again for ever
    and its partition never move. A header that is not UTF-8 is dropped (carehub reads none
    that matter to a feed's record), the record itself goes on to be judged by its handler.
    """
    return await parse(tuple(_readable_headers(record) for record in records))


def _readable_headers(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    headers = list(record.headers or ())
    readable = [(key, value) for key, value in headers if _utf8(value)]
    if len(readable) == len(headers):
        return record
    return dataclasses.replace(record, headers=readable)


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def raw_batch(message: Any) -> list[bytes]:
    """The batch's record values as bytes, never parsed.

    FastStream's own batch decoder json-loads each value as it sees fit (by its content-type
    header, or by trying): JSON nested too deep, or a value its header calls JSON that is not,
    raises before the handler runs and stalls the partition for good. Each handler decodes its
    records itself and refuses a bad one alone, with its reason.
    """
    return [value if isinstance(value, bytes) else b"" for value in message.body]


def batch_subscriber_options(settings: Settings, group: str) -> dict[str, Any]:
    """Options for a batch consumer that commits only after its transaction."""
    return {
        "batch": True,
        "parser": parse_any_headers,
        "decoder": raw_batch,
        "group_id": f"{settings.consumer_group_prefix}.{group}",
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "max_records": settings.kafka_max_records,
        "batch_timeout_ms": settings.kafka_batch_timeout_ms,
        # How long the broker may hold a fetch that found nothing. Apache Kafka answers as soon
        # as a record comes; the embedded broker waits the whole time, which put ~100 ms on
        # every hop of an event at a low rate with aiokafka's default of 500.
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        # How much the broker gathers before it answers a fetch (up to the wait above): 1 is at
        # once; more makes bigger batches at moderate rates, for up to that wait on each hop.
        "fetch_min_bytes": settings.kafka_fetch_min_bytes,
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": max(300, settings.kafka_session_timeout_ms // 4),
    }


async def ensure_topics(bootstrap: str, topics: tuple[Topic, ...] = REGISTRY) -> list[str]:
    """Create the registry's topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics([NewTopic(t.name, t.partitions, 1) for t in missing])
        created = []
        for name, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise RuntimeError(f"could not create topic {name}: error {code}")
            if code == 0:
                created.append(name)
        return created
    finally:
        await admin.close()
