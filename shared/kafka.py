"""Kafka helpers more than one service uses: creating and deleting topics, reading one whole,
retrying."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from tenacity import RetryCallState

from shared.retrying import error_of, kafka_answers
from shared.settings import KontaktSettings

log = logging.getLogger("kontakt.kafka")

T = TypeVar("T")


async def ensure_topics(settings: KontaktSettings, topics: Sequence[str]) -> list[str]:
    """Create missing topics with the configured partitions, replication and retention."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        for topic in topics:
            if topic in existing:
                continue
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=settings.topic_partitions,
                            replication_factor=settings.topic_replication,
                            topic_configs={"retention.ms": str(settings.topic_retention_ms)},
                        )
                    ]
                )
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # created meanwhile by another process
    finally:
        await admin.close()
    return created


#: Topics per DeleteTopics request: one request for thousands would outlast its timeout.
DELETE_BATCH = 100


async def topic_names(bootstrap: str) -> set[str]:
    """The names of every topic on the cluster."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def delete_topics(
    bootstrap: str, topics: Iterable[str], existing: set[str] | None = None
) -> list[str]:
    """Delete those of `topics` that exist (in `existing`, when the caller just listed them);
    return the names deleted."""
    if existing is None:
        existing = await topic_names(bootstrap)
    doomed = sorted(set(topics) & existing)
    if not doomed:
        return doomed
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for start in range(0, len(doomed), DELETE_BATCH):
            await admin.delete_topics(doomed[start : start + DELETE_BATCH], timeout_ms=60_000)
    finally:
        await admin.close()
    return doomed


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str | None:
        """A header's value as text."""
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of a topic (empty when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if not d["error_code"] for p in d["partitions"])


async def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every message on a topic now, partition by partition, in offset order."""
    partitions = await topic_partitions(bootstrap, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Record] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout}s")
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    records.append(
                        Record(tp.partition, m.offset, m.key, m.value or b"", tuple(m.headers))
                    )
                    if m.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def retry_kafka(
    call: Callable[[], Awaitable[T]], attempts: int = 8, backoff: float = 0.25
) -> T:
    """Await call(), again after a short backoff when Kafka gives a retriable answer."""

    def say(state: RetryCallState) -> None:
        exc = error_of(state)
        log.info(
            "Kafka answered %s; trying again (%d/%d)",
            type(exc).__name__,
            state.attempt_number,
            attempts,
        )

    async def attempt() -> T:  # a coroutine function: tenacity awaits only those
        return await call()

    result: T = await kafka_answers(attempts, backoff, say)(attempt)
    return result
