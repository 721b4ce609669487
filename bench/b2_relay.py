"""B2 relay: events per second from the event store to Kafka. Baseline: raw aiokafka produce
of the same payloads (the relay's own messages, already serialised) with the same producer
settings (idempotent, acks=all, the relay's linger), one `send()` per message and each batch
awaited in turn. Relay and baseline run in turn, three rounds each on topics of their own;
the figure is the median of each, every round printed beside its neighbour. Both are timed
from their producer's start (the relay's also covers its lock and topic checks). The
relay's own produce path alone (its record batches, without reading the store) is given
in the note too, so the cost of reading shows apart from the cost of producing.

    python -m bench.b2_relay [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from aiokafka import AIOKafkaProducer

from bench.common import Figure, Report, isolated, progress, run_alone
from bench.seed import seed
from services.contacts.relay import OutboundMessage, Relay
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.kafka import delete_topics, ensure_topics
from shared.settings import KontaktSettings

ROUNDS = 3


async def relay_all(settings: KontaktSettings, relay: Relay, target: int) -> float:
    """Run the relay until it published up to `target`; seconds from start to caught up."""
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    while relay.position < target:
        if task.done():
            task.result()
            raise RuntimeError("the relay stopped early")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.wait_for(task, 60)
    return elapsed


Produce = Callable[[AIOKafkaProducer, str, list[OutboundMessage]], Awaitable[None]]


async def send_each(producer: AIOKafkaProducer, topic: str, batch: list[OutboundMessage]) -> None:
    """The baseline's way: one send() per message, then the batch's acknowledgements."""
    futures = [await producer.send(topic, value=m.value, key=m.key) for m in batch]
    await asyncio.gather(*futures)


async def produce_all(
    settings: KontaktSettings, topic: str, batches: list[list[OutboundMessage]], produce: Produce
) -> float:
    """Produce the same messages in the same batches with the relay's producer settings;
    seconds from the producer's start to the last acknowledgement."""
    await _leaders_ready(settings, topic)
    started = time.perf_counter()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.relay_linger_ms,
        request_timeout_ms=15_000,
    )
    await producer.start()
    try:
        for batch in batches:
            await produce(producer, topic, batch)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _leaders_ready(settings: KontaktSettings, topic: str) -> None:
    """One acknowledged message on every partition of a new topic (not timed), so that no
    round waits for a partition's leader to be elected."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        partitions = await producer.partitions_for(topic)
        await asyncio.gather(
            *[
                await producer.send(topic, b"warm-up", key=b"warm-up", partition=p)
                for p in partitions
            ]
        )
    finally:
        await producer.stop()


def run(report: Report, quick: bool = False) -> None:
    """Run B2."""
    events = 20_000 if quick else 100_000
    rounds: list[tuple[float, float, float]] = []
    with isolated("b2") as settings:
        contacts = build_contacts_app(settings)
        topics: list[str] = []
        try:
            progress(f"seeding {events:,} events")
            stored, seconds = seed(contacts, events, progress=progress)
            progress(f"seeded {stored:,} events in {seconds:.1f}s")
            target = contacts.recorder.max_notification_id() or 0
            # The same payloads, read once (not timed), for the raw producer.
            reader = Relay(settings, contacts)
            batches: list[list[OutboundMessage]] = []
            while reader.position < target:
                messages, last = reader.read_batch()
                assert last is not None
                batches.append(messages)
                reader.position = last
            count = sum(len(b) for b in batches)

            async def relay_path(
                producer: AIOKafkaProducer, _topic: str, batch: list[OutboundMessage]
            ) -> None:
                await reader.publish(producer, batch)

            for n in range(1, ROUNDS + 1):
                own = settings.model_copy(
                    update={"contacts_topic": f"{settings.contacts_topic}.{n}"}
                )
                raw_topic, path_topic = f"{own.contacts_topic}.raw", f"{own.contacts_topic}.path"
                topics += [own.contacts_topic, raw_topic, path_topic]
                for topic in (own.contacts_topic, raw_topic, path_topic):
                    t = own.model_copy(update={"contacts_topic": topic})
                    asyncio.run(ensure_topics(t, [topic]))
                asyncio.run(_leaders_ready(own, own.contacts_topic))
                progress(f"round {n}: relay store -> Kafka")
                relay = Relay(own, contacts)
                relay_seconds = asyncio.run(relay_all(own, relay, target))
                assert relay.published == count, (relay.published, count)
                progress(f"round {n}: raw aiokafka produce")
                raw_seconds = asyncio.run(produce_all(own, raw_topic, batches, send_each))
                progress(f"round {n}: the relay's produce path alone")
                to_path = [[replace(m, topic=path_topic) for m in b] for b in batches]
                path_seconds = asyncio.run(produce_all(own, path_topic, to_path, relay_path))
                rounds.append((count / relay_seconds, count / raw_seconds, count / path_seconds))
                progress(
                    f"round {n}: relay {rounds[-1][0]:,.0f} | raw {rounds[-1][1]:,.0f}"
                    f" ({rounds[-1][0] / rounds[-1][1]:.2f}x) | produce path alone"
                    f" {rounds[-1][2]:,.0f} events/s"
                )
        finally:
            close_contacts_app(contacts)
            asyncio.run(delete_topics(settings.kafka_bootstrap, topics))
    relay_rate = statistics.median(r[0] for r in rounds)
    raw_rate = statistics.median(r[1] for r in rounds)
    path_rate = statistics.median(r[2] for r in rounds)
    pairs = ", ".join(f"{r:,.0f} vs {b:,.0f} ({r / b:.2f}x)" for r, b, _ in rounds)
    report.add(
        Figure(
            "B2",
            "relay store -> Kafka",
            relay_rate,
            "events/s",
            raw_rate,
            "raw aiokafka produce, same payloads and acks",
            target="≥ 0.6x",
            met=relay_rate >= 0.6 * raw_rate,
            note=(
                f"medians of {ROUNDS} rounds of {count:,} events, relay vs raw: {pairs};"
                f" the relay's produce path alone {path_rate:,.0f} events/s;"
                f" seeding {stored:,} events took {seconds:.1f}s"
            ),
        )
    )


def main() -> None:
    """Run B2 alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
