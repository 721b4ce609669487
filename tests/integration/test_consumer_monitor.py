"""The consumer monitor on the real Kafka: committed offsets sampled, stalls judged, health told.

The monitor's clock is a test's own, so "no progress for the stall time" needs no waiting.
"""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.kafka import ensure_topics
from shared.lag import ConsumerLagUnknownError, ConsumerMonitor
from shared.observability import health_app, metrics
from shared.settings import KontaktSettings
from shared.stall import ConsumerStalledError
from tests.support import eventually, free_port

STALL = 60.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def publish(settings: KontaktSettings, topic: str, count: int) -> int:
    """Publish count messages with one key; the partition they went to."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, b"{}", key=b"k") for _ in range(count)]
    finally:
        await producer.stop()
    return sent[0].partition


async def commit(settings: KontaktSettings, group: str, tp: TopicPartition, offset: int) -> None:
    """Commit an offset for a group, as a consumer that read up to there would."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def ready_answer(monitor: ConsumerMonitor) -> httpx.Response:
    """What /health/ready of a worker with this monitor answers."""

    async def ready() -> None:
        monitor.check()

    transport = httpx.ASGITransport(app=health_app("projections", ready))
    async with httpx.AsyncClient(transport=transport, base_url="http://health") as client:
        return await client.get("/health/ready")


def gauge(group: str, topic: str, partition: int) -> float | None:
    """The process's kontakt_consumer_stalled value for a partition."""
    return metrics().registry.get_sample_value(
        "kontakt_consumer_stalled", {"group": group, "topic": topic, "partition": str(partition)}
    )


def test_a_group_with_lag_and_no_committed_progress_is_stalled_and_a_moving_one_is_not(
    isolated_settings: KontaktSettings,
) -> None:
    s = isolated_settings
    topic, group = s.activities_topic, f"kontakt-test-{uuid4().hex[:8]}"

    async def scenario() -> None:
        await ensure_topics(s, [topic])
        partition = await publish(s, topic, 10)
        tp = TopicPartition(topic, partition)
        await commit(s, group, tp, 1)
        clock = Clock()
        monitor = ConsumerMonitor(s.kafka_bootstrap, {group: [topic]}, STALL, clock)

        await monitor.sample()
        monitor.check()  # just seen: not judged yet

        # Lag all along, but the committed offset moves between samples: not stalled.
        for offset in (3, 6, 9):
            clock.now += STALL * 2
            await commit(s, group, tp, offset)
            await monitor.sample()
            monitor.check()
            assert (await ready_answer(monitor)).status_code == 200
            assert gauge(group, topic, partition) == 0.0

        # Lag and no progress for the stall time (more messages meanwhile): stalled.
        await publish(s, topic, 2)
        clock.now += STALL
        await monitor.sample()
        with pytest.raises(ConsumerStalledError) as stalled:
            monitor.check()
        [stall] = stalled.value.stalls
        assert (stall.group, stall.topic, stall.partition) == (group, topic, partition)
        assert (stall.committed, stall.end, stall.seconds) == (9, 12, STALL)
        assert gauge(group, topic, partition) == 1.0
        answer = await ready_answer(monitor)
        assert answer.status_code == 503
        body = answer.json()
        assert body["stalled"] == [
            {"group": group, "topic": topic, "partition": partition, "committed": 9,
             "end": 12, "lag": 3, "stalled_seconds": STALL}
        ]  # fmt: skip
        assert f"{topic}[{partition}] at offset 9" in body["detail"]
        lag = {p["partition"]: p for p in await monitor.lag()}
        assert lag[partition]["stalled"] and lag[partition]["lag"] == 3

        # Caught up: no lag, never stalled, the gauge is 0 again.
        await commit(s, group, tp, 12)
        clock.now += STALL
        await monitor.sample()
        monitor.check()
        assert gauge(group, topic, partition) == 0.0

    asyncio.run(scenario())


def test_offsets_that_cannot_be_sampled_for_the_stall_time_make_the_worker_not_ready(
    isolated_settings: KontaktSettings,
) -> None:
    clock = Clock()
    monitor = ConsumerMonitor(
        f"127.0.0.1:{free_port()}", {"g": [isolated_settings.activities_topic]}, 1.0, clock
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        try:
            # One failed round (the port is closed) is enough to know the offsets are unknown.
            await eventually(lambda: monitor.sample_error is not None, "no sampling round failed")
        finally:
            stop.set()
            await task
        monitor.check()  # not yet for the stall time
        clock.now += 1.0
        with pytest.raises(ConsumerLagUnknownError):
            monitor.check()
        assert (await ready_answer(monitor)).status_code == 503
        # /lag needs Kafka: unreachable, it answers 503 with the reason, not 500.
        app = health_app("projections", _ready, {"/lag": monitor.lag})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://health") as client:
            answer = await client.get("/lag")
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("KafkaConnectionError")

    asyncio.run(scenario())


async def _ready() -> None:
    """Always ready."""
