"""`carehub_consumer_lag_records{group, topic}` on /metrics, sampled from the real embedded broker:
a group that never committed counts from the beginning, records produced while its consumer
is held back show as lag, and consumption brings it to 0. A broker that cannot be reached only
logs `lag.sample_failed` and keeps the last value."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services import rules
from services.core import consumer_lag, metrics
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.kafka import batch_subscriber_options, ensure_topics
from services.core.runner import running_stack
from services.core.runtime import Runtime
from services.core.topics import CASE_EVENTS, Topic

PROBE_TOPIC = Topic("lag-probe", 2, "none", "A topic only this test consumes.")


class HeldConsumer:
    """A service with one batch consumer that finishes (and so commits) a batch only while
    `flowing` is set: the records it has not finished are the group's lag."""

    NAME = "lagprobe"

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.finished = 0

    def mount(self, rt: Runtime, app: FastAPI) -> None:
        @rt.broker.subscriber(  # type: ignore[untyped-decorator]
            PROBE_TOPIC.name, **batch_subscriber_options(rt.settings, self.NAME)
        )
        async def on_batch(records: list[Any]) -> None:
            await self.flowing.wait()
            self.finished += len(records)


def lag(group: str, topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "carehub_consumer_lag_records", {"group": group, "topic": topic}
    )


async def eventually(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def produce(bootstrap: str, per_partition: tuple[int, ...]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for partition, count in enumerate(per_partition):
            for i in range(count):
                await producer.send_and_wait(PROBE_TOPIC.name, b"%d" % i, partition=partition)
    finally:
        await producer.stop()


async def test_lag_counts_uncommitted_records_and_returns_to_zero(
    make_settings: Any, sqlite_url: str, broker: EmbeddedBroker
) -> None:
    await ensure_topics(broker.bootstrap, (PROBE_TOPIC,))
    await produce(broker.bootstrap, (3, 2))  # before the group ever existed
    held = HeldConsumer()
    settings = make_settings(
        database_url=sqlite_url,
        kafka_bootstrap=broker.bootstrap,
        consumer_group_prefix="lagtest",
        lag_sample_s=0.1,
    )
    group = "lagtest.lagprobe"
    try:
        async with running_stack(settings, [held, rules], own_broker=False) as stack:
            names = {task.get_name() for task in stack.tasks}
            assert consumer_lag.NAME in names
            # Never committed: every record from the beginning is lag, summed over partitions.
            await eventually(lambda: lag(group, PROBE_TOPIC.name) == 5, "lag 5")
            # A real service's group is sampled too (nothing on case-events yet).
            assert lag("lagtest.rules", CASE_EVENTS.name) == 0
            async with httpx.AsyncClient(base_url=stack.url) as client:
                text = (await client.get("/metrics")).text
            assert (
                f'carehub_consumer_lag_records{{group="{group}",topic="{PROBE_TOPIC.name}"}} 5.0'
                in text
            )
            assert "carehub_consumer_lag_sampled_timestamp_seconds " in text

            held.flowing.set()
            await eventually(lambda: held.finished == 5, "the first five consumed")
            await eventually(lambda: lag(group, PROBE_TOPIC.name) == 0, "lag 0")

            # Committed up to 5; four more come while the consumer is held back.
            held.flowing.clear()
            await produce(broker.bootstrap, (1, 3))
            await eventually(lambda: lag(group, PROBE_TOPIC.name) == 4, "lag 4")

            held.flowing.set()
            await eventually(lambda: held.finished == 9, "all nine consumed")
            await eventually(lambda: lag(group, PROBE_TOPIC.name) == 0, "lag 0 again")
    finally:
        held.flowing.set()


async def test_a_broker_that_cannot_be_reached_keeps_the_last_value_and_logs() -> None:
    metrics.CONSUMER_LAG.labels("lagtest.down", "lag-probe").set(7)
    sampled_before = REGISTRY.get_sample_value("carehub_consumer_lag_sampled_timestamp_seconds")
    sampler = consumer_lag.LagSampler(
        f"127.0.0.1:{free_port()}", {"lagtest.down": ("lag-probe",)}, interval_s=0.05
    )
    with capture_logs() as logs:
        assert await sampler.sample() is False
        # The loop goes on after a failure and stops cleanly when cancelled.
        task = asyncio.create_task(sampler.run())
        await eventually(lambda: sampler.failures >= 2, "a second failed sample")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert lag("lagtest.down", "lag-probe") == 7
    after = REGISTRY.get_sample_value("carehub_consumer_lag_sampled_timestamp_seconds")
    assert after == sampled_before
    failed = [entry for entry in logs if entry["event"] == "lag.sample_failed"]
    assert failed and failed[0]["log_level"] == "warning"
    assert set(failed[0]) <= {"event", "log_level", "component", "error", "failures"}
    assert sampler._admin is None and sampler._offsets is None
