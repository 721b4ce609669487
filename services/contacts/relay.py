"""The outbox relay: publishes the event store's notification log to Kafka, in order.

The event store's notification log is the outbox: commands only write events,
and this relay publishes them afterwards, so there are no dual writes. It
reads from its own recorded position, wakes on PostgreSQL NOTIFY (polling as
a fallback), publishes each batch with an idempotent producer (acks=all) and
records a batch's position only after Kafka acknowledged it and every batch
before it. A few batches are in flight at once while the next is read; a crash
re-publishes at most those unacknowledged batches: at-least-once, in order per
key. One relay is active at a time (a PostgreSQL advisory lock); others
wait as hot standbys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg import sql
from psycopg_pool import PoolTimeout
from tenacity import RetryCallState

from services.contacts.application import ContactsApp
from services.contacts.export import PublishedEvent, StoreReader
from shared import locks
from shared.contract.infotags import CATALOGUE_ID, InfotagEventBase
from shared.kafka import ensure_topics
from shared.observability import metrics
from shared.retrying import error_of, next_wait, wait_out
from shared.settings import KontaktSettings
from shared.waiting import wait_for_stop as _wait

log = logging.getLogger("kontakt.relay")

#: How often the relay looks at the store's newest position for its lag gauge.
LAG_EVERY_SECONDS = 2.0

#: How often the relay says why it waits, and when it gives a batch up (to retry it).
WAIT_LOG_SECONDS = 2.0
PUBLISH_TIMEOUT_SECONDS = 60.0

#: Batches handed to the producer and not yet acknowledged, at most, while the next is read.
IN_FLIGHT_BATCHES = 4


async def recorded_position(settings: KontaktSettings, name: str = "") -> dict[str, Any]:
    """The position the relay recorded and when (position 0, no time: none recorded yet)."""
    async with await psycopg.AsyncConnection.connect(
        settings.pg_dsn(), connect_timeout=5, autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT to_regclass('relay_positions') IS NOT NULL")
        exists = await cur.fetchone()
        row = None
        if exists and exists[0]:
            cur = await conn.execute(
                "SELECT position, updated_at FROM relay_positions WHERE name = %s",
                (name or settings.contacts_topic,),
            )
            row = await cur.fetchone()
    return {"position": int(row[0]) if row else 0, "updated_at": row[1] if row else None}


@dataclass(frozen=True)
class OutboundMessage:
    """One Kafka message: topic, key, value and the store position it came from."""

    topic: str
    key: bytes
    value: bytes
    position: int


class LostLeadershipError(RuntimeError):
    """The advisory-lock connection broke: another relay may be active now."""


class Relay:
    """Publishes the event store's contact and catalogue events to their topics, in order."""

    def __init__(self, settings: KontaktSettings, contacts: ContactsApp, name: str = "") -> None:
        self.settings = settings
        self.contacts = contacts
        self.reader = StoreReader(contacts)
        self.name = name or settings.contacts_topic
        self.position = 0
        self.published = 0
        self.active = False
        self._lag_observed_at = 0.0
        self._lag_task: asyncio.Task[None] | None = None  # kept: a task needs a reference
        self._producer: AIOKafkaProducer | None = None
        self._topic_ready = False
        self._lock_id = locks.relay_leadership(self.name)
        self._partition_of: dict[tuple[bytes, int], int] = {}

    # --------------------------------------------------------------- store side

    def read_batch(self, after: int | None = None) -> tuple[list[OutboundMessage], int | None]:
        """The batch after a position (default: the relay's) as Kafka messages, and the
        last store position it covers."""
        start = self.position if after is None else after
        events, last = self.reader.read_published(start, self.settings.relay_batch_size)
        return [self._message(e) for e in events], last

    def _message(self, event: PublishedEvent) -> OutboundMessage:
        if isinstance(event, InfotagEventBase):
            # One key for the whole catalogue: consumers see its changes in order.
            topic, key = self.settings.infotags_topic, CATALOGUE_ID
        else:
            topic, key = self.settings.contacts_topic, event.person_id
        return OutboundMessage(
            topic=topic,
            key=str(key).encode(),
            value=event.model_dump_json().encode(),
            position=event.global_position,
        )

    async def _publish_earlier_catalogue(
        self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event
    ) -> bool:
        """Once per store: publish the catalogue events stored before the relay published
        them (behind its position). False if stopped first."""
        marker = f"{self.name}:catalogue"
        cur = await conn.execute("SELECT 1 FROM relay_positions WHERE name = %s", (marker,))
        if await cur.fetchone():
            return True
        events = await asyncio.to_thread(self.reader.catalogue_events, self.position)
        if events:
            log.info("publishing %d catalogue events stored before they were relayed", len(events))
            messages = [self._message(e) for e in events]
            if not await self._deliver(lambda producer: self.publish(producer, messages), stop):
                return False
        await conn.execute(
            "INSERT INTO relay_positions (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO NOTHING",
            (marker, self.position),
        )
        return True

    # --------------------------------------------------------------- lock side

    async def _try_lock(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_id,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _load_position(self, conn: psycopg.AsyncConnection[Any]) -> int:
        cur = await conn.execute(
            "SELECT position FROM relay_positions WHERE name = %s", (self.name,)
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _save_position(self, conn: psycopg.AsyncConnection[Any], position: int) -> None:
        try:
            await conn.execute(
                "INSERT INTO relay_positions (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
                " updated_at = now()",
                (self.name, position),
            )
        except psycopg.Error as exc:
            raise LostLeadershipError(f"lock connection lost: {exc}") from exc

    # --------------------------------------------------------------- kafka side

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.settings.relay_linger_ms,
            request_timeout_ms=15_000,
        )
        await producer.start()
        return producer

    async def publish(
        self, producer: AIOKafkaProducer, messages: Sequence[OutboundMessage]
    ) -> None:
        """Send a batch and wait until Kafka acknowledged every message."""
        await self._acknowledged(messages, await self.submit(producer, messages))

    async def submit(
        self, producer: AIOKafkaProducer, messages: Sequence[OutboundMessage]
    ) -> asyncio.Future[Any]:
        """Hand a batch to the producer, in order per partition; the answer settles once
        Kafka acknowledged all of it."""
        # One record batch per partition (the producer splits nothing itself here): the
        # per-message send() path cost as much CPU as reading the events did.
        builders: dict[tuple[str, int], list[Any]] = {}
        partitions: dict[str, list[int]] = {}
        for m in messages:
            if m.topic not in partitions:
                partitions[m.topic] = sorted(await producer.partitions_for(m.topic))
            tp = (m.topic, self._partition(m.key, partitions[m.topic]))
            chain = builders.get(tp)
            if chain is None:
                chain = builders[tp] = [producer.create_batch()]
            if chain[-1].append(key=m.key, value=m.value, timestamp=None) is None:
                chain.append(producer.create_batch())  # full: the next one follows it
                if chain[-1].append(key=m.key, value=m.value, timestamp=None) is None:
                    raise ValueError(f"message at position {m.position} is too large")

        async def send(topic: str, partition: int, chain: list[Any]) -> list[Any]:
            # In order: the producer queues a partition's next batch behind the last one.
            return [await producer.send_batch(b, topic, partition=partition) for b in chain]

        sent = await asyncio.gather(*(send(t, p, chain) for (t, p), chain in builders.items()))
        return asyncio.gather(*(f for futures in sent for f in futures))

    def _partition(self, key: bytes, partitions: list[int]) -> int:
        """The partition the producer's default partitioner chooses for a key (Kafka's:
        murmur2 of the key over the partitions by id), remembered per key."""
        known = self._partition_of.get((key, len(partitions)))
        if known is None:
            if len(self._partition_of) >= 100_000:  # bounded: keys of recent batches
                self._partition_of.clear()
            known = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            self._partition_of[(key, len(partitions))] = known
        return known

    async def _acknowledged(
        self, messages: Sequence[OutboundMessage], acks: asyncio.Future[Any]
    ) -> None:
        """Wait for a batch's acknowledgements, saying every few seconds why we wait;
        give up after PUBLISH_TIMEOUT."""
        started = asyncio.get_running_loop().time()
        while True:
            done, _ = await asyncio.wait({acks}, timeout=WAIT_LOG_SECONDS)
            if done:
                acks.result()
                return
            waited = asyncio.get_running_loop().time() - started
            log.warning(
                "waiting for Kafka at %s: %d messages (positions %d-%d) not acknowledged"
                " after %.0fs",
                self.settings.kafka_bootstrap,
                len(messages),
                messages[0].position,
                messages[-1].position,
                waited,
            )
            if waited >= PUBLISH_TIMEOUT_SECONDS:
                acks.cancel()
                raise TimeoutError(f"no acknowledgement within {PUBLISH_TIMEOUT_SECONDS}s")

    def _observe(self, published: int) -> None:
        m = metrics()
        m.relay_published.inc(published)
        m.relay_position.set(self.position)
        now = time.monotonic()
        if now - self._lag_observed_at >= LAG_EVERY_SECONDS:
            # The store's newest position costs a query: look now and then, not per batch.
            self._lag_observed_at = now
            self._lag_task = asyncio.get_running_loop().create_task(self._observe_lag())

    async def _observe_lag(self) -> None:
        newest = await asyncio.to_thread(self.reader.max_position)
        metrics().relay_lag.set(max(0, newest - self.position))

    # ------------------------------------------------------------------- loop

    async def run(self, stop: asyncio.Event) -> None:
        """Wait to become the active relay, then publish until `stop` is set."""
        dsn = self.settings.pg_dsn()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            said_standby = False
            while not await self._try_lock(conn):
                if not said_standby:
                    log.info("standby: another relay holds the lock; waiting to take over")
                    said_standby = True
                if await _wait(stop, 1.0):
                    return
            self.active = True
            metrics().relay_active.set(1)
            channel = self.contacts.recorder.channel_name  # type: ignore[attr-defined]
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.position = await self._load_position(conn)
            log.info(
                "active: relaying from position %d to %s and %s",
                self.position,
                self.settings.contacts_topic,
                self.settings.infotags_topic,
            )
            await self._relay(conn, stop)

    async def _relay(self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        try:
            if not await self._publish_earlier_catalogue(conn, stop):
                return
            while not stop.is_set():
                batch = await asyncio.to_thread(self.read_batch)
                if batch[1] is None:
                    await self._observe_lag()
                    await self._wait_for_notify(conn, stop)
                    continue
                if not await self._deliver_from_position(conn, batch, stop):
                    return
        finally:
            if self._producer is not None:
                await _close_quietly(self._producer)
                self._producer = None

    async def _deliver_from_position(
        self,
        conn: psycopg.AsyncConnection[Any],
        first: tuple[list[OutboundMessage], int | None],
        stop: asyncio.Event,
    ) -> bool:
        """Publish from the relay's position until caught up, waiting Kafka out with the
        position kept; False if stopped first. `first` is the batch read at the position."""
        read_at = self.position

        async def publish(producer: AIOKafkaProducer) -> None:
            # After an outage the stream starts again from the last acknowledged position.
            batch = first if self.position == read_at else None
            await self._stream(conn, producer, batch, stop)

        return await self._deliver(publish, stop)

    async def _stream(
        self,
        conn: psycopg.AsyncConnection[Any],
        producer: AIOKafkaProducer,
        batch: tuple[list[OutboundMessage], int | None] | None,
        stop: asyncio.Event,
    ) -> None:
        """Publish batch after batch until nothing is new (or stop is set), reading the next
        while earlier ones await their acknowledgements; each batch's position is saved once
        it and every batch before it are acknowledged."""
        in_flight: deque[tuple[list[OutboundMessage], int, asyncio.Future[Any]]] = deque()
        reading: asyncio.Future[tuple[list[OutboundMessage], int | None]] | None = None
        try:
            if batch is None:
                batch = await asyncio.to_thread(self.read_batch)
            while True:
                messages, last = batch
                if last is None:
                    break
                in_flight.append((messages, last, await self._submit_or_done(producer, messages)))
                if stop.is_set():
                    break
                reading = asyncio.ensure_future(asyncio.to_thread(self.read_batch, last))
                while in_flight and (in_flight[0][2].done() or len(in_flight) >= IN_FLIGHT_BATCHES):
                    await self._settle(conn, *in_flight.popleft())
                batch, reading = await reading, None
            while in_flight:
                await self._settle(conn, *in_flight.popleft())
        finally:
            if reading is not None:
                reading.cancel()
            for _, _, acks in in_flight:
                acks.cancel()

    async def _submit_or_done(
        self, producer: AIOKafkaProducer, messages: Sequence[OutboundMessage]
    ) -> asyncio.Future[Any]:
        if messages:
            return await self.submit(producer, messages)
        nothing: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        nothing.set_result(None)  # a batch of events that are not published
        return nothing

    async def _settle(
        self,
        conn: psycopg.AsyncConnection[Any],
        messages: list[OutboundMessage],
        last: int,
        acks: asyncio.Future[Any],
    ) -> None:
        """Record a batch's position once Kafka acknowledged it."""
        if messages:
            await self._acknowledged(messages, acks)
        self.position = last
        await self._save_position(conn, last)
        self.published += len(messages)
        self._observe(len(messages))

    async def _deliver(
        self, publish: Callable[[AIOKafkaProducer], Awaitable[None]], stop: asyncio.Event
    ) -> bool:
        """Publish with a ready producer, waiting Kafka out with the position kept; False
        if stopped first."""

        async def attempt() -> bool:
            if not self._topic_ready:
                await ensure_topics(
                    self.settings, [self.settings.contacts_topic, self.settings.infotags_topic]
                )
                self._topic_ready = True
            if self._producer is None:
                self._producer = await self._start_producer()
            await publish(self._producer)
            return True

        async def say(state: RetryCallState) -> None:
            exc = error_of(state)
            log.warning(
                "waiting for Kafka (%s: %s); position %d kept, retrying in %.1fs",
                type(exc).__name__,
                exc,
                self.position,
                next_wait(state),
            )
            if self._producer is not None:  # a new one after the wait
                await _close_quietly(self._producer)
                self._producer = None

        def kafka_outage(exc: BaseException) -> bool:
            return isinstance(exc, KafkaError | OSError | TimeoutError)

        delivered = await wait_out(attempt, kafka_outage, stop, say, first=1.0, jitter=0.5)
        return delivered is True

    async def _wait_for_notify(
        self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event
    ) -> None:
        # NOTIFY wakes us at once; the timeout is the polling fallback (and lets
        # a stop request through).
        try:
            async for _ in conn.notifies(timeout=self.settings.relay_poll_seconds, stop_after=1):
                pass
        except psycopg.Error as exc:
            raise LostLeadershipError(f"lock connection lost: {exc}") from exc


def is_store_outage(exc: BaseException) -> bool:
    """True when an error means PostgreSQL is unreachable or restarting (not a bug)."""
    return isinstance(
        exc,
        LostLeadershipError
        | psycopg.OperationalError
        | OperationalError
        | InterfaceError
        | PoolTimeout
        | OSError,
    )


async def relay_until_stopped(relay: Relay, stop: asyncio.Event) -> None:
    """Relay until stopped; a lost database connection sends the relay back to standby.

    While PostgreSQL restarts the lock connection breaks (so another relay may take
    over); this one waits, then competes for the lock again and resumes from the
    recorded position.
    """

    def say(state: RetryCallState) -> None:
        exc = error_of(state)
        relay.active = False
        metrics().relay_active.set(0)
        log.warning(
            "PostgreSQL unreachable (%s: %s); standing by, trying again in %.1fs",
            type(exc).__name__,
            exc,
            next_wait(state),
        )

    await wait_out(lambda: relay.run(stop), is_store_outage, stop, say)


async def _close_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=10)
    except Exception as exc:  # closing a producer of a dead broker may fail any way
        log.debug("producer close: %s", exc)
