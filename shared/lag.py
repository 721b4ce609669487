"""Consumer lag: how far a consumer group is behind, per topic partition, and whether it moves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import retry_kafka, topic_partitions
from shared.observability import metrics
from shared.stall import ConsumerStalledError, PartitionLag, StallDetector
from shared.waiting import wait_for_stop

log = logging.getLogger("kontakt.lag")


async def group_lag(bootstrap: str, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    """Lag of a consumer group on each partition of the topics (retriable answers retried)."""
    return await retry_kafka(lambda: _group_lag(bootstrap, group, topics))


async def _group_lag(bootstrap: str, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    tps = [TopicPartition(t, p) for t in topics for p in await topic_partitions(bootstrap, t)]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    out = []
    for tp in tps:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        out.append(PartitionLag(group, tp.topic, tp.partition, offset, ends[tp]))
    return out


class ConsumerLagUnknownError(Exception):
    """The groups' offsets could not be sampled for longer than the stall time."""


def sample_interval(stall_seconds: float) -> float:
    """How often a monitor samples: often enough to judge a stall within a quarter of its time."""
    return max(0.2, min(10.0, stall_seconds / 4))


class ConsumerMonitor:
    """Samples a process's groups' committed and end offsets; keeps the gauges and the verdict."""

    def __init__(
        self,
        bootstrap: str,
        groups: Mapping[str, Sequence[str]],
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.groups = {g: list(t) for g, t in groups.items()}
        self.detector = StallDetector(stall_seconds)
        self.interval = sample_interval(stall_seconds)
        self._clock = clock
        self._last_ok = clock()
        self._error: str | None = None

    async def sample(self) -> list[PartitionLag]:
        """One round over every group: update the verdict and the gauges; the offsets seen."""
        rows: list[PartitionLag] = []
        for group, topics in self.groups.items():
            rows.extend(await group_lag(self.bootstrap, group, topics))
        now = self._clock()
        stalled = {(s.group, s.topic, s.partition) for s in self.detector.observe(rows, now)}
        m = metrics()
        for p in rows:
            labels = {"group": p.group, "topic": p.topic, "partition": str(p.partition)}
            m.consumer_lag.labels(**labels).set(p.lag)
            m.consumer_stalled.labels(**labels).set(
                1 if (p.group, p.topic, p.partition) in stalled else 0
            )
        self._last_ok, self._error = now, None
        return rows

    async def lag(self) -> list[dict[str, Any]]:
        """Fresh offsets of every partition, each marked stalled or not (the /lag route)."""
        rows = await self.sample()
        stalled = {(s.group, s.topic, s.partition): s for s in self.detector.stalls}
        out = []
        for p in rows:
            stall = stalled.get((p.group, p.topic, p.partition))
            out.append(
                {**p.as_dict(), "stalled": stall is not None}
                | ({"stalled_seconds": round(stall.seconds, 1)} if stall else {})
            )
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every interval until stop is set; a failed round is logged and retried."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.sample(), timeout=max(30.0, self.interval))
            except Exception as exc:  # Kafka unreachable: waited out, said by check()
                self._error = f"{type(exc).__name__}: {exc}"
                log.warning("cannot sample consumer offsets: %s", self._error)
            await wait_for_stop(stop, self.interval)

    @property
    def sample_error(self) -> str | None:
        """Why the latest sampling round failed (None: it succeeded)."""
        return self._error

    def check(self) -> None:
        """Raise when a partition is stalled, or when offsets went unsampled for the stall time."""
        stalls = self.detector.stalls
        if stalls:
            raise ConsumerStalledError(stalls)
        unknown_for = self._clock() - self._last_ok
        if self._error is not None and unknown_for >= self.detector.stall_seconds:
            raise ConsumerLagUnknownError(
                f"consumer offsets unknown for {unknown_for:.0f}s: {self._error}"
            )
