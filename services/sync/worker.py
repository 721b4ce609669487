"""The Outlook sync worker process: consume contact events, reconcile links, publish outcomes.

Four loops share one process:

* the consumer reads `contacts.events` in its own group and applies each event to the
  store in one transaction, then commits the offset (at-least-once; a message is
  applied or dead-lettered before any later offset of its partition is committed;
  the store's per-contact version, not the offset, decides what a re-delivery changes).
  An outage is waited out; a message that cannot be read, or keeps failing while the
  database answers, goes to the dead-letter topic. A contact whose earlier events
  never arrived is repaired from the event store (the contacts API);
* the reconciler claims links whose contact or switch changed and takes each a step
  through Graph, recording the new state and its outcome events in one transaction;
* the publisher drains that outbox to `outlook-sync.events`, keyed by person id;
* the verifier reads each user's folder now and then with Graph's delta query (the
  deltaLink kept per mailbox and folder): a linked item the user deleted or moved out
  comes as `@removed`, so its link is suppressed and the user's switch turned off; an
  item of ours no link holds (a duplicate left by a create Graph applied after its
  answer was lost) is deleted. Without a deltaLink, or when Graph refuses it (410/400),
  the folder is listed in full and a new delta round begins.

Graph failures never block the consumer: a link that fails is retried on its own
schedule (or parked, for permanent errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from tenacity import RetryCallState

from services.sync import domain
from services.sync.contacts_api import ContactsClient, ContactsUnavailableError, PersonUnknownError
from services.sync.dlq import FAMILY as DEAD_LETTER_FAMILY
from services.sync.domain import OutOfOrderEventError, VersionGapError, clean_event
from services.sync.engine import Engine, Work
from services.sync.graph import (
    GraphClient,
    GraphError,
    GraphNotFoundError,
    GraphSyncResetError,
)
from services.sync.store import Reconciled, SyncStore
from shared.consuming import Handler, consume, consumer, dead_letter, producer, where
from shared.contact_events import ContactEventsUnavailableError, fetch_contact_events
from shared.contract.contacts import ContactEvent, parse_contact_event
from shared.contract.infotags import parse_infotag_event
from shared.kafka import ensure_topics
from shared.retrying import (
    doubling_wait,
    error_of,
    jittered_wait,
    message_failures,
    next_wait,
    wait_out,
)
from shared.settings import KontaktSettings
from shared.waiting import wait_for_stop as _wait

log = logging.getLogger("kontakt.sync.worker")


async def _forever(name: str, step: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run a loop body until stopped, logging and backing off on unexpected errors."""

    def say(state: RetryCallState) -> None:
        log.error("%s failed; again in %.1fs", name, next_wait(state), exc_info=error_of(state))

    await wait_out(step, lambda exc: isinstance(exc, Exception), stop, say)


class _Outage(Exception):
    """Applying failed while the database did not answer: wait, do not count an attempt."""


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, _Outage | ContactEventsUnavailableError | ContactsUnavailableError)


class SyncWorker:
    """The worker's loops around one store, one Graph client and one contacts client."""

    def __init__(
        self,
        settings: KontaktSettings,
        store: SyncStore,
        graph: GraphClient,
        contacts: ContactsClient,
    ) -> None:
        self.settings = settings
        self.store = store
        self.graph = graph
        self.contacts = contacts
        self.engine = Engine(
            graph,
            contacts,
            store,
            mailbox_of=lambda user_id: domain.mailbox_for(
                settings.sync_mailboxes,
                user_id,
                settings.sync_mailbox_format if settings.sync_dev_mailbox_fallback else None,
            ),
        )
        self.links_changed = asyncio.Event()
        self.outbox_changed = asyncio.Event()
        self.rng = random.Random()
        self.dead_lettered = 0
        self.repaired = 0
        #: Dead letters Kafka refused in a row, for the wait before the record comes again.
        self._refusals = 0

    # ------------------------------------------------------------------ consumer

    async def consume(self, stop: asyncio.Event) -> None:
        """Apply contact events to the store, committing offsets only after they are applied."""
        # Subscribing to a topic that does not exist yet would wait for a metadata refresh.
        topics = [self.settings.contacts_topic, self.settings.infotags_topic]
        await ensure_topics(self.settings, [*topics, self.settings.dead_letter_topic])
        source = consumer(self.settings, topics, self.settings.sync_consumer_group)
        sink = producer(self.settings)
        await sink.start()
        try:
            await source.start()
            await consume(
                source, self._partition_handler(sink, stop), stop, fetched=self.links_changed.set
            )
        finally:
            await source.stop()
            await sink.stop()

    def _partition_handler(self, sink: AIOKafkaProducer, stop: asyncio.Event) -> Handler:
        """Apply a partition's records in order; how many are done (fewer when stopped).

        A run of readable contact events is applied together in one transaction; when
        that fails (a gap to repair, a value the database refuses, an outage), the run's
        events are applied one by one, each with its retries and dead-lettering.
        """

        async def one(record: Any) -> None:
            try:
                await self._handle(sink, record, stop)
            except Exception:
                # Kafka refused a dead letter: the record comes again, after a while.
                await _wait(stop, doubling_wait(self._refusals, 0.5, 30.0))
                self._refusals += 1
                raise
            self._refusals = 0

        async def handle(records: list[Any]) -> int:
            done = 0
            while done < len(records):
                run = self._contact_events(records[done:])
                if len(run) > 1 and await self._apply_together(run):
                    done += len(run)
                else:
                    for record in records[done : done + max(len(run), 1)]:
                        await one(record)
                        if stop.is_set():
                            return done  # this one may have been given up half-way
                        done += 1
                if stop.is_set():
                    return done
            return done

        return handle

    def _contact_events(self, records: list[Any]) -> list[ContactEvent]:
        """The leading records that are readable contact events, read (at most a fetch)."""
        events = []
        for record in records:
            if record.topic != self.settings.contacts_topic:
                break
            try:
                events.append(clean_event(parse_contact_event(record.value or b"")))
            except (ValidationError, ValueError):
                break
        return events

    async def _apply_together(self, events: list[ContactEvent]) -> bool:
        """Apply events in one transaction; False (nothing applied) when one by one must."""
        try:
            await self.store.apply_together(events)
        except Exception as exc:
            log.info("applying %d events together failed (%s); one by one", len(events), exc)
            return False
        return True

    async def _handle(self, producer: AIOKafkaProducer, message: Any, stop: asyncio.Event) -> None:
        """Apply one message; dead-letter it when it is unreadable or keeps failing.

        An outage (database, contacts API) is waited out without counting an attempt;
        a failure while the dependencies answer counts, up to KONTAKT_SYNC_MAX_ATTEMPTS.
        A dead letter Kafka does not acknowledge raises: the offset is not committed.
        """
        apply: Callable[[], Awaitable[Any]]
        try:
            if message.topic == self.settings.infotags_topic:
                tag_event = parse_infotag_event(message.value or b"")
                apply = partial(self.store.apply_catalogue, tag_event)
            else:
                apply = partial(self._apply, clean_event(parse_contact_event(message.value or b"")))
        except (ValidationError, ValueError) as exc:
            await self._dead_letter(producer, message, exc)
            return
        attempts = self.settings.sync_max_attempts

        async def attempt() -> None:
            try:
                await apply()
            except (ContactEventsUnavailableError, ContactsUnavailableError):
                raise
            except Exception as exc:
                if not await self._store_answers():
                    raise _Outage(f"{type(exc).__name__}: {exc}") from exc
                raise

        def outage(state: RetryCallState) -> None:
            log.warning(
                "outage applying %s (%s); again in %.1fs",
                where(message),
                error_of(state),
                next_wait(state),
            )

        async def waited_out() -> None:
            await wait_out(attempt, _is_outage, stop, outage, first=0.2)

        def failed(state: RetryCallState) -> None:
            log.warning(
                "attempt %d/%d at %s: %s",
                state.attempt_number,
                attempts,
                where(message),
                error_of(state),
            )

        try:
            await message_failures(attempts, lambda exc: isinstance(exc, Exception), failed)(
                waited_out
            )
        except Exception as exc:
            await self._dead_letter(producer, message, exc)

    async def _store_answers(self) -> bool:
        try:
            await self.store.ping()
        except Exception:
            return False
        return True

    async def _apply(self, event: ContactEvent) -> None:
        """Apply an event; when earlier events of its contact are missing, repair from the store."""
        try:
            await self.store.apply(event)
        except (OutOfOrderEventError, VersionGapError) as exc:
            have = exc.have if isinstance(exc, VersionGapError) else 0
            history = await fetch_contact_events(self.contacts.http, event.contact_id, have)
            if not any(e.aggregate_version >= event.aggregate_version for e in history):
                raise  # the store does not know this event: a message failure
            log.info("repairing contact %s from the event store: %s", event.contact_id, exc)
            for earlier in history:
                await self.store.apply(clean_event(earlier), repairing=True)
            self.repaired += 1

    async def _dead_letter(
        self, producer: AIOKafkaProducer, message: Any, error: BaseException
    ) -> None:
        """Publish the original bytes with the error and origin to the dead-letter topic."""
        headers = {"x-family": DEAD_LETTER_FAMILY, "x-group": self.settings.sync_consumer_group}
        await dead_letter(producer, self.settings, message, error, headers)
        self.dead_lettered += 1
        log.error("dead-lettered %s: %s", where(message), type(error).__name__)

    # ------------------------------------------------------------------ reconciler

    async def reconcile_once(self) -> int:
        """Claim due links and take each one step; returns how many were claimed."""
        claimed = await self.store.claim(
            self.settings.sync_batch_size, self.settings.sync_lease_seconds
        )
        if not claimed:
            return 0
        work = [Work(c.link, c.snapshot, c.person_contact_ids) for c in claimed]
        results = await self.engine.run(work)
        steps = []
        for c, result in zip(claimed, results, strict=True):
            retry_in = 0.0
            if not result.done:
                retry_in = jittered_wait(
                    min(c.link.attempts, 16),
                    self.settings.sync_graph_backoff_seconds,
                    self.settings.sync_retry_max_seconds,
                    self.rng,
                )
            steps.append(Reconciled(c.link, result.link, result.outcomes, result.done, retry_in))
        await self.store.save(steps)
        if any(result.outcomes for result in results):
            self.outbox_changed.set()
        return len(claimed)

    async def reconcile(self, stop: asyncio.Event) -> None:
        """Reconcile until stopped, waking on new events or every poll interval."""
        while not stop.is_set():
            if await self.reconcile_once() == 0:
                await _wait(self.links_changed, self.settings.sync_poll_seconds)
                self.links_changed.clear()

    # ------------------------------------------------------------------ verifier

    async def verify_once(self) -> int:
        """Read each user's folder changes: notice items the user deleted, remove strays."""
        noticed = 0
        linked = await self.store.linked_items()
        for user_id in await self.store.users():
            try:
                mailbox = self.engine.mailbox_of(user_id)
            except domain.UnmappedUserError:
                continue  # its links are reported failed by the reconciler
            mine = linked.get(user_id, {})
            try:
                folder, gone, present, link = await self._folder_changes(mailbox, set(mine))
            except GraphError as exc:
                log.info("cannot read %s's folder now: %s", user_id, exc)
                continue
            settled = True
            for graph_id in gone & set(mine):
                if await self.store.mark_deleted_by_user(user_id, mine[graph_id][0], graph_id):
                    noticed += 1
                else:
                    settled = False  # being worked on: read these changes again next time
            await self._remove_strays(user_id, mailbox, present, set(mine))
            if settled:
                await self.store.save_delta_link(mailbox, folder, link)
        if noticed:
            log.info("%d items were deleted in Outlook by their users", noticed)
            self.links_changed.set()
            self.outbox_changed.set()
        return noticed

    async def _folder_changes(
        self, mailbox: str, linked: set[str]
    ) -> tuple[str, set[str], dict[str, str | None], str]:
        """The folder, what left it, items that may be strays (Graph id -> CRM id), next link.

        With a stored deltaLink only the changes since are read; without one (or when
        Graph refuses it) a new delta round starts and the folder is listed in full.
        """
        folder = await self.graph.ensure_folder(mailbox)
        link = await self.store.delta_link(mailbox, folder)
        if link is not None:
            try:
                changes = await self.graph.delta(mailbox, folder, link)
            except GraphSyncResetError as exc:
                log.info(
                    "Graph refused the delta link of %s (%s); listing it in full", mailbox, exc
                )
                await self.store.save_delta_link(mailbox, folder, None)
            else:
                present: dict[str, str | None] = {}
                for graph_id in set(changes.changed) - linked:
                    try:
                        present[graph_id] = await self.graph.crm_id_of(mailbox, graph_id)
                    except GraphNotFoundError:
                        continue  # gone again since
                return folder, set(changes.removed), present, changes.delta_link
        # The round starts before the listing: what changes during it comes next time.
        changes = await self.graph.delta(mailbox, folder, None)
        present = await self.graph.list_items(mailbox, folder)
        return folder, linked - set(present), present, changes.delta_link

    async def _remove_strays(
        self, user_id: str, mailbox: str, present: dict[str, str | None], linked: set[str]
    ) -> None:
        candidates: dict[str, UUID] = {}
        for graph_id, crm_id in present.items():
            if graph_id in linked or crm_id is None:
                continue
            try:
                candidates[graph_id] = UUID(crm_id)
            except ValueError:
                continue
        if not candidates:
            return
        persons = await self.store.persons_of(list(set(candidates.values())))
        for graph_id, contact_id in candidates.items():
            person_id = persons.get(contact_id)
            if person_id is None:
                continue

            async def delete(graph_id: str = graph_id) -> None:
                await self.graph.delete_contact(mailbox, graph_id)

            try:
                if await self.store.delete_if_stray(user_id, person_id, graph_id, delete):
                    log.info("removed stray item %s from %s's folder", graph_id, user_id)
            except GraphError as exc:
                log.info("cannot remove stray item %s now: %s", graph_id, exc)

    async def verify(self, stop: asyncio.Event) -> None:
        """Verify every user's folder at the configured interval."""
        while not await _wait(stop, self.settings.sync_verify_seconds):
            await self.verify_once()

    # ------------------------------------------------------------------ erasures

    async def shred_once(self) -> int:
        """Check the keys of persons held here; purge those erased. Returns how many."""
        keys = self.store.keys
        keys.evict_expired()
        purged = 0
        for person_id in await self.store.unerased_persons():
            try:
                key = await keys.get(person_id)
            except ContactsUnavailableError as exc:
                log.info("cannot check sync keys now: %s", exc)
                break
            except PersonUnknownError:
                continue
            if key is None:
                await self.store.purge_erased(person_id)
                purged += 1
        if purged:
            log.info("%d erased persons purged; their Outlook items go", purged)
            self.links_changed.set()
        return purged

    async def shred(self, stop: asyncio.Event) -> None:
        """Notice erasures through the keys, independently of the consumer's progress."""
        interval = min(max(self.settings.sync_key_cache_ttl_seconds / 2, 0.5), 30.0)
        while not await _wait(stop, interval):
            await self.shred_once()

    # ------------------------------------------------------------------ publisher

    async def publish(self, stop: asyncio.Event) -> None:
        """Drain the outbox to the outcome topic, keyed by person id."""
        await ensure_topics(self.settings, [self.settings.sync_events_topic])
        sink = producer(self.settings)
        await sink.start()
        topic = self.settings.sync_events_topic

        async def send(rows: list[tuple[UUID, dict[str, Any]]]) -> None:
            futures = [
                await sink.send(topic, json.dumps(payload).encode(), key=str(person_id).encode())
                for person_id, payload in rows
            ]
            await asyncio.gather(*futures)

        try:
            while not stop.is_set():
                try:
                    sent = await self.store.drain_outbox(send)
                except KafkaError as exc:
                    log.warning("publishing outcomes failed (%s); again soon", exc)
                    sent = 0
                if not sent:
                    await _wait(self.outbox_changed, self.settings.sync_poll_seconds)
                    self.outbox_changed.clear()
        finally:
            await sink.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Run the loops until stop is set."""
        loops = [
            asyncio.create_task(_forever("consumer", lambda: self.consume(stop), stop)),
            asyncio.create_task(_forever("reconciler", lambda: self.reconcile(stop), stop)),
            asyncio.create_task(_forever("publisher", lambda: self.publish(stop), stop)),
            asyncio.create_task(_forever("verifier", lambda: self.verify(stop), stop)),
            asyncio.create_task(_forever("shredder", lambda: self.shred(stop), stop)),
        ]
        if self.settings.sync_dev_mailbox_fallback and not self.settings.sync_mailboxes:
            log.warning(
                "development mailbox fallback: every CRM user is synced to %r",
                self.settings.sync_mailbox_format,
            )
        log.info(
            "sync worker started: topic %s, group %s, Graph %s",
            self.settings.contacts_topic,
            self.settings.sync_consumer_group,
            self.settings.sync_graph_base_url,
        )
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
