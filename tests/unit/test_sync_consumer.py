"""The sync consumer's failure classification, with fakes for the store and Kafka."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.errors import KafkaConnectionError

from services.sync.worker import DEAD_LETTER_FAMILY, SyncWorker
from shared.contract.contacts import event_id_for
from shared.settings import KontaktSettings


@dataclass
class Message:
    value: bytes
    key: bytes | None = None
    topic: str = "contacts.events"
    partition: int = 3
    offset: int = 41


class FakeStore:
    """Applying fails `fail` times; the database answers pings unless `down`."""

    def __init__(self, fail: int, error: Exception, down: int = 0) -> None:
        self.fail, self.error, self.down = fail, error, down
        self.applied: list[Any] = []
        self.calls = 0

    async def apply(self, event: Any, *, repairing: bool = False) -> bool:
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error
        self.applied.append(event)
        return True

    async def ping(self) -> None:
        if self.down > 0:
            self.down -= 1
            raise OSError("connection refused")


class FakeProducer:
    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.refuse = refuse

    async def send_and_wait(self, topic: str, value: bytes, key: Any, headers: Any) -> None:
        if self.refuse:
            raise KafkaConnectionError("broker down")
        self.sent.append((topic, value, {k: v.decode() for k, v in headers}))


def event_bytes() -> bytes:
    cid = uuid4()
    return json.dumps(
        {
            "event_id": str(event_id_for(cid, 2)),
            "type": "ContactArchived",
            "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
            "actor": "a",
            "correlation_id": "c",
            "contact_id": str(cid),
            "person_id": str(uuid4()),
            "aggregate_version": 2,
            "global_position": 9,
            "data": {"reason": None},
        }
    ).encode()


def worker(store: FakeStore, attempts: int = 3) -> SyncWorker:
    settings = KontaktSettings(sync_max_attempts=attempts)
    return SyncWorker(settings, store, object(), object())  # type: ignore[arg-type]


async def test_a_message_that_keeps_failing_is_dead_lettered_after_the_bounded_attempts() -> None:
    store = FakeStore(fail=100, error=ValueError("refused"))
    producer = FakeProducer()
    w = worker(store, attempts=3)
    await w._handle(producer, Message(event_bytes()), asyncio.Event())
    assert store.calls == 3
    [(topic, _, headers)] = producer.sent
    assert topic == w.settings.dead_letter_topic
    assert headers["x-family"] == DEAD_LETTER_FAMILY
    assert (headers["x-original-partition"], headers["x-original-offset"]) == ("3", "41")
    assert headers["x-error"] == "ValueError: refused"


async def test_an_outage_is_waited_out_without_counting_or_dead_lettering() -> None:
    # Five failures while the database does not answer, then it is back.
    store = FakeStore(fail=5, error=OSError("connection lost"), down=5)
    producer = FakeProducer()
    await worker(store, attempts=2)._handle(
        producer,
        Message(event_bytes()),
        asyncio.Event(),
    )
    assert len(store.applied) == 1 and producer.sent == []


async def test_unreadable_bytes_are_dead_lettered_at_once() -> None:
    store = FakeStore(fail=0, error=ValueError())
    producer = FakeProducer()
    await worker(store)._handle(producer, Message(b"\xff\xfe"), asyncio.Event())
    assert store.calls == 0 and [s[1] for s in producer.sent] == [b"\xff\xfe"]


async def test_a_dead_letter_kafka_refuses_raises_so_the_offset_is_not_committed() -> None:
    store = FakeStore(fail=0, error=ValueError())
    with pytest.raises(KafkaConnectionError):
        await worker(store)._handle(
            FakeProducer(refuse=True),
            Message(b"not json"),
            asyncio.Event(),
        )


async def test_the_sync_consumer_counts_only_what_it_applied_before_a_stop() -> None:
    store = FakeStore(fail=0, error=ValueError())
    w = worker(store)
    stop = asyncio.Event()
    applied: list[int] = []

    async def handle(producer: Any, message: Any, stop_: asyncio.Event) -> None:
        applied.append(message.offset)
        if message.offset == 2:
            stop.set()  # asked to stop while applying this one

    w._handle = handle  # type: ignore[method-assign,assignment]
    messages = [Message(event_bytes(), offset=o) for o in (1, 2, 3)]
    assert await w._partition_handler(FakeProducer(), stop)(messages) == 1
    assert applied == [1, 2]


class TogetherStore(FakeStore):
    """Applies runs together unless told the run fails (then the worker goes one by one)."""

    def __init__(self, together_fails: bool) -> None:
        super().__init__(fail=0, error=ValueError())
        self.together_fails = together_fails
        self.runs: list[int] = []

    async def apply_together(self, events: list[Any]) -> None:
        self.runs.append(len(events))
        if self.together_fails:
            raise ValueError("a gap: repair one by one")
        self.applied.extend(events)


async def test_a_partitions_readable_events_are_applied_together() -> None:
    store = TogetherStore(together_fails=False)
    messages = [Message(event_bytes(), offset=o) for o in (1, 2, 3)]
    done = await worker(store)._partition_handler(FakeProducer(), asyncio.Event())(messages)
    assert done == 3 and store.runs == [3] and len(store.applied) == 3 and store.calls == 0


async def test_a_run_that_fails_together_is_applied_one_by_one_around_an_unreadable_one() -> None:
    store = TogetherStore(together_fails=True)
    producer = FakeProducer()
    messages = [
        Message(event_bytes(), offset=1),
        Message(event_bytes(), offset=2),
        Message(b"not json", offset=3),
        Message(event_bytes(), offset=4),
    ]
    done = await worker(store)._partition_handler(producer, asyncio.Event())(messages)
    assert done == 4 and store.runs == [2] and store.calls == 3 and len(store.applied) == 3
    assert [s[1] for s in producer.sent] == [b"not json"]
