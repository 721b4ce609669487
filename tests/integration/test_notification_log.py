"""The notification log, the relay's outbox, never shows a reader a later event before an
earlier one commits: a reader that follows it by position misses nothing."""

from __future__ import annotations

import threading
from uuid import uuid4

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor, Contact
from shared.settings import KontaktSettings

WRITERS = 8
SAVES_EACH = 150


def test_a_reader_following_positions_misses_no_event_of_concurrent_writers(
    contacts: ContactsApp, settings: KontaktSettings
) -> None:
    recorder = contacts.recorder
    start = recorder.max_notification_id() or 0
    actor = Actor("writer", "cid")
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(SAVES_EACH):
                contact = Contact.create(
                    contact_id=uuid4(),
                    person_id=uuid4(),
                    actor=actor,
                    company_id=uuid4(),
                    company_name="Acme",
                    details={"first_names": "A", "last_names": "B"},
                )
                contacts.save(contact)
        except BaseException as exc:  # reported below
            errors.append(exc)

    seen: set[int] = set()

    def follow() -> None:
        # What the relay does: read after the last position seen, move to the newest read.
        position = start
        while True:
            finished = stop.is_set()
            batch = recorder.select_notifications(
                start=position, limit=500, inclusive_of_start=False
            )
            for n in batch:
                seen.add(n.id)
            if batch:
                position = batch[-1].id
            elif finished:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    writers = [threading.Thread(target=write) for _ in range(WRITERS)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert not errors, errors
    stored = {
        n.id
        for n in recorder.select_notifications(
            start=start, limit=WRITERS * SAVES_EACH * 2, inclusive_of_start=False
        )
    }
    assert len(stored) == WRITERS * SAVES_EACH
    assert stored - seen == set(), f"{len(stored - seen)} events never seen by the reader"
