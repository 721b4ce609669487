"""The shared consuming loop: what it commits and what comes again (a fake consumer)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from shared.consuming import consume

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def records(tp: TopicPartition, *offsets: int) -> list[Any]:
    return [
        SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=o, value=b"")
        for o in offsets
    ]


class Consumer:
    """Hands out the scripted fetches, then asks the loop to stop."""

    def __init__(self, stop: asyncio.Event, *fetches: dict[TopicPartition, list[Any]]) -> None:
        self.stop, self.fetches = stop, list(fetches)
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if not self.fetches:
            self.stop.set()
            return {}
        return self.fetches.pop(0)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


async def run(source: Consumer, handle: Any, fetched: Any = None) -> None:
    await asyncio.wait_for(consume(source, handle, source.stop, fetched), 5)


async def test_each_partition_is_committed_past_what_its_handler_did() -> None:
    stop = asyncio.Event()
    source = Consumer(stop, {A: records(A, 5, 6), B: records(B, 9)})
    seen: list[int] = []

    async def handle(batch: list[Any]) -> int:
        seen.extend(r.offset for r in batch)
        return len(batch)

    fetches = 0

    def fetched() -> None:
        nonlocal fetches
        fetches += 1

    await run(source, handle, fetched)
    assert sorted(seen) == [5, 6, 9] and fetches == 1
    assert source.commits == [{A: 7, B: 10}] and source.seeks == []


async def test_a_partition_whose_handler_raises_comes_again_and_the_others_go_on() -> None:
    stop = asyncio.Event()
    source = Consumer(stop, {A: records(A, 5, 6), B: records(B, 9)})

    async def handle(batch: list[Any]) -> int:
        if batch[0].partition == 0:
            raise ConnectionError("Kafka refused the dead letter")
        return len(batch)

    await run(source, handle)
    assert source.commits == [{B: 10}] and source.seeks == [(A, 5)]


async def test_records_a_handler_did_not_get_to_come_again() -> None:
    stop = asyncio.Event()
    source = Consumer(stop, {A: records(A, 5, 6, 7)})

    async def handle(batch: list[Any]) -> int:
        return 1  # stopped after the first one

    await run(source, handle)
    assert source.commits == [{A: 6}] and source.seeks == [(A, 6)]


async def test_nothing_done_commits_nothing() -> None:
    stop = asyncio.Event()
    source = Consumer(stop, {A: records(A, 5)})

    async def handle(batch: list[Any]) -> int:
        return 0

    await run(source, handle)
    assert source.commits == [] and source.seeks == [(A, 5)]


async def test_one_partitions_wait_does_not_hold_up_another() -> None:
    stop = asyncio.Event()
    source = Consumer(stop, {A: records(A, 1), B: records(B, 1)})
    b_done = asyncio.Event()

    async def handle(batch: list[Any]) -> int:
        if batch[0].partition == 0:
            await asyncio.wait_for(b_done.wait(), 2)  # A waits until B finished
        else:
            b_done.set()
        return len(batch)

    await run(source, handle)
    assert source.commits == [{A: 2, B: 2}]
