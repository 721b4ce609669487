"""Dead letters: messages a worker could not apply, kept on a topic with the error."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.kafka import Record, read_topic
from shared.settings import KontaktSettings


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter: where it is, where it came from, why it failed."""

    id: str
    original_topic: str
    original_partition: int
    original_offset: int
    family: str
    error: str
    failed_at: str
    resubmitted_at: datetime | None
    record: Record


def _letter(record: Record, resubmitted: dict[tuple[int, int], datetime]) -> DeadLetter:
    return DeadLetter(
        id=f"{record.partition}:{record.offset}",
        original_topic=record.header("x-original-topic") or "?",
        original_partition=int(record.header("x-original-partition") or -1),
        original_offset=int(record.header("x-original-offset") or -1),
        family=record.header("x-family") or "?",
        error=record.header("x-error") or "",
        failed_at=record.header("x-failed-at") or "",
        resubmitted_at=resubmitted.get((record.partition, record.offset)),
        record=record,
    )


async def list_dead_letters(
    settings: KontaktSettings, pool: asyncpg.Pool, family: str | None = None
) -> list[DeadLetter]:
    """Every dead letter on the topic (of one family, if named), with when it was re-submitted."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            'SELECT partition, "offset", resubmitted_at FROM ledger.dead_letter_resubmits'
        )
    resubmitted = {(r["partition"], r["offset"]): r["resubmitted_at"] for r in rows}
    records = await read_topic(settings.kafka_bootstrap, settings.dead_letter_topic)
    letters = [_letter(r, resubmitted) for r in records]
    return [d for d in letters if family is None or d.family == family]


async def resubmit(
    settings: KontaktSettings,
    pool: asyncpg.Pool,
    ids: Collection[str] | None = None,
    family: str | None = None,
) -> list[DeadLetter]:
    """Publish dead letters again to their original topics (all not yet re-submitted, or `ids`).

    With a family, only that family's letters are chosen (and `ids` must be among them).
    """
    letters = await list_dead_letters(settings, pool, family)
    if ids is None:
        chosen = [d for d in letters if d.resubmitted_at is None]
    else:
        unknown = set(ids) - {d.id for d in letters}
        if unknown:
            of = f" of {family}" if family else ""
            raise KeyError(f"no dead letter{of} {', '.join(sorted(unknown))}")
        chosen = [d for d in letters if d.id in set(ids)]
    if not chosen:
        return []
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for letter in chosen:
            await producer.send_and_wait(
                letter.original_topic, letter.record.value, key=letter.record.key
            )
            async with pool.acquire() as conn:
                await conn.execute(
                    'INSERT INTO ledger.dead_letter_resubmits (partition, "offset") VALUES ($1, $2)'
                    ' ON CONFLICT (partition, "offset") DO UPDATE SET resubmitted_at = now()',
                    letter.record.partition,
                    letter.record.offset,
                )
    finally:
        await producer.stop()
    return chosen
