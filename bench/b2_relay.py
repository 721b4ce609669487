"""B2 relay: events per second from the event store to Kafka. Baseline: raw aiokafka produce
of the same payloads (the relay's own messages, already serialised) with the same producer
settings (idempotent, acks=all, linger 5 ms) and the same batches awaited the same way.

    python -m bench.b2_relay [--quick]
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from bench.common import Figure, Report, isolated, progress, run_alone
from bench.seed import seed
from services.contacts.relay import OutboundMessage, Relay
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.kafka import ensure_topics
from shared.settings import KontaktSettings


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


async def raw_produce(
    settings: KontaktSettings, topic: str, batches: list[list[OutboundMessage]]
) -> float:
    """Produce the same messages in the same batches with the relay's producer settings."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=15_000,
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up", key=b"warm-up")
        started = time.perf_counter()
        for batch in batches:
            futures = [await producer.send(topic, value=m.value, key=m.key) for m in batch]
            await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def run(report: Report, quick: bool = False) -> None:
    """Run B2."""
    events = 20_000 if quick else 100_000
    with isolated("b2") as settings:
        contacts = build_contacts_app(settings)
        try:
            progress(f"seeding {events:,} events")
            stored, seconds = seed(contacts, events, progress=progress)
            progress(f"seeded {stored:,} events in {seconds:.1f}s")
            target = contacts.recorder.max_notification_id() or 0
            asyncio.run(ensure_topics(settings, [settings.contacts_topic]))
            relay = Relay(settings, contacts)
            progress("relay: store -> Kafka")
            relay_seconds = asyncio.run(relay_all(settings, relay, target))
            published = relay.published
            # The same payloads, read again (not timed), for the raw producer.
            reader = Relay(settings, contacts)
            batches: list[list[OutboundMessage]] = []
            while reader.position < target:
                messages, last = reader.read_batch()
                assert last is not None
                batches.append(messages)
                reader.position = last
            raw_topic = f"{settings.contacts_topic}.raw"
            asyncio.run(
                ensure_topics(
                    settings.model_copy(update={"contacts_topic": raw_topic}), [raw_topic]
                )
            )
            progress("baseline: raw aiokafka produce")
            raw_seconds = asyncio.run(raw_produce(settings, raw_topic, batches))
            raw_count = sum(len(b) for b in batches)
        finally:
            close_contacts_app(contacts)
            asyncio.run(_delete(settings, f"{settings.contacts_topic}.raw"))
    relay_rate = published / relay_seconds
    raw_rate = raw_count / raw_seconds
    report.add(
        Figure(
            "B2",
            "relay store -> Kafka",
            relay_rate,
            "events/s",
            raw_rate,
            "raw aiokafka produce, same payloads and acks",
            target="≥ 0.5x",
            met=relay_rate >= 0.5 * raw_rate,
            note=f"{published:,} events; seeding {stored:,} events took {seconds:.1f}s",
        )
    )


async def _delete(settings: KontaktSettings, topic: str) -> None:
    from shared.kafka import delete_topics

    await delete_topics(settings.kafka_bootstrap, [topic])


def main() -> None:
    """Run B2 alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
