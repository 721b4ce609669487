"""The contacts application on in-memory persistence: commands, keys, reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from services.contacts.application import ContactsApp
from services.contacts.domain import (
    Actor,
    ContactNotFoundError,
    DuplicateContactError,
    InvalidValueError,
    SameCompanyJobChangeError,
    VersionConflictError,
)
from services.contacts.photos import (
    PhotoTooLargeError,
    UnsupportedPhotoTypeError,
)
from tests.images import image_bytes

ALICE = Actor("alice", "corr")
ACME, BETA = uuid4(), uuid4()


def create(app: ContactsApp, first: str = "Karen", last: str = "Jensen", company=ACME, **more):
    details = {"first_names": first, "last_names": last, **more}
    return app.create_contact(ALICE, company_id=company, company_name="Acme", details=details)


def test_same_name_at_same_company_is_refused_with_existing_id(app: ContactsApp) -> None:
    first = create(app)
    with pytest.raises(DuplicateContactError) as err:
        create(app, "  KAREN ", "jensen")
    assert err.value.field == "name" and err.value.existing_id == first.contact_id
    create(app, company=BETA)  # another company is fine


def test_email_is_unique_among_current_contacts_case_insensitively(app: ContactsApp) -> None:
    first = create(app, work_email="k@acme.dk")
    with pytest.raises(DuplicateContactError) as err:
        create(app, "Other", "Person", private_email="K@ACME.DK")
    assert err.value.field == "private_email" and err.value.existing_id == first.contact_id


def test_archive_releases_keys_and_restore_claims_them_again(app: ContactsApp) -> None:
    first = create(app)
    app.archive(ALICE, first.contact_id)
    second = create(app)
    with pytest.raises(DuplicateContactError) as err:
        app.restore(ALICE, first.contact_id)
    assert err.value.existing_id == second.contact_id
    app.archive(ALICE, second.contact_id)
    app.restore(ALICE, first.contact_id)


def test_rename_moves_the_name_key(app: ContactsApp) -> None:
    first = create(app)
    app.change_details(ALICE, first.contact_id, {"first_names": "Karin"})
    create(app)  # the old name is free again
    with pytest.raises(DuplicateContactError):
        create(app, "karin", "JENSEN")


def test_job_change_moves_keys_to_the_new_version(app: ContactsApp) -> None:
    first = create(app, private_email="karen@home.dk", work_email="k@acme.dk")
    old, new = app.change_job(
        ALICE,
        first.contact_id,
        company_id=BETA,
        company_name="Beta",
        job={"work_email": "k@beta.dk"},
        effective_on=date(2025, 1, 1),
    )
    assert new.person_id == old.person_id == first.person_id
    create(app, work_email="k@acme.dk")  # the old work e-mail and name at Acme are free
    with pytest.raises(DuplicateContactError) as err:
        create(app, "X", "Y", private_email="karen@home.dk")
    assert err.value.existing_id == new.contact_id
    with pytest.raises(DuplicateContactError):
        create(app, company=BETA)
    chain = app.employments(first.contact_id)
    assert [c.id for c in chain] == [old.contact_id, new.contact_id]
    assert [c.status for c in chain] == ["former", "current"]


def test_job_change_within_the_same_company_is_refused_and_keeps_the_name(
    app: ContactsApp,
) -> None:
    first = create(app)
    with pytest.raises(SameCompanyJobChangeError):
        app.change_job(
            ALICE,
            first.contact_id,
            company_id=ACME,
            company_name="Acme",
            job={"job_title": "CEO"},
            effective_on=date(2025, 1, 1),
        )
    assert app.get_contact(first.contact_id).version == 1
    with pytest.raises(DuplicateContactError) as err:
        create(app)
    assert err.value.existing_id == first.contact_id


def test_company_id_correction_moves_the_name_key(app: ContactsApp) -> None:
    first = create(app)
    app.correct_employment(ALICE, first.contact_id, company_id=BETA, expected_version=1)
    create(app)  # the name is free at the company the contact never worked for
    with pytest.raises(DuplicateContactError) as err:
        create(app, company=BETA)
    assert err.value.existing_id == first.contact_id


def test_start_correction_after_a_job_change_moves_the_former_end_with_it(
    app: ContactsApp,
) -> None:
    first = create(app)
    _, new = app.change_job(
        ALICE,
        first.contact_id,
        company_id=BETA,
        company_name="Beta",
        job={},
        effective_on=date(2025, 3, 1),
    )
    app.correct_employment(ALICE, new.contact_id, started_on=date(2025, 2, 1))
    old, current = app.employments(new.contact_id)
    assert old.ended_on == current.started_on == date(2025, 2, 1)
    assert [e["type"] for e in app.history(first.contact_id)][-1] == "EmploymentCorrected"
    assert app.history(new.contact_id)[-1]["changes"]["started_on"] == {
        "old": date(2025, 3, 1),
        "new": date(2025, 2, 1),
    }


def test_start_correction_before_the_former_start_writes_nothing(app: ContactsApp) -> None:
    first = app.create_contact(
        ALICE,
        company_id=ACME,
        company_name="Acme",
        details={"first_names": "Ib", "last_names": "Holm"},
        started_on=date(2024, 1, 1),
    )
    _, new = app.change_job(
        ALICE, first.contact_id, company_id=BETA, company_name="Beta", job={},
        effective_on=date(2025, 3, 1),
    )  # fmt: skip
    with pytest.raises(InvalidValueError):
        app.correct_employment(ALICE, new.contact_id, started_on=date(2023, 1, 1))
    assert app.get_contact(new.contact_id).started_on == date(2025, 3, 1)
    assert app.get_contact(first.contact_id).ended_on == date(2025, 3, 1)


def test_expected_version_mismatch_writes_nothing(app: ContactsApp) -> None:
    first = create(app)
    app.add_infotag(ALICE, first.contact_id, "VIP", expected_version=1)
    with pytest.raises(VersionConflictError):
        app.add_infotag(ALICE, first.contact_id, "Gold", expected_version=1)
    assert app.get_contact(first.contact_id).version == 2


def test_unknown_contact_is_not_found(app: ContactsApp) -> None:
    with pytest.raises(ContactNotFoundError):
        app.get_contact(uuid4())
    with pytest.raises(ContactNotFoundError):
        app.history(uuid4())
    with pytest.raises(ContactNotFoundError):
        app.add_infotag(ALICE, uuid4(), "x")


def test_history_lists_each_event_with_what_changed(app: ContactsApp) -> None:
    first = create(app, job_title="Buyer")
    app.change_details(Actor("bob", "c2"), first.contact_id, {"job_title": "CFO"})
    app.add_infotag(ALICE, first.contact_id, "VIP")
    history = app.history(first.contact_id)
    assert [h["type"] for h in history] == [
        "ContactCreated",
        "ContactDetailsChanged",
        "InfotagAdded",
    ]
    assert history[1]["actor"] == "bob" and history[1]["correlation_id"] == "c2"
    assert history[1]["changes"] == {"job_title": {"old": "Buyer", "new": "CFO"}}
    assert history[2]["changes"]["infotags"]["new"][0]["tag"] == "VIP"


def test_time_travel_by_version_and_by_moment(app: ContactsApp) -> None:
    first = create(app, job_title="Buyer")
    app.change_details(ALICE, first.contact_id, {"job_title": "CFO"})
    assert app.get_contact(first.contact_id, version=1).job_title == "Buyer"
    with pytest.raises(ContactNotFoundError):
        app.get_contact(first.contact_id, version=3)
    created = app.get_contact(first.contact_id, version=1).created_on
    assert app.get_contact_as_of(first.contact_id, created - timedelta(seconds=1)) is None
    was = app.get_contact_as_of(first.contact_id, created)
    assert was is not None and was.job_title == "Buyer"
    now = app.get_contact_as_of(first.contact_id, datetime.now(UTC) + timedelta(days=1))
    assert now is not None and now.job_title == "CFO"


def test_photo_is_sniffed_size_limited_and_stored(app: ContactsApp) -> None:
    first = create(app)
    result = app.change_photo(ALICE, first.contact_id, image_bytes("PNG", (5, 3)))
    photo = app.get_contact(first.contact_id).photo
    assert result.version == 2 and photo is not None
    assert (photo["media_type"], photo["width"], photo["height"]) == ("image/png", 5, 3)
    assert app.photos.get(first.person_id, photo["content_hash"]).data.startswith(b"\x89PNG")
    with pytest.raises(UnsupportedPhotoTypeError):
        app.change_photo(ALICE, first.contact_id, image_bytes("GIF"))
    with pytest.raises(UnsupportedPhotoTypeError):
        app.change_photo(ALICE, first.contact_id, b"\x89PNG not really")
    with pytest.raises(PhotoTooLargeError):
        app.change_photo(ALICE, first.contact_id, b"x" * 100_001)
    for fmt, media in (("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        app.change_photo(ALICE, first.contact_id, image_bytes(fmt))
        current = app.get_contact(first.contact_id).photo
        assert current is not None and current["media_type"] == media


def test_a_command_that_keeps_colliding_gives_up_with_a_named_error(app: ContactsApp) -> None:
    from eventsourcing.persistence import RecordConflictError

    from services.contacts.domain import ConcurrentModificationError

    calls: list[bool] = []

    def always_collides(first: bool) -> None:
        calls.append(first)
        raise RecordConflictError("moved on")

    with pytest.raises(ConcurrentModificationError):
        app._retrying(always_collides)
    assert calls[0] is True and not any(calls[1:]) and len(calls) == 10
