"""Uniqueness and optimistic concurrency under parallel writers, on the real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import psycopg

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor, DuplicateContactError, VersionConflictError
from services.contacts.group_commit import LockedInsert
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.settings import KontaktSettings

ALICE = Actor("alice", "corr")


def run_together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in n threads released at the same moment; return results or exceptions."""
    barrier = threading.Barrier(n)

    def call(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:  # collected for the assertions
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_parallel_creates_of_one_name_at_one_company_let_exactly_one_win(
    contacts: ContactsApp,
) -> None:
    company = uuid4()
    results = run_together(
        8,
        lambda i: contacts.create_contact(
            ALICE,
            company_id=company,
            company_name="Acme",
            details={"first_names": "Ole" if i % 2 else " OLE ", "last_names": "Hansen"},
        ),
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(e, DuplicateContactError) for e in losers), losers
    assert {e.existing_id for e in losers} == {winners[0].contact_id}  # type: ignore[attr-defined]


def test_two_writers_with_the_same_expected_version_one_conflicts_nothing_lost(
    contacts: ContactsApp,
) -> None:
    created = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name="Acme",
        details={"first_names": "Per", "last_names": "Olsen"},
    )
    results = run_together(
        2,
        lambda i: contacts.change_details(
            ALICE, created.contact_id, {"job_title": f"title-{i}"}, expected_version=1
        ),
    )
    conflicts = [r for r in results if isinstance(r, VersionConflictError)]
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(conflicts) == 1 and len(wins) == 1, results
    contact = contacts.get_contact(created.contact_id)
    assert contact.version == 2
    assert contact.job_title == f"title-{results.index(wins[0])}"


def test_parallel_unversioned_edits_all_land(contacts: ContactsApp) -> None:
    created = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name="Acme",
        details={"first_names": "Mette", "last_names": "Frederiksen"},
    )
    results = run_together(6, lambda i: contacts.add_infotag(ALICE, created.contact_id, f"t{i}"))
    assert not [r for r in results if isinstance(r, Exception)], results
    contact = contacts.get_contact(created.contact_id)
    assert set(contact.infotags) == {f"t{i}" for i in range(6)} and contact.version == 7


def test_parallel_job_changes_of_one_contact_create_one_successor(contacts: ContactsApp) -> None:
    from datetime import date

    created = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name="Acme",
        details={"first_names": "Jens", "last_names": "Berg"},
    )
    results = run_together(
        4,
        lambda i: contacts.change_job(
            ALICE,
            created.contact_id,
            company_id=uuid4(),
            company_name=f"C{i}",
            job={},
            effective_on=date(2026, 1, 1),
        ),
    )
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(wins) == 1, results
    chain = contacts.employments(created.contact_id)
    assert len(chain) == 2 and chain[1].id == wins[0][1].contact_id


def test_parallel_creates_with_some_duplicates_store_every_distinct_one(
    contacts: ContactsApp,
) -> None:
    # Saves arriving together share a transaction; a duplicate among them must not fail the rest.
    company = uuid4()
    results = run_together(
        16,
        lambda i: contacts.create_contact(
            ALICE,
            company_id=company,
            company_name="Acme",
            details={"first_names": "Ole" if i % 4 == 0 else f"Person{i}", "last_names": "Hansen"},
        ),
    )
    duplicates = [r for i, r in enumerate(results) if i % 4 == 0]
    distinct = [r for i, r in enumerate(results) if i % 4]
    assert all(not isinstance(r, Exception) for r in distinct), distinct
    assert sum(not isinstance(r, Exception) for r in duplicates) == 1, duplicates
    assert all(isinstance(r, DuplicateContactError) for r in duplicates if isinstance(r, Exception))
    for r in distinct:
        assert contacts.get_contact(r.contact_id).first_names.startswith("Person")


def test_a_save_waits_for_an_uncommitted_save_so_ids_commit_in_order(
    isolated_settings: KontaktSettings,
) -> None:
    # A save holds the events table's lock from taking its ids to its commit; one that took
    # no lock could commit a higher id first, and a reader of the notification log would pass
    # the lower one for good.
    app = build_contacts_app(isolated_settings)
    holder = psycopg.connect(isolated_settings.pg_dsn())
    # Its own connection: within a transaction, pg_stat_activity is read once and kept.
    watcher = psycopg.connect(isolated_settings.pg_dsn(), autocommit=True)
    try:
        insert = app.events.group._insert  # type: ignore[attr-defined]
        assert isinstance(insert, LockedInsert)
        holder.execute(insert._call, ([],))  # the lock, taken and kept (no commit yet)
        done = threading.Event()

        def create() -> None:
            app.create_contact(
                ALICE,
                company_id=uuid4(),
                company_name="Acme",
                details={"first_names": "Ida", "last_names": "Ro"},
            )
            done.set()

        writer = threading.Thread(target=create)
        writer.start()
        waiting = 0
        for _ in range(300):
            if done.is_set():
                break
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            ).fetchone()[0]  # type: ignore[index]
            if waiting:
                break
            time.sleep(0.1)
        assert not done.is_set(), "the save did not wait for the uncommitted one"
        assert waiting == 1
        holder.commit()
        writer.join()
        assert done.is_set()
    finally:
        holder.close()
        watcher.close()
        close_contacts_app(app)
