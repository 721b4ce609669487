"""One way to consume Kafka, for every worker: fetch, hand each partition over, commit after.

At-least-once: a partition's offset moves only past the records its handler says are
done (applied, or dead-lettered), and only after the handler returned. A handler that
raises has already waited out whatever went wrong: its partition is rewound to the
first record of the fetch, which comes again; the other partitions go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError

from shared.settings import KontaktSettings
from shared.text import clean_text

log = logging.getLogger("kontakt.consuming")

#: Handles one partition's records of a fetch, in order; returns how many are done.
Handler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[int]]


def consumer(
    settings: KontaktSettings, topics: Sequence[str], group_id: str, max_records: int = 200
) -> AIOKafkaConsumer:
    """A consumer of the topics in a group that commits only when told to, from the earliest."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )


def producer(settings: KontaktSettings) -> AIOKafkaProducer:
    """A producer whose sends are acknowledged by every in-sync replica, without duplicates."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )


async def consume(
    source: AIOKafkaConsumer,
    handle: Handler,
    stop: asyncio.Event,
    fetched: Callable[[], None] | None = None,
) -> None:
    """Fetch until stop; each partition's records go to handle, the partitions concurrently.

    Concurrently, so that one partition's retries never hold up another.
    """
    while not stop.is_set():
        batch = await source.getmany(timeout_ms=500)
        if not batch:
            continue
        parts = list(batch.items())
        results = await asyncio.gather(
            *(handle(records) for _, records in parts), return_exceptions=True
        )
        done: dict[TopicPartition, int] = {}
        for (tp, records), result in zip(parts, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            handled = 0 if isinstance(result, BaseException) else result
            if isinstance(result, BaseException):
                log.warning("%s and on come again: %r", where(records[0]), result)
            if handled:
                done[tp] = records[handled - 1].offset + 1
            if handled < len(records):
                # What was not done comes again (a partition lost meanwhile is someone else's).
                with contextlib.suppress(IllegalStateError):
                    source.seek(tp, records[handled].offset)
        if done:
            await source.commit(done)
        if fetched is not None:
            fetched()


async def dead_letter(
    sink: AIOKafkaProducer,
    settings: KontaktSettings,
    record: Any,
    error: BaseException,
    headers: dict[str, str],
) -> None:
    """Publish a record's original bytes with the error and origin to the dead-letter topic."""
    await sink.send_and_wait(
        settings.dead_letter_topic,
        record.value,
        key=record.key,
        headers=[
            (k, v.encode())
            for k, v in {
                "x-original-topic": record.topic,
                "x-original-partition": str(record.partition),
                "x-original-offset": str(record.offset),
                **headers,
                "x-error": clean_text(f"{type(error).__name__}: {error}")[:2000],
                "x-failed-at": datetime.now(UTC).isoformat(),
            }.items()
        ],
    )


def where(record: Any) -> str:
    """Where a record is: topic[partition]@offset."""
    return f"{record.topic}[{record.partition}]@{record.offset}"
