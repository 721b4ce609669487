"""The Contact aggregate's rules, without any infrastructure."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest

from services.contacts.domain import (
    Actor,
    Contact,
    ContactArchivedError,
    ContactNotArchivedError,
    DuplicateContactError,
    FormerEmploymentError,
    InfotagNotPlacedError,
    InvalidValueError,
    NoPhotoError,
    NothingToChangeError,
    PhotoInfo,
    UniqueKey,
    VersionConflictError,
    normalise_text,
    uniqueness_keys,
)

ALICE = Actor("alice", "corr-1")


def new_contact(**overrides: str | None) -> Contact:
    details: dict[str, str | None] = {
        "first_names": "Karen Marie",
        "last_names": "Jensen",
        "job_title": "Buyer",
        "work_email": "kmj@acme.dk",
        "private_email": "karen@home.dk",
        "private_phone": "+45 11 22 33 44",
        "work_phone": "+45 70 00 00 00",
        **overrides,
    }
    return Contact.create(
        contact_id=uuid4(),
        person_id=uuid4(),
        actor=ALICE,
        company_id=uuid4(),
        company_name="Acme A/S",
        details=details,
        started_on=date(2020, 1, 1),
    )


def test_created_contact_records_actor_correlation_and_person() -> None:
    contact = new_contact()
    (event,) = contact.pending_events
    assert isinstance(event, Contact.Created)
    assert (event.actor, event.correlation_id) == ("alice", "corr-1")
    assert event.person_id == contact.person_id
    assert contact.status == "current"


def test_details_change_records_only_fields_that_differ() -> None:
    contact = new_contact()
    assert contact.change_details(ALICE, {"job_title": "Head of buying", "last_names": "Jensen"})
    event = contact.pending_events[-1]
    assert isinstance(event, Contact.DetailsChanged)
    assert event.changes == {"job_title": "Head of buying"}
    assert not contact.change_details(ALICE, {"job_title": "Head of buying"})


def test_details_change_refuses_empty_names_and_empty_change() -> None:
    contact = new_contact()
    with pytest.raises(InvalidValueError):
        contact.change_details(ALICE, {"first_names": "  "})
    with pytest.raises(NothingToChangeError):
        contact.change_details(ALICE, {})


def test_job_change_carries_personal_data_tags_sync_and_photo_but_not_work_data() -> None:
    old = new_contact()
    old.add_infotag(ALICE, "VIP")
    old.toggle_outlook_sync(ALICE, user_id="alice", enabled=True)
    old.change_photo(
        ALICE, PhotoInfo(content_hash="h1", media_type="image/png", byte_size=10, width=2, height=2)
    )
    new = old.change_job(
        Actor("bob", "corr-2"),
        successor_id=uuid4(),
        company_id=uuid4(),
        company_name="Beta ApS",
        job={"job_title": "CFO", "work_email": "kmj@beta.dk"},
        effective_on=date(2024, 5, 1),
    )
    assert (
        old.status == "former" and old.successor_id == new.id and old.ended_on == date(2024, 5, 1)
    )
    assert new.person_id == old.person_id and new.predecessor_id == old.id
    assert (new.first_names, new.last_names) == (old.first_names, old.last_names)
    assert (new.private_email, new.private_phone) == (old.private_email, old.private_phone)
    assert new.work_email == "kmj@beta.dk" and new.work_phone is None and new.job_title == "CFO"
    assert set(new.infotags) == {"VIP"} and new.outlook_sync_users == {"alice"}
    assert new.photo == old.photo and new.started_on == date(2024, 5, 1)


def test_former_employment_cannot_change_job_again_or_be_edited() -> None:
    old = new_contact()
    old.change_job(
        ALICE,
        successor_id=uuid4(),
        company_id=uuid4(),
        company_name="B",
        job={},
        effective_on=date(2024, 1, 1),
    )
    for attempt in (
        lambda: old.change_details(ALICE, {"job_title": "x"}),
        lambda: old.add_infotag(ALICE, "x"),
        lambda: old.toggle_outlook_sync(ALICE, user_id="alice", enabled=True),
        lambda: old.archive(ALICE),
        lambda: old.change_job(
            ALICE,
            successor_id=uuid4(),
            company_id=uuid4(),
            company_name="C",
            job={},
            effective_on=date(2025, 1, 1),
        ),
    ):
        with pytest.raises(FormerEmploymentError):
            attempt()


def test_job_change_cannot_end_before_the_employment_started() -> None:
    contact = new_contact()
    with pytest.raises(InvalidValueError):
        contact.change_job(
            ALICE,
            successor_id=uuid4(),
            company_id=uuid4(),
            company_name="B",
            job={},
            effective_on=date(2019, 12, 31),
        )
    assert len(contact.pending_events) == 1


def test_archived_contact_refuses_edits_until_restored() -> None:
    contact = new_contact()
    assert contact.archive(ALICE, "left the market")
    assert not contact.archive(ALICE)
    with pytest.raises(ContactArchivedError):
        contact.change_details(ALICE, {"job_title": "x"})
    contact.restore(ALICE)
    with pytest.raises(ContactNotArchivedError):
        contact.restore(ALICE)
    assert contact.change_details(ALICE, {"job_title": "x"})


def test_infotags_record_who_and_when_and_unknown_removal_is_refused() -> None:
    contact = new_contact()
    assert contact.add_infotag(Actor("bob", "c"), "Customer/Gold")
    assert not contact.add_infotag(ALICE, "Customer/Gold")
    assert contact.infotags["Customer/Gold"]["added_by"] == "bob"
    contact.remove_infotag(ALICE, "Customer/Gold")
    with pytest.raises(InfotagNotPlacedError):
        contact.remove_infotag(ALICE, "Customer/Gold")


def test_outlook_sync_is_per_user_and_idempotent() -> None:
    contact = new_contact()
    assert contact.toggle_outlook_sync(ALICE, user_id="alice", enabled=True)
    assert not contact.toggle_outlook_sync(ALICE, user_id="alice", enabled=True)
    assert contact.toggle_outlook_sync(ALICE, user_id="bob", enabled=True)
    assert contact.toggle_outlook_sync(ALICE, user_id="alice", enabled=False, reason="noise")
    assert contact.outlook_sync_users == {"bob"}


def test_photo_removal_needs_a_photo() -> None:
    contact = new_contact()
    with pytest.raises(NoPhotoError):
        contact.remove_photo(ALICE)
    assert contact.change_photo(
        ALICE, PhotoInfo(content_hash="h", media_type="image/png", byte_size=1, width=1, height=1)
    )
    assert not contact.change_photo(
        ALICE, PhotoInfo(content_hash="h", media_type="image/png", byte_size=1, width=1, height=1)
    )
    contact.remove_photo(ALICE)
    assert contact.photo is None


def test_expected_version_mismatch_is_a_conflict() -> None:
    contact = new_contact()
    contact.check_version(1)
    contact.check_version(None)
    with pytest.raises(VersionConflictError):
        contact.check_version(2)


def test_names_compare_without_case_whitespace_or_normal_form() -> None:
    assert normalise_text("  ANNE\tMarie  ") == normalise_text("anne marie")
    assert normalise_text("Mu\u0308ller") == normalise_text("Müller")
    assert normalise_text("ﬁn") == normalise_text("FIN")  # compatibility ligature


def test_uniqueness_keys_cover_name_at_company_and_emails_only_while_current() -> None:
    contact = new_contact()
    keys = uniqueness_keys(contact)
    assert sorted(keys.values()) == ["name", "private_email", "work_email"]
    contact.archive(ALICE)
    assert uniqueness_keys(contact) == {}


def test_unique_key_refuses_a_second_owner_until_released() -> None:
    first, second = uuid4(), uuid4()
    key = UniqueKey.claim_new(uuid4(), "name", first)
    with pytest.raises(DuplicateContactError) as err:
        key.claim(second)
    assert err.value.existing_id == first
    key.release(first)
    key.claim(second)
    assert key.owner_id == second
