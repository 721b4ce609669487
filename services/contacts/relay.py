"""The outbox relay: publishes the event store's notification log to Kafka, in order.

The event store's notification log is the outbox: commands only write events,
and this relay publishes them afterwards, so there are no dual writes. It
reads from its own recorded position, wakes on PostgreSQL NOTIFY (polling as
a fallback), publishes each batch with an idempotent producer (acks=all) and
records the new position only after Kafka acknowledged the whole batch. A
crash re-publishes at most the unacknowledged batch: at-least-once, in order
per key. One relay is active at a time (a PostgreSQL advisory lock); others
wait as hot standbys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
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

    # --------------------------------------------------------------- store side

    def read_batch(self) -> tuple[list[OutboundMessage], int | None]:
        """The next batch as Kafka messages, and the last store position it covers."""
        events, last = self.reader.read_published(self.position, self.settings.relay_batch_size)
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
            if not await self._deliver([self._message(e) for e in events], stop):
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
            linger_ms=5,
            request_timeout_ms=15_000,
        )
        await producer.start()
        return producer

    async def publish(
        self, producer: AIOKafkaProducer, messages: Sequence[OutboundMessage]
    ) -> None:
        """Send a batch and wait until Kafka acknowledged every message."""
        futures = [await producer.send(m.topic, value=m.value, key=m.key) for m in messages]
        await asyncio.gather(*futures)

    async def _publish_watched(
        self, producer: AIOKafkaProducer, messages: Sequence[OutboundMessage]
    ) -> None:
        """Publish, saying every few seconds why we wait; give up after PUBLISH_TIMEOUT."""
        task = asyncio.ensure_future(self.publish(producer, messages))
        started = asyncio.get_running_loop().time()
        while True:
            done, _ = await asyncio.wait({task}, timeout=WAIT_LOG_SECONDS)
            if done:
                task.result()
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
                task.cancel()
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
                messages, last = await asyncio.to_thread(self.read_batch)
                if last is None:
                    await self._observe_lag()
                    await self._wait_for_notify(conn, stop)
                    continue
                if not await self._deliver(messages, stop):
                    return
                self.position = last
                await self._save_position(conn, self.position)
                self.published += len(messages)
                self._observe(len(messages))
        finally:
            if self._producer is not None:
                await _close_quietly(self._producer)
                self._producer = None

    async def _deliver(self, messages: Sequence[OutboundMessage], stop: asyncio.Event) -> bool:
        """Publish a batch, waiting Kafka out with the position kept; False if stopped first."""

        async def attempt() -> bool:
            if not self._topic_ready:
                await ensure_topics(
                    self.settings, [self.settings.contacts_topic, self.settings.infotags_topic]
                )
                self._topic_ready = True
            if self._producer is None:
                self._producer = await self._start_producer()
            if messages:
                await self._publish_watched(self._producer, messages)
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
