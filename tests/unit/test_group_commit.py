"""Group commit: saves waiting together share one insert; a refused save fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor
from services.contacts.group_commit import GroupCommit, GroupCommitEventStore


def stored(version: int, originator: UUID | None = None) -> StoredEvent:
    """A stored event of an aggregate (a new one unless given)."""
    return StoredEvent(
        originator_id=originator or uuid4(), originator_version=version, topic="t", state=b""
    )


class FakeStore:
    """Inserts all or nothing, refusing an (originator, version) stored before; counts calls."""

    def __init__(self) -> None:
        self.rows: set[tuple[UUID | str, int]] = set()
        self.calls: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()

    def insert(self, events: Sequence[StoredEvent]) -> list[int]:
        self.release.wait()
        with self.lock:
            self.calls.append(len(events))
            keys = [(e.originator_id, e.originator_version) for e in events]
            if len(set(keys)) < len(keys) or self.rows & set(keys):
                raise IntegrityError("duplicate")
            start = len(self.rows)
            self.rows |= set(keys)
            return list(range(start + 1, start + 1 + len(keys)))


def save_while_first_commit_runs(
    group: GroupCommit, store: FakeStore, batches: list[list[StoredEvent]]
) -> list[object]:
    """Save batches[0], then the rest while its insert is held; outcomes in order."""
    store.release.clear()

    def save(events: list[StoredEvent]) -> object:
        try:
            return group.insert(events)
        except IntegrityError as exc:
            return exc

    with ThreadPoolExecutor(len(batches)) as pool:
        first = pool.submit(save, batches[0])
        while not group._committing or group._waiting:  # until the leader holds its insert
            threading.Event().wait(0.001)
        rest = [pool.submit(save, b) for b in batches[1:]]
        while len(group._waiting) < len(batches) - 1:
            threading.Event().wait(0.001)
        store.release.set()
        return [first.result(), *(f.result() for f in rest)]


def test_saves_waiting_behind_a_commit_are_inserted_together() -> None:
    store = FakeStore()
    group = GroupCommit(store.insert)
    outcomes = save_while_first_commit_runs(
        group, store, [[stored(1)], [stored(1), stored(1)], [stored(1)], [stored(1)]]
    )
    assert store.calls == [1, 4]  # the first alone, the three waiting in one insert
    assert outcomes[0] == [1]
    ids = [o for o in outcomes if isinstance(o, list)]
    assert sorted(i for got in ids[1:] for i in got) == [2, 3, 4, 5]
    assert [len(got) for got in ids] == [1, 2, 1, 1]


def test_a_refused_save_fails_alone_and_its_batch_mates_are_stored() -> None:
    store = FakeStore()
    group = GroupCommit(store.insert)
    taken = uuid4()
    outcomes = save_while_first_commit_runs(
        group, store, [[stored(1, taken)], [stored(1)], [stored(1, taken)], [stored(1)]]
    )
    assert isinstance(outcomes[2], IntegrityError)
    assert all(isinstance(o, list) and len(o) == 1 for i, o in enumerate(outcomes) if i != 2)
    assert len(store.rows) == 3


def test_a_lone_save_gets_the_stores_error() -> None:
    store = FakeStore()
    group = GroupCommit(store.insert)
    event = stored(1)
    group.insert([event])
    with pytest.raises(IntegrityError):
        group.insert([event])
    assert group.insert([stored(1)]) == [2]


def test_an_applications_untracked_save_goes_through_the_group_commit(app: ContactsApp) -> None:
    # The library passes tracking=None with every save; that is no option of its own.
    store = app.events
    assert isinstance(store, GroupCommitEventStore)
    inserted: list[int] = []
    real = store.group._insert

    def counting(events: Sequence[StoredEvent]) -> Sequence[int] | None:
        inserted.append(len(events))
        return real(events)

    store.group._insert = counting
    app.create_contact(
        Actor("alice", "corr"),
        company_id=uuid4(),
        company_name="Acme",
        details={"first_names": "Ida", "last_names": "Ro"},
    )
    assert inserted and sum(inserted) >= 2  # the contact and its uniqueness key, together
