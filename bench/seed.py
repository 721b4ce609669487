"""Filling an event store fast: many contacts, many events each, encoded by the real
ContactsApp's mapper (so every event is encrypted under its person's key exactly as a
command stores it) and loaded with COPY, optionally by several processes at once."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from typing import Any
from uuid import UUID, uuid4

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor, Contact
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.settings import KontaktSettings

ACTOR = Actor("bench", "seed")
#: Events per contact: Created, then this many edits of kinds a contact really gets.
EDITS_PER_CONTACT = 9
#: Last names, so that a name search finds some contacts and not all of them.
LAST_NAMES = (
    "Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen",
    "Sørensen", "Rasmussen", "Jørgensen", "Petersen", "Madsen", "Kristensen", "Olsen",
    "Thomsen", "Christiansen", "Poulsen", "Johansen", "Møller", "Mortensen",
)  # fmt: skip


def contact_events(app: ContactsApp, n: int, edits: int = EDITS_PER_CONTACT) -> Contact:
    """A new contact with 1 + `edits` pending events (not saved)."""
    contact = Contact.create(
        contact_id=uuid4(),
        person_id=uuid4(),
        actor=ACTOR,
        company_id=UUID(int=n % 1000 + 1),
        company_name=f"Company {n % 1000}",
        details={
            "first_names": f"Karen{n}",
            "last_names": last_name(n),
            "job_title": "Buyer",
            "work_email": f"k{n}@acme.example",
            "work_phone": f"+45 {n:08d}",
        },
        started_on=date(2020, 1, 1),
    )
    for e in range(edits):
        kind = e % 3
        if kind == 0:
            contact.change_details(ACTOR, {"job_title": f"Title {e}"})
        elif kind == 1:
            contact.add_infotag(ACTOR, f"tag{e}")
        else:
            contact.toggle_outlook_sync(ACTOR, user_id=f"user{e}", enabled=True)
    return contact


def last_name(n: int) -> str:
    """The last name of seeded contact number n."""
    return LAST_NAMES[n % len(LAST_NAMES)]


def store(app: ContactsApp, contacts: Sequence[Contact]) -> int:
    """Store the contacts' pending events in one transaction; how many events.

    The rows are what `app.save` would insert: each event encoded (and its personal fields
    encrypted) by the application's mapper, each new person's data key wrapped by the
    master key into person_keys. They are loaded with COPY under the table lock the
    library's insert takes, and the store's channel is notified as it notifies.
    """
    events = [e for c in contacts for e in c.collect_events()]
    persons = {c.person_id for c in contacts}
    keys = app.cipher.keys
    recorder: Any = app.recorder
    datastore = recorder.datastore
    table = sql.Identifier(datastore.schema, recorder.events_table_name)
    with datastore.get_connection() as conn:
        # One round trip for the batch's keys instead of one per person (the cipher's
        # get_or_create); the cipher then holds them, as after a first use.
        with (
            conn.cursor() as cur,
            cur.copy("COPY person_keys (person_id, master_key_id, wrapped_key) FROM STDIN") as copy,
        ):
            for pid in persons:
                copy.write_row((pid, *keys.master.wrap(pid, AESGCM.generate_key(256))))
        app.cipher.refresh(persons)
        stored = [app.mapper.to_stored_event(e) for e in events]
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
            with cur.copy(
                sql.SQL(
                    "COPY {} (originator_id, originator_version, topic, state) FROM STDIN"
                ).format(table)
            ) as copy:
                for s in stored:
                    copy.write_row((s.originator_id, s.originator_version, s.topic, s.state))
            cur.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(recorder.channel_name)))
    return len(events)


def seed(
    app: ContactsApp,
    events: int,
    per_save: int = 500,
    progress: object = None,
    first: int = 0,
) -> tuple[int, float]:
    """Store at least `events` contact events (contacts numbered from `first`);
    returns (events stored, seconds)."""
    per_contact = 1 + EDITS_PER_CONTACT
    contacts = -(-events // per_contact)
    started = time.perf_counter()
    stored = 0
    n = 0
    while n < contacts:
        batch = [contact_events(app, first + n + i) for i in range(min(per_save, contacts - n))]
        n += len(batch)
        stored += store(app, batch)
        if callable(progress) and n % (per_save * 100) == 0:
            progress(f"seeded {stored:,} events")
    return stored, time.perf_counter() - started


def _seed_part(settings: KontaktSettings, events: int, first: int) -> int:
    app = build_contacts_app(settings)
    try:
        return seed(app, events, first=first)[0]
    finally:
        close_contacts_app(app)


def seed_parallel(
    settings: KontaktSettings,
    events: int,
    processes: int = 2,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, float]:
    """Store at least `events` contact events with several processes, each its own share of
    contacts (encoding runs in parallel; the inserts take turns at the table lock);
    returns (events stored, seconds)."""
    # The tables are made once, before the processes would race to make them.
    close_contacts_app(build_contacts_app(settings))
    per_contact = 1 + EDITS_PER_CONTACT
    contacts = -(-events // per_contact)
    share = -(-contacts // processes)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        parts = [
            pool.submit(
                _seed_part, settings, min(share, contacts - i * share) * per_contact, i * share
            )
            for i in range(processes)
            if i * share < contacts
        ]
        stored = 0
        for part in parts:
            stored += part.result()
            if progress:
                progress(f"a seeding process finished ({stored:,} events so far)")
    return stored, time.perf_counter() - started
