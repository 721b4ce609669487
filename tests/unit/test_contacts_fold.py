"""The contacts read model's pure fold: what each contract event does to a row."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from services.projections import contacts_model as model
from shared.contract import contacts as c
from shared.contract.infotags import tag_id_for_path
from tests.unit.contact_events import AT, PHOTO, created, next_event


@pytest.fixture
def row() -> model.ContactRow:
    return model.apply(None, created())


def test_a_created_contact_is_a_current_row_with_its_addresses_and_sorted_switches() -> None:
    event = created()
    row = model.apply(None, event)
    assert (row.contact_id, row.person_id, row.version, row.position) == (
        event.contact_id,
        event.person_id,
        1,
        10,
    )
    assert (row.first_names, row.job_title, row.private_phone) == ("Karen", "Buyer", "+45 2")
    assert row.status == "current" and row.created_at == row.updated_at == AT
    assert row.addresses == frozenset({"kj@acme.example", "karen@home.example"})
    assert row.outlook_sync_users == ("al", "zoe")
    # Placed by name before the catalogue: the tag its name was carried over to.
    assert row.infotags == {"vip": model.Infotag("bob", AT, tag_id_for_path("vip"))}
    assert row.search_text == "karen jensen"


def test_every_event_but_created_moves_version_position_and_update_time(
    row: model.ContactRow,
) -> None:
    event = next_event(row, c.ContactArchived, data=c.ReasonData(reason=None))
    after = model.apply(row, event)
    assert (after.version, after.position, after.updated_at) == (2, 11, event.occurred_at)
    assert after.created_at == row.created_at


def test_changed_details_replace_the_named_fields_and_keep_old_addresses(
    row: model.ContactRow,
) -> None:
    changes: dict[Any, str | None] = {"work_email": "karen@beta.example", "job_title": None}
    event = next_event(
        row, c.ContactDetailsChanged, data=c.ContactDetailsChangedData(changes=changes)
    )
    after = model.apply(row, event)
    assert (after.work_email, after.job_title, after.first_names) == (
        "karen@beta.example",
        None,
        "Karen",
    )
    # The old address is kept, held up to the change: it still matches e-mails sent before.
    assert after.addresses == row.addresses | {"karen@beta.example"}
    assert after.held == {
        model.Held("kj@acme.example", AT, event.occurred_at),
        model.Held("karen@home.example", AT),
        model.Held("karen@beta.example", event.occurred_at),
    }


def test_an_address_given_up_and_taken_again_is_held_twice(row: model.ContactRow) -> None:
    def work_email(r: model.ContactRow, value: str | None) -> tuple[model.ContactRow, Any]:
        data = c.ContactDetailsChangedData(changes={"work_email": value})
        event = next_event(r, c.ContactDetailsChanged, data=data)
        return model.apply(r, event), event.occurred_at

    away, left = work_email(row, None)
    back, returned = work_email(away, "KJ@Acme.example")
    assert {h for h in back.held if h.address == "kj@acme.example"} == {
        model.Held("kj@acme.example", AT, left),
        model.Held("kj@acme.example", returned),
    }
    # An event that changes no address leaves the intervals as they are.
    archive = next_event(back, c.ContactArchived, data=c.ReasonData(reason=None))
    archived = model.apply(back, archive)
    assert archived.held == back.held


def test_a_job_change_makes_the_row_a_former_employment(row: model.ContactRow) -> None:
    successor = uuid4()
    data = c.JobChangedData(
        ended_on=date(2026, 12, 1),
        successor_id=successor,
        new_company_id=uuid4(),
        new_company_name="Beta ApS",
    )
    after = model.apply(row, next_event(row, c.JobChanged, data=data))
    assert (after.successor_id, after.ended_on, after.status) == (
        successor,
        date(2026, 12, 1),
        "former",
    )
    assert after.company_name == row.company_name  # the old employment keeps its company
    # It held its addresses up to the job change; its successor holds what it carries on.
    assert after.work_email == row.work_email and after.addresses == row.addresses
    assert all(h.until == after.updated_at for h in after.held)


def test_a_successor_remembers_its_predecessor() -> None:
    predecessor = uuid4()
    assert model.apply(None, created(predecessor_id=predecessor)).predecessor_id == predecessor


def test_outlook_sync_switches_on_and_off_per_user(row: model.ContactRow) -> None:
    def toggled(r: model.ContactRow, user: str, enabled: bool) -> model.ContactRow:
        data = c.OutlookSyncToggledData(user_id=user, enabled=enabled, reason=None)
        return model.apply(r, next_event(r, c.OutlookSyncToggled, data=data))

    on = toggled(row, "bob", True)
    assert on.outlook_sync_users == ("al", "bob", "zoe")
    assert toggled(on, "zoe", False).outlook_sync_users == ("al", "bob")
    assert toggled(row, "nobody", False).outlook_sync_users == row.outlook_sync_users


def test_infotags_are_added_by_the_actor_and_removed_by_name(row: model.ContactRow) -> None:
    added_event = next_event(row, c.InfotagAdded, data=c.InfotagData(tag="golf"), actor="carl")
    added = model.apply(row, added_event)
    assert added.infotags["golf"] == model.Infotag(
        "carl", added_event.occurred_at, tag_id_for_path("golf")
    )
    removed = model.apply(added, next_event(added, c.InfotagRemoved, data=c.InfotagData(tag="vip")))
    assert list(removed.infotags) == ["golf"]


def test_a_photo_is_set_and_removed(row: model.ContactRow) -> None:
    with_photo = model.apply(row, next_event(row, c.PhotoChanged, data=PHOTO))
    assert with_photo.photo == PHOTO
    assert model.apply(with_photo, next_event(with_photo, c.PhotoRemoved)).photo is None


def test_archiving_and_restoring_switch_the_status(row: model.ContactRow) -> None:
    archived = model.apply(row, next_event(row, c.ContactArchived, data=c.ReasonData(reason="x")))
    assert archived.status == "archived"
    restored = model.apply(archived, next_event(archived, c.ContactRestored))
    assert restored.status == "current"


def test_erasure_blanks_every_personal_field_and_forgets_the_addresses(
    row: model.ContactRow,
) -> None:
    photographed = model.apply(row, next_event(row, c.PhotoChanged, data=PHOTO))
    data = c.ContactErasedData(reason="request", address_hashes=["h"])
    erased = model.apply(photographed, next_event(photographed, c.ContactErased, data=data))
    assert erased.status == "erased"
    personal = (
        erased.first_names,
        erased.last_names,
        erased.job_title,
        erased.department,
        erased.work_email,
        erased.private_email,
        erased.work_phone,
        erased.private_phone,
    )
    assert set(personal) == {c.ERASED}
    assert (erased.photo, erased.outlook_sync_users, erased.addresses) == (None, (), frozenset())
    assert erased.company_name == row.company_name and erased.contact_id == row.contact_id
    assert "karen" not in erased.search_text


def test_an_erased_row_keeps_no_address_when_its_details_change_again(
    row: model.ContactRow,
) -> None:
    data = c.ContactErasedData(reason=None, address_hashes=[])
    erased = model.apply(row, next_event(row, c.ContactErased, data=data))
    again = c.ContactDetailsChangedData(changes={"department": "x"})
    assert model.apply(
        erased, next_event(erased, c.ContactDetailsChanged, data=again)
    ).addresses == (frozenset())


def test_a_corrected_employment_reads_as_corrected_everywhere(row: model.ContactRow) -> None:
    right = uuid4()
    data = c.EmploymentCorrectedData(
        company_id=right,
        company_name="Acme A/S\u200b Danmark",
        started_on=date(2019, 6, 1),
        ended_on=date(2026, 1, 31),
    )
    after = model.apply(row, next_event(row, c.EmploymentCorrected, data=data))
    assert (after.company_id, after.company_name) == (right, "Acme A/S Danmark")
    assert (after.started_on, after.ended_on) == (date(2019, 6, 1), date(2026, 1, 31))
    assert (after.first_names, after.status) == (row.first_names, row.status)


def _every_event(row: model.ContactRow) -> list[c.ContactEventBase]:
    job = c.JobChangedData(
        ended_on=date(2026, 12, 1),
        successor_id=uuid4(),
        new_company_id=uuid4(),
        new_company_name="B",
    )
    changes: dict[Any, str | None] = {"last_names": "Berg"}
    return [
        next_event(row, c.ContactDetailsChanged, data=c.ContactDetailsChangedData(changes=changes)),
        next_event(row, c.JobChanged, data=job),
        next_event(
            row,
            c.EmploymentCorrected,
            data=c.EmploymentCorrectedData(
                company_id=uuid4(), company_name="A2", started_on=date(2020, 1, 1), ended_on=None
            ),
        ),
        next_event(
            row, c.JobChangeWithdrawn, data=c.JobChangeWithdrawnData(predecessor_id=uuid4())
        ),
        next_event(
            row,
            c.JobChangeUndone,
            data=c.JobChangeUndoneData(
                withdrawn_id=uuid4(), infotags=[], outlook_sync_users=["bob"], photo=PHOTO
            ),
        ),
        next_event(
            row,
            c.OutlookSyncToggled,
            data=c.OutlookSyncToggledData(user_id="bob", enabled=True, reason=None),
        ),
        next_event(row, c.InfotagAdded, data=c.InfotagData(tag="golf")),
        next_event(row, c.InfotagRemoved, data=c.InfotagData(tag="vip")),
        next_event(row, c.PhotoChanged, data=PHOTO),
        next_event(row, c.PhotoRemoved),
        next_event(row, c.ContactArchived, data=c.ReasonData(reason=None)),
        next_event(row, c.ContactRestored),
        next_event(row, c.ContactErased, data=c.ContactErasedData(reason=None, address_hashes=[])),
    ]


def test_the_fold_covers_every_contract_event_type(row: model.ContactRow) -> None:
    types = {type(e) for e in _every_event(row)} | {c.ContactCreated}
    assert types == set(c.CONTACT_EVENT_TYPES)


@pytest.mark.parametrize("index", range(13))
def test_applying_an_event_again_changes_nothing(row: model.ContactRow, index: int) -> None:
    event = _every_event(row)[index]
    once = model.apply(row, event)
    assert model.apply(once, event) == once


def test_applying_the_creation_again_gives_the_same_row() -> None:
    event = created()
    assert model.apply(model.apply(None, event), event) == model.apply(None, event)


def test_an_event_for_a_contact_never_created_is_refused() -> None:
    row = model.apply(None, created())
    orphan = next_event(row, c.ContactArchived, data=c.ReasonData(reason=None))
    with pytest.raises(model.UnknownContactError):
        model.apply(None, orphan)


def test_an_event_type_the_fold_does_not_know_is_refused(row: model.ContactRow) -> None:
    class Unknown(c.ContactEventBase):
        type: str = "Unknown"

    unknown = Unknown(
        event_id=uuid4(),
        schema_version=1,
        occurred_at=AT,
        actor="a",
        correlation_id="c",
        contact_id=row.contact_id,
        person_id=row.person_id,
        aggregate_version=2,
        global_position=11,
    )
    with pytest.raises(TypeError, match="no projection for Unknown"):
        model.apply(row, unknown)
