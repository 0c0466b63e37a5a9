"""Consumer lag, sampled by every process that consumes Kafka.

For each consumer group the process's subscribers belong to, and each topic of that group:
the sum over the topic's partitions of the log end offset minus the group's committed offset
(a partition the group has not committed on yet counts from its beginning offset, as
`auto_offset_reset="earliest"` would read it). Set on `carehub_consumer_lag_records{group,
topic}` every `CAREHUB_LAG_SAMPLE_S`; the time of the last good sample is
`carehub_consumer_lag_sampled_timestamp_seconds`.

Committed offsets come from the admin client (`list_consumer_group_offsets`, always with the
partitions named: the embedded broker cannot answer the "every partition" form of OffsetFetch),
beginning and end offsets from a consumer outside any group (`beginning_offsets`,
`end_offsets`; aiokafka's admin client has no `list_offsets`). A sample that fails (the broker
is down, a timeout) logs `lag.sample_failed` and keeps the last values, so the timestamp says
how stale they are; it never stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from services.core import metrics
from services.core.logs import get_logger
from services.core.runtime import Runtime

log = get_logger("consumer_lag")
NAME = "consumer_lag"
REQUEST_TIMEOUT_MS = 10_000
# A whole sample (connecting included) gives up after this long and counts as failed.
SAMPLE_TIMEOUT_S = 15.0


def consumed_groups(subscribers: Iterable[Any]) -> dict[str, tuple[str, ...]]:
    """The consumer groups of a broker's subscribers, each with the topics it subscribes to.

    Subscribers without a group (none in carehub) or without named topics are left out.
    """
    groups: dict[str, set[str]] = {}
    for subscriber in subscribers:
        group = getattr(subscriber, "group_id", None)
        topics = getattr(subscriber, "topic_names_for_subscribe", None) or ()
        if group and topics:
            groups.setdefault(str(group), set()).update(str(t) for t in topics)
    return {group: tuple(sorted(topics)) for group, topics in sorted(groups.items())}


def lag_by_topic(
    partitions: Iterable[TopicPartition],
    committed: Mapping[TopicPartition, int],
    beginning: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
) -> dict[str, int]:
    """Records not yet committed, summed per topic.

    A committed offset of -1 (or none) means no commit yet: the group would start at the
    beginning. A commit older than the beginning (records deleted by retention) counts from the
    beginning too, since those records can no longer be read.
    """
    lags: dict[str, int] = {}
    for tp in partitions:
        start = beginning.get(tp, 0)
        position = committed.get(tp, -1)
        position = start if position < 0 else max(position, start)
        lags[tp.topic] = lags.get(tp.topic, 0) + max(0, end[tp] - position)
    return lags


class LagSampler:
    """Samples the lag of `groups` (group -> topics) on `bootstrap` into the gauges."""

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, Sequence[str]],
        *,
        interval_s: float,
        timeout_s: float = SAMPLE_TIMEOUT_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.groups = {group: tuple(topics) for group, topics in groups.items()}
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.failures = 0
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            await self.close()
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="carehub-lag",
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
            # No group, no subscription: it only asks for beginning and end offsets.
            offsets = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="carehub-lag",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
            self._admin, self._offsets = admin, offsets
            await admin.start()
            await offsets.start()
        return self._admin, self._offsets

    async def read(self) -> dict[tuple[str, str], int]:
        """The lag of every (group, topic) now, from the broker. Raises on any failure."""
        admin, offsets = await self._clients()
        topics = sorted({t for group_topics in self.groups.values() for t in group_topics})
        partitions: dict[str, list[TopicPartition]] = {}
        for described in await admin.describe_topics(topics):
            if described.get("error_code"):
                continue  # not there (yet): nothing to lag behind
            name = described["topic"]
            partitions[name] = [
                TopicPartition(name, p["partition"]) for p in described["partitions"]
            ]
        every = [tp for tps in partitions.values() for tp in tps]
        end = await offsets.end_offsets(every) if every else {}
        beginning = await offsets.beginning_offsets(every) if every else {}
        lags: dict[tuple[str, str], int] = {}
        for group, group_topics in self.groups.items():
            own = [tp for t in group_topics for tp in partitions.get(t, ())]
            if not own:
                continue
            committed = await admin.list_consumer_group_offsets(group, partitions=own)
            by_topic = lag_by_topic(
                own, {tp: meta.offset for tp, meta in committed.items()}, beginning, end
            )
            for topic, lag in by_topic.items():
                lags[(group, topic)] = lag
        return lags

    async def sample(self) -> bool:
        """Read the lag and set the gauges; on a failure log it and keep the last values."""
        try:
            lags = await asyncio.wait_for(self.read(), timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a broken sample must never stop the process
            self.failures += 1
            log.warning("lag.sample_failed", error=type(exc).__name__, failures=self.failures)
            await self.close()  # start afresh next time
            return False
        for (group, topic), lag in lags.items():
            metrics.CONSUMER_LAG.labels(group, topic).set(lag)
        metrics.CONSUMER_LAG_SAMPLED.set(time.time())
        self.failures = 0
        return True

    async def run(self) -> None:
        """Sample now and every `interval_s` until cancelled; then close the clients."""
        try:
            while True:
                await self.sample()
                await asyncio.sleep(self.interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        for stop in (offsets.stop if offsets else None, admin.close if admin else None):
            if stop is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(stop(), timeout=5)


def sampler_for(rt: Runtime) -> LagSampler | None:
    """A sampler for the consumers mounted on `rt.broker`, or None: no consumer, or turned off."""
    groups = consumed_groups(rt.broker.subscribers)
    if not groups or rt.settings.lag_sample_s <= 0:
        return None
    return LagSampler(rt.settings.bootstrap_servers, groups, interval_s=rt.settings.lag_sample_s)
