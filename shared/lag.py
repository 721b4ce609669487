"""Consumer lag: how far a consumer group is behind, per topic partition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import topic_partitions


@dataclass(frozen=True)
class PartitionLag:
    """A group's committed offset and the end of one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        """Messages not yet committed by the group."""
        return self.end - (self.committed or 0)


async def group_lag(bootstrap: str, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    """Lag of a consumer group on each partition of the topics."""
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
