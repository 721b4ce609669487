"""Group commit: the stored events of commands saving at the same time go in one transaction.

Each save of the event store takes the events table's lock, so writers take turns and each
pays a commit of its own. Here a saving thread queues its events; the first one to find no
commit running leads: it takes every save waiting and inserts them in one transaction. Each
saver gets its own result: should the shared transaction fail (a uniqueness key claimed twice,
an aggregate version taken meanwhile), each save is inserted again alone, so only the ones the
store refuses fail, with the store's own error. The store still decides uniqueness and
optimistic concurrency; readers of the notification log see the same lock as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import (
    EventStore,
    InterfaceError,
    Notification,
    OperationalError,
    Recording,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

#: Inserts stored events in one transaction; their notification ids, in order.
Insert = Callable[[Sequence[StoredEvent]], Sequence[int] | None]

#: The most saves one transaction takes (bounds a transaction's size under a burst).
MAX_SAVES_PER_COMMIT = 100


class _Save:
    """One caller's stored events, and what became of them."""

    __slots__ = ("error", "events", "finished", "ids", "stored", "woken")

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self.events = events
        self.woken = threading.Event()
        self.finished = False
        self.ids: Sequence[int] | None = None
        self.stored = False
        self.error: BaseException | None = None


class GroupCommit:
    """Inserts the saves of concurrent callers together; each caller gets its own outcome."""

    def __init__(self, insert: Insert, max_saves: int = MAX_SAVES_PER_COMMIT) -> None:
        self._insert = insert
        self._max_saves = max_saves
        self._lock = threading.Lock()
        self._waiting: list[_Save] = []
        self._committing = False

    def insert(self, events: Sequence[StoredEvent]) -> Sequence[int] | None:
        """Insert events (with those of other callers waiting); their notification ids."""
        me = _Save(events)
        with self._lock:
            self._waiting.append(me)
            lead = not self._committing
            self._committing = True
        if not lead:
            me.woken.wait()
        if not me.finished:  # woken to lead the next commit
            self._lead()
        if me.error is not None:
            raise me.error
        return me.ids

    def _lead(self) -> None:
        with self._lock:
            batch = self._waiting[: self._max_saves]
            del self._waiting[: self._max_saves]
        try:
            self._commit(batch)
        except BaseException as exc:
            # The leader was interrupted: no save it took may pass for stored.
            for save in batch:
                if not save.stored and save.error is None:
                    save.error = exc
            raise
        finally:
            with self._lock:
                # The first save still waiting leads the next commit; none, and the next
                # caller leads.
                successor = self._waiting[0] if self._waiting else None
                self._committing = successor is not None
            for save in batch:
                save.finished = True
                save.woken.set()
            if successor is not None:
                successor.woken.set()

    def _commit(self, batch: list[_Save]) -> None:
        if len(batch) > 1:
            try:
                ids = self._insert([e for save in batch for e in save.events])
            except Exception:  # the saves are tried alone below
                pass
            else:
                start = 0
                for save in batch:
                    end = start + len(save.events)
                    save.ids = None if ids is None else ids[start:end]
                    save.stored = True
                    start = end
                return
        # Alone, each save meets the store's verdict on its own events only.
        for save in batch:
            try:
                save.ids = self._insert(save.events)
                save.stored = True
            except BaseException as exc:  # handed to its own caller
                save.error = exc


class LockedInsert:
    """Inserts stored events in one round trip: a database function that takes the events
    table's lock, notifies the table's channel and inserts, called as one statement.

    The library's own insert sends BEGIN, the lock, NOTIFY, the INSERT and COMMIT in a
    pipeline (two round trips and a share of a command's CPU in psycopg); its database
    function (POSTGRES_ENABLE_DB_FUNCTIONS) is one round trip but takes no lock, so a reader
    of the notification log could pass an id a slower transaction fills in later. This
    function takes the same EXCLUSIVE lock first; a single statement on an autocommit
    connection is its own transaction, so the lock is held until the commit and ids become
    visible in commit order exactly as with the library's insert.
    """

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self._recorder = recorder
        datastore = recorder.datastore
        schema = Identifier(datastore.schema)
        name = Identifier(f"kontakt_locked_insert_{recorder.events_table_name}")
        create = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{name}(events {schema}.{event}[])"
            " RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$"
            " BEGIN"
            "   SET LOCAL lock_timeout = '{lock_timeout}s';"
            "   LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            "   NOTIFY {channel};"
            "   RETURN QUERY"
            "   INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
            "   SELECT originator_id, originator_version, topic, state FROM unnest(events)"
            "   RETURNING notification_id;"
            " END;"
            " $BODY$"
        ).format(
            schema=schema,
            name=name,
            event=Identifier(recorder.stored_event_type_name),
            lock_timeout=datastore.lock_timeout,
            table=Identifier(recorder.events_table_name),
            channel=Identifier(recorder.channel_name),
        )
        with datastore.get_connection() as conn:
            conn.execute(create)
            # Rendered once: psycopg would compose it again on every call.
            self._call = (
                SQL("SELECT notification_id FROM {schema}.{name}(%s) AS notification_id")
                .format(schema=schema, name=name)
                .as_string(conn)
            )

    # As the library's insert: a dropped connection is tried again (an insert that did
    # commit then fails on its versions, as a conflict the command's retry resolves).
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def __call__(self, stored_events: Sequence[StoredEvent]) -> Sequence[int] | None:
        """Insert events in one transaction; their notification ids, in order."""
        if not stored_events:
            return []
        recorder = self._recorder
        rows = [
            recorder.construct_pg_stored_event(
                e.originator_id, e.originator_version, e.topic, e.state
            )
            for e in stored_events
        ]
        with recorder.datastore.get_connection() as conn:
            found = conn.execute(self._call, (rows,), prepare=True).fetchall()
        return [row["notification_id"] for row in found]


class GroupCommitEventStore(EventStore[Any]):
    """An event store whose saves without options go through a group commit."""

    def __init__(self, mapper: Any, recorder: Any) -> None:
        super().__init__(mapper, recorder)
        insert: Insert = recorder.insert_events
        if isinstance(recorder, PostgresApplicationRecorder):
            insert = LockedInsert(recorder)
        self.group = GroupCommit(insert)

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Recording[Any]]:
        """Store domain events (encoded in the caller's thread, inserted with others)."""
        # The application passes tracking=None with every save: only a real option (a
        # tracked save) takes the library's own transaction.
        options = {name: value for name, value in kwargs.items() if value is not None}
        if options:
            return super().put(domain_events, **options)
        stored = [self.mapper.to_stored_event(e) for e in domain_events]
        ids = self.group.insert(stored)
        if not ids:
            return []
        return [
            Recording(
                d,
                Notification(
                    originator_id=s.originator_id,
                    originator_version=s.originator_version,
                    topic=s.topic,
                    state=s.state,
                    id=n_id,
                ),
            )
            for d, s, n_id in zip(domain_events, stored, ids, strict=True)
        ]
