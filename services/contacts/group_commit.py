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

from eventsourcing.persistence import EventStore, Notification, Recording, StoredEvent

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


class GroupCommitEventStore(EventStore[Any]):
    """An event store whose saves without options go through a group commit."""

    def __init__(self, mapper: Any, recorder: Any) -> None:
        super().__init__(mapper, recorder)
        self.group = GroupCommit(recorder.insert_events)

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Recording[Any]]:
        """Store domain events (encoded in the caller's thread, inserted with others)."""
        if kwargs:  # a tracked save: its own transaction, as the library makes it
            return super().put(domain_events, **kwargs)
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
