"""Filling an event store fast: many contacts, many events each, several aggregates per
save() (one transaction), through the real ContactsApp (so events are encrypted per person
exactly as commands store them)."""

from __future__ import annotations

import time
from datetime import date
from uuid import UUID, uuid4

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor, Contact

ACTOR = Actor("bench", "seed")
#: Events per contact: Created, then this many edits of kinds a contact really gets.
EDITS_PER_CONTACT = 9


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
            "last_names": "Jensen",
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


def seed(
    app: ContactsApp,
    events: int,
    per_save: int = 200,
    progress: object = None,
) -> tuple[int, float]:
    """Store at least `events` contact events; returns (events stored, seconds)."""
    per_contact = 1 + EDITS_PER_CONTACT
    contacts = -(-events // per_contact)
    started = time.perf_counter()
    stored = 0
    n = 0
    while n < contacts:
        batch = [contact_events(app, n + i) for i in range(min(per_save, contacts - n))]
        n += len(batch)
        app.save(*batch)
        stored += len(batch) * per_contact
        if callable(progress) and n % (per_save * 50) == 0:
            progress(f"seeded {stored:,} events")
    return stored, time.perf_counter() - started
