"""The projection worker: Kafka consumers that keep the read models, one group per family.

At-least-once: a message's offset is committed only after its read-model
transaction committed (or after it was dead-lettered). A re-delivery changes
nothing, because the read model's own record (a contact's version, an
e-mail's message id, an item field's time) decides what applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError
from tenacity import RetryCallState

from services.projections import handlers
from services.projections.availability import DatabaseUnavailableError, is_database_outage
from services.projections.sql import infotags as infotags_sql
from shared.auth import AuthError, mint_token
from shared.consuming import consume, consumer, dead_letter, producer, where
from shared.contact_events import ContactEventsUnavailableError, fetch_contact_events
from shared.contract.contacts import ContactEvent, ContactEventBase, contact_event_adapter
from shared.contract.inbound import activity_event_adapter, item_event_adapter
from shared.contract.infotags import infotag_event_adapter
from shared.contract.sync import OutlookSyncStatusChanged
from shared.kafka import ensure_topics
from shared.lag import ConsumerMonitor
from shared.migrations import migrate_async
from shared.observability import correlation_id, metrics, seconds_since
from shared.retrying import (
    doubling_wait,
    error_of,
    logged,
    message_failures,
    wait_for_stop,
    wait_out,
)
from shared.settings import KontaktSettings
from shared.text import clean_text, clean_value

log = logging.getLogger("kontakt.projections")

#: Most records applied in one transaction.
BATCH_RECORDS = 200

#: Read-model families, each its own consumer group.
FAMILIES = ("contacts", "activities", "items", "sync-status")


class Poison(Exception):
    """A message that cannot be decoded: dead-letter it at once."""


_sync_event_adapter = TypeAdapter(OutlookSyncStatusChanged)
#: How long a repair may wait for the contacts API before it counts as unreachable.
REPAIR_TIMEOUT_SECONDS = 10.0
#: Lifetime of the token the worker mints for its repairs (a new one well before expiry).
REPAIR_TOKEN_TTL_SECONDS = 3600


def is_outage(exc: BaseException) -> bool:
    """True when an error means a server is unreachable or busy, not that the message is bad."""
    return isinstance(exc, ContactEventsUnavailableError) or is_database_outage(exc)


def is_startup_outage(exc: BaseException) -> bool:
    """True when starting failed because PostgreSQL or Kafka is not there (yet)."""
    return isinstance(exc, KafkaError | TimeoutError) or is_outage(exc)


def decode(raw: bytes, adapter: TypeAdapter[Any], what: str) -> Any:
    """A message's event, every string in it cleaned; Poison when it is not one."""
    try:
        if b"\\" not in raw and clean_text(text := raw.decode()) == text:
            # Nothing escaped, nothing to clean (nearly every message): the fast parser.
            return adapter.validate_json(raw)
        # The standard parser, not pydantic's: it accepts a lone surrogate escape, which
        # is then cleaned out like the other characters PostgreSQL would refuse.
        data = json.loads(raw)
    except ValueError as exc:  # not UTF-8, not JSON (ValidationError is one too)
        if isinstance(exc, ValidationError):
            raise Poison(f"not {what}: {_errors(exc)}") from None
        raise Poison(f"not JSON: {exc}") from None
    except RecursionError:
        raise Poison("not JSON: nested deeper than can be read") from None
    try:
        return adapter.validate_python(clean_value(data))
    except ValidationError as exc:
        raise Poison(f"not {what}: {_errors(exc)}") from None
    except RecursionError:  # no event is nested this deep
        raise Poison(f"not {what}: nested deeper than can be read") from None


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Where and what, without the input (it may be what made the message poison).
    return [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()[:3]]


def topics_of(settings: KontaktSettings, family: str) -> list[str]:
    """The topics a read-model family consumes."""
    return {
        "contacts": [settings.contacts_topic, settings.infotags_topic],
        "activities": [settings.activities_topic],
        "items": [settings.opportunities_topic, settings.campaigns_topic, settings.projects_topic],
        "sync-status": [settings.sync_events_topic],
    }[family]


def group_id(family: str) -> str:
    """The consumer group of a read-model family."""
    return f"kontakt-rm-{family}"


@dataclass
class Stats:
    """What a worker did, for tests and status."""

    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    #: Failed attempts at a message that were retried (not counting outages).
    retries: int = 0
    #: Times a server was unreachable and the worker waited before trying again.
    outages: int = 0
    #: Contacts whose missing events were fetched from the store.
    repairs: int = 0


#: Applies raw bytes in a transaction: (changed anything, when the event happened).
Apply = Callable[[asyncpg.Connection, bytes], Awaitable[tuple[bool, datetime | None]]]


class Worker:
    """Consumes the contract's topics into the read models."""

    def __init__(
        self, settings: KontaktSettings, pool: asyncpg.Pool, families: Sequence[str]
    ) -> None:
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown read models {sorted(unknown)}; choose from {FAMILIES}")
        self.settings = settings
        self.pool = pool
        self.families = tuple(families)
        self.key = settings.key_secret.get_secret_value().encode()
        self.stats = Stats()
        #: Where dead letters go (made at start).
        self.producer: AIOKafkaProducer | None = None
        self._consumers: dict[str, AIOKafkaConsumer] = {}
        self._consuming: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._minted: tuple[float, str] | None = None
        #: Outages in a row, for the backoff (reset by any success).
        self._outages_in_a_row = 0
        self.routes = self._routes()

    # ------------------------------------------------------------- decoding

    async def _contact(self, conn: asyncpg.Connection, raw: bytes) -> tuple[bool, datetime]:
        event: ContactEventBase = decode(raw, contact_event_adapter, "a contact event")
        correlation_id.set(event.correlation_id)
        applied = await handlers.apply_contact_event(
            conn, event, self.key, history=self.contact_history
        )
        return applied, event.occurred_at

    async def _catalogue(self, conn: asyncpg.Connection, raw: bytes) -> tuple[bool, datetime]:
        event = decode(raw, infotag_event_adapter, "an infotag catalogue event")
        correlation_id.set(event.correlation_id)
        return await infotags_sql.apply_catalogue_event(conn, event), event.occurred_at

    async def _email(self, conn: asyncpg.Connection, raw: bytes) -> tuple[bool, datetime]:
        event = decode(raw, activity_event_adapter, "an activity event")
        return await handlers.apply_email(conn, event, self.key), event.occurred_at

    async def _sync_status(self, conn: asyncpg.Connection, raw: bytes) -> tuple[bool, datetime]:
        event = decode(raw, _sync_event_adapter, "a sync outcome")
        return await handlers.apply_sync_status(conn, event), event.occurred_at

    def _item(self, kind: str) -> Apply:
        async def apply(conn: asyncpg.Connection, raw: bytes) -> tuple[bool, datetime]:
            event = decode(raw, item_event_adapter, "an item event")
            await handlers.apply_item_event(conn, kind, event)
            return True, event.occurred_at

        return apply

    # ------------------------------------------------------------- repairing

    async def contact_history(self, contact_id: Any, after_version: int) -> list[ContactEvent]:
        """The contact's stored events after a version, from the contacts API."""
        if self._http is None:
            raise ContactEventsUnavailableError("the worker is not started")
        self._http.headers["Authorization"] = f"Bearer {self._token()}"
        events = await fetch_contact_events(self._http, contact_id, after_version)
        self.stats.repairs += 1
        log.warning(
            "repairing contact %s from the store: %d events after v%d",
            contact_id,
            len(events),
            after_version,
        )
        # Cleaned like consumed messages: the same rules whichever way an event comes.
        return [contact_event_adapter.validate_python(clean_value(e.model_dump())) for e in events]

    def _token(self) -> str:
        configured = self.settings.projection_service_token
        if configured is not None:
            return configured.get_secret_value()
        now = time.monotonic()
        if self._minted is None or now - self._minted[0] > REPAIR_TOKEN_TTL_SECONDS / 2:
            token = mint_token(
                self.settings,
                self.settings.projection_service_subject,
                ttl_seconds=REPAIR_TOKEN_TTL_SECONDS,
            )
            self._minted = (now, token)
        return self._minted[1]

    # ------------------------------------------------------------ consuming

    def _routes(self) -> dict[str, Apply]:
        s = self.settings
        return {
            s.contacts_topic: self._contact,
            s.infotags_topic: self._catalogue,
            s.activities_topic: self._email,
            s.opportunities_topic: self._item("opportunity"),
            s.campaigns_topic: self._item("campaign"),
            s.projects_topic: self._item("project"),
            s.sync_events_topic: self._sync_status,
        }

    async def _consume(self, family: str, source: AIOKafkaConsumer) -> None:
        # One consumer per family, whatever its topics (no rebalancing among siblings),
        # taking what is there in batches: one transaction per partition's records.
        async def handle(records: list[Any]) -> int:
            await self.process_batch(family, records, self.routes)
            return len(records)

        # Fetching or committing failed (Kafka restarting, a rebalance): what was not
        # committed comes again.
        await wait_out(
            lambda: consume(source, handle, self._stop),
            lambda exc: isinstance(exc, Exception),
            self._stop,
            logged(log, f"consuming {family} failed"),
        )

    async def process_batch(
        self, family: str, records: Sequence[Any], routes: dict[str, Apply]
    ) -> None:
        """Apply records in one transaction; if any record fails, apply them one by one.

        An outage raises (after a backoff), so the records are not committed and come again.
        """
        try:
            async with self._connection() as conn, conn.transaction():
                outcomes = [await routes[r.topic](conn, r.value or b"") for r in records]
        except Exception as exc:
            if is_outage(exc):
                await self._wait_out(exc, f"{where(records[0])} and on ({family})")
                raise
            # One bad record spoils the batch: isolate it.
            for record in records:
                await self.process(family, record, routes[record.topic])
            return
        self._outages_in_a_row = 0
        for applied, occurred_at in outcomes:
            self._count(family, applied, occurred_at)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        # Failing to get a connection is never the message's fault, whatever the error
        # (refused, "not accepting connections", too many clients, bad startup state).
        try:
            conn = await self.pool.acquire()
        except Exception as exc:
            raise DatabaseUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    async def _wait_out(self, exc: BaseException, what: str) -> None:
        # Exponential backoff across consecutive outages, capped by the setting.
        self.stats.outages += 1
        delay = doubling_wait(
            self._outages_in_a_row, 0.25, self.settings.projection_backoff_max_seconds
        )
        self._outages_in_a_row += 1
        log.warning(
            "%s unreachable (%s: %s); %s comes again in %.1fs",
            _server_of(exc),
            type(exc).__name__,
            exc,
            what,
            delay,
        )
        await wait_for_stop(self._stop, delay)  # a stop does not wait for the outage

    def _count(self, family: str, applied: bool, occurred_at: datetime | None) -> None:
        m = metrics()
        if applied:
            self.stats.applied += 1
            m.projected.labels(family=family, outcome="applied").inc()
            if occurred_at is not None:
                m.projection_latency.labels(family=family).observe(seconds_since(occurred_at))
        else:
            self.stats.duplicates += 1
            m.projected.labels(family=family, outcome="duplicate").inc()

    async def process(self, family: str, record: Any, apply: Apply) -> None:
        """Apply one record in a transaction, retrying; dead-letter it when it keeps failing.

        An outage (a server unreachable) raises after a backoff: the record is neither
        counted against its attempts nor dead-lettered, and comes again.
        """
        raw: bytes = record.value or b""
        attempts = self.settings.projection_max_attempts

        async def attempt() -> tuple[bool, datetime | None]:
            async with self._connection() as conn, conn.transaction():
                return await apply(conn, raw)

        def retrying(state: RetryCallState) -> None:
            # This message's own failure: the database refused a value, or a handler
            # raised on it. Bounded retries, then the dead letters.
            self.stats.retries += 1
            log.warning(
                "attempt %d/%d at %s: %s",
                state.attempt_number,
                attempts,
                where(record),
                error_of(state),
            )

        def is_failure(exc: BaseException) -> bool:
            return not isinstance(exc, Poison) and not is_outage(exc)

        try:
            outcome: tuple[bool, datetime | None] = await message_failures(
                attempts, is_failure, retrying
            )(attempt)
        except Exception as exc:
            if is_outage(exc):
                await self._wait_out(exc, where(record))
                raise
            if is_failure(exc):
                log.warning("attempt %d/%d at %s: %s", attempts, attempts, where(record), exc)
            error: BaseException = exc
        else:
            self._outages_in_a_row = 0
            self._count(family, *outcome)
            return
        try:
            await self.dead_letter(family, record, error)
        except Exception as exc:
            # Kafka could not take the dead letter: keep the record uncommitted instead.
            await self._wait_out(exc, f"the dead letter of {where(record)}")
            raise

    async def dead_letter(self, family: str, record: Any, error: BaseException) -> None:
        """Publish the original bytes with the error to the dead-letter topic."""
        if self.producer is None:
            raise ConnectionError("the worker is not started: no producer for dead letters")
        await dead_letter(self.producer, self.settings, record, error, {"x-family": family})
        self.stats.dead_lettered += 1
        metrics().projected.labels(family=family, outcome="dead_letter").inc()
        log.error("dead-lettered %s (%s): %s", where(record), family, error)

    # -------------------------------------------------------------- running

    async def start(self) -> None:
        """Migrate the database, then start consuming."""
        try:
            self._token()  # a worker that could never repair a contact should not start
        except AuthError as exc:
            raise ValueError(
                f"{exc}; or set KONTAKT_PROJECTION_SERVICE_TOKEN for repairs from the store"
            ) from None
        await migrate_async(self.settings.pg_dsn())
        await ensure_topics(
            self.settings,
            [
                *self.settings.all_topics(),
                self.settings.sync_events_topic,
                self.settings.dead_letter_topic,
            ],
        )
        if self._http is None:  # a start tried again after an outage keeps its client
            self._http = httpx.AsyncClient(
                base_url=self.settings.contacts_api_url, timeout=REPAIR_TIMEOUT_SECONDS
            )
        try:
            self.producer = self.producer or producer(self.settings)
            await self.producer.start()
            for family in self.families:
                source = consumer(
                    self.settings, topics_of(self.settings, family), group_id(family), BATCH_RECORDS
                )
                self._consumers[family] = source
                await source.start()
        except BaseException:
            await self._close_kafka()  # a start tried again after an outage begins afresh
            raise
        self._stop.clear()
        self._consuming = [
            asyncio.create_task(self._consume(f, c), name=f"{f}:consume")
            for f, c in self._consumers.items()
        ]

    async def stop(self) -> None:
        """Stop consuming (the in-flight records finish and are committed first)."""
        self._stop.set()
        await asyncio.gather(*self._consuming, return_exceptions=True)
        self._consuming = []
        await self._close_kafka()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _close_kafka(self) -> None:
        clients: list[AIOKafkaConsumer | AIOKafkaProducer] = [*self._consumers.values()]
        if self.producer is not None:
            clients.append(self.producer)
        self._consumers, self.producer = {}, None
        for client in clients:
            with contextlib.suppress(Exception):  # closing a client of a dead broker
                await client.stop()


def _server_of(exc: BaseException) -> str:
    if isinstance(exc, ContactEventsUnavailableError):
        return "the contacts API"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | DatabaseUnavailableError):
        return "PostgreSQL"
    if type(exc).__module__.startswith(("aiokafka", "kafka", "faststream")):
        return "Kafka"
    return "a server"


def consumer_monitor(settings: KontaktSettings, families: Sequence[str]) -> ConsumerMonitor:
    """The lag and stall monitor of the families' groups."""
    return ConsumerMonitor(
        settings.kafka_bootstrap,
        {group_id(f): topics_of(settings, f) for f in families},
        settings.consumer_stall_seconds,
    )
