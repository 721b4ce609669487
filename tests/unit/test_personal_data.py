"""Per-person encryption in the mapper, erasure placeholders and master-key rotation."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import pytest
from cryptography.exceptions import InvalidTag
from eventsourcing.persistence import StoredEvent

from services.contacts.application import ContactsApp
from services.contacts.domain import (
    ERASED,
    Actor,
    ContactErasedError,
    DuplicateContactError,
)
from services.contacts.personal_data import (
    InMemoryPersonKeyStore,
    MasterKeyError,
    MasterKeys,
    PersonCipher,
)
from services.contacts.photos import InMemoryPhotoStore, PhotoNotStoredError
from tests.images import image_bytes

ADMIN = Actor("dpo", "erase-1")
ALICE = Actor("alice", "c")
MASTER = b"m" * 32


def make_app(keys: InMemoryPersonKeyStore | None = None) -> ContactsApp:
    return ContactsApp(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        key_secret=b"k" * 32,
        photos=InMemoryPhotoStore(),
        cipher=PersonCipher(keys or InMemoryPersonKeyStore(MasterKeys(MASTER))),
    )


def create(app: ContactsApp, first: str, last: str, company=None, **more):
    return app.create_contact(
        ALICE,
        company_id=company or uuid4(),
        company_name="Acme Holding",
        details={"first_names": first, "last_names": last, **more},
    )


def stored(app: ContactsApp, contact_id) -> list[StoredEvent]:
    return list(app.recorder.select_events(contact_id))


def test_stored_events_hold_personal_fields_only_encrypted() -> None:
    app = make_app()
    result = create(
        app,
        "Øjvind",
        "Kærgaard",
        work_email="oejvind@acme.example",
        work_phone="+45 12 34 56 78",
        job_title="Indkøbschef",
    )
    app.change_details(ALICE, result.contact_id, {"private_email": "oe@home.example"})
    app.add_infotag(ALICE, result.contact_id, "Customer/Gold")
    raw = b"".join(e.state for e in stored(app, result.contact_id))
    for secret in (
        b"Kaergaard",
        "Kærgaard".encode(),
        b"K\\u00e6rgaard",
        b"oejvind@acme",
        b"oe@home",
        b"12 34 56",
        "Indkøbschef".encode(),
        b"Indk\\u00f8bschef",
    ):
        assert secret not in raw
    # What stays readable: ids, company, tag names, field names of a change.
    assert b"Acme Holding" in raw and b"Customer/Gold" in raw and b"private_email" in raw
    contact = app.get_contact(result.contact_id)
    assert (contact.first_names, contact.private_email) == ("Øjvind", "oe@home.example")


def test_a_blob_moved_to_another_event_does_not_open() -> None:
    app = make_app()
    first = create(app, "A", "B")
    app.change_details(ALICE, first.contact_id, {"job_title": "X"})
    created, changed = stored(app, first.contact_id)
    forged = StoredEvent(
        changed.originator_id, changed.originator_version, created.topic, created.state
    )
    with pytest.raises(InvalidTag):
        app.mapper.to_domain_event(forged)


def test_erasure_erases_every_version_and_reads_as_erased_without_crashing() -> None:
    app = make_app()
    first = create(app, "Karen", "Jensen", private_email="karen@home.example")
    app.change_photo(ALICE, first.contact_id, image_bytes())
    _, new = app.change_job(
        ALICE,
        first.contact_id,
        company_id=uuid4(),
        company_name="Beta",
        job={"job_title": "CFO"},
        effective_on=date(2026, 1, 1),
    )
    other = create(app, "Ole", "Hansen")
    erased = app.erase_person(ADMIN, new.contact_id, "request 2026-17")
    assert {r.contact_id for r in erased} == {first.contact_id, new.contact_id}
    for cid in (first.contact_id, new.contact_id):
        contact = app.get_contact(cid)
        assert contact.status == "erased" and contact.first_names == ERASED
        assert contact.photo is None and contact.outlook_sync_users == set()
        was = app.get_contact(cid, version=1)
        assert was.first_names == ERASED and was.private_email == ERASED
        history = app.history(cid)
        assert history[-1]["type"] == "ContactErased" and history[-1]["actor"] == "dpo"
        assert history[0]["changes"]["last_names"]["new"] == ERASED
    assert app.get_contact(other.contact_id).first_names == "Ole"
    with pytest.raises(PhotoNotStoredError):
        app.photos.get(first.person_id, "anything")
    assert not app.photos.blobs  # type: ignore[attr-defined]


def test_erased_person_refuses_commands_and_erasing_again() -> None:
    app = make_app()
    first = create(app, "Karen", "Jensen")
    app.erase_person(ADMIN, first.contact_id, None)
    for attempt in (
        lambda: app.change_details(ALICE, first.contact_id, {"job_title": "x"}),
        lambda: app.add_infotag(ALICE, first.contact_id, "x"),
        lambda: app.archive(ALICE, first.contact_id),
        lambda: app.toggle_outlook_sync(ALICE, first.contact_id, user_id="a", enabled=True),
        lambda: app.change_details(ALICE, first.contact_id, {"job_title": "x"}, 1),
        lambda: app.erase_person(ADMIN, first.contact_id, None),
    ):
        with pytest.raises(ContactErasedError):
            attempt()


def test_erasure_releases_the_uniqueness_keys() -> None:
    app = make_app()
    company = uuid4()
    first = create(app, "Karen", "Jensen", company, work_email="k@acme.example")
    with pytest.raises(DuplicateContactError):
        create(app, "Karen", "Jensen", company)
    app.erase_person(ADMIN, first.contact_id, None)
    create(app, "Karen", "Jensen", company, work_email="k@acme.example")


def test_snapshots_are_encrypted_and_read_as_erased_after_erasure() -> None:
    app = make_app()
    first = create(app, "Snap", "Shot", private_phone="+45 99 88 77 66")
    app.take_snapshot(first.contact_id)
    assert app.snapshots is not None
    (snapshot,) = list(app.snapshots.recorder.select_events(first.contact_id))
    assert b"Snap" not in snapshot.state and b"99 88 77" not in snapshot.state
    assert app.get_contact(first.contact_id).private_phone == "+45 99 88 77 66"
    app.erase_person(ADMIN, first.contact_id, None)
    restored: Any = app.repository.get(first.contact_id, version=1)
    assert restored.first_names == ERASED


def test_rotation_rewraps_person_keys_without_touching_events() -> None:
    keys = InMemoryPersonKeyStore(MasterKeys(MASTER))
    app = make_app(keys)
    first = create(app, "Rita", "Rotation")
    data_key = keys.get(first.person_id)
    events_before = stored(app, first.contact_id)
    new_master = b"n" * 32
    keys.master = MasterKeys(new_master, [MASTER])
    assert keys.rotate() == 1 and keys.rotate() == 0
    assert stored(app, first.contact_id) == events_before
    only_new = InMemoryPersonKeyStore(MasterKeys(new_master))
    only_new.rows = keys.rows
    assert only_new.get(first.person_id) == data_key
    only_old = InMemoryPersonKeyStore(MasterKeys(MASTER))
    only_old.rows = keys.rows
    with pytest.raises(MasterKeyError):
        only_old.get(first.person_id)


def test_erasure_records_keyed_hashes_of_every_address_the_person_had() -> None:
    from shared.addresses import address_hash

    app = make_app()
    first = create(app, "Hash", "Me", work_email="old@acme.example")
    app.change_details(ALICE, first.contact_id, {"work_email": "New@Acme.example"})
    _, new = app.change_job(
        ALICE,
        first.contact_id,
        company_id=uuid4(),
        company_name="B",
        job={"work_email": "h@beta.example"},
        effective_on=date(2026, 1, 1),
    )
    app.erase_person(ADMIN, new.contact_id, None)
    erased = app.history(new.contact_id)[-1]
    expected = sorted(
        address_hash(b"k" * 32, a)
        for a in ("old@acme.example", "new@acme.example", "h@beta.example")
    )
    assert erased["data"]["address_hashes"] == expected


def test_a_photo_for_an_erased_person_is_refused_before_anything_is_stored() -> None:
    app = make_app()
    first = create(app, "Pho", "To")
    app.erase_person(ADMIN, first.contact_id, None)
    with pytest.raises(ContactErasedError):
        app.change_photo(ALICE, first.contact_id, image_bytes())
    assert not app.photos.blobs  # type: ignore[attr-defined]
