"""A contact's detail fields are the contract's everywhere: one definition, derived by each part."""

from __future__ import annotations

import dataclasses
from uuid import uuid4

from services.contacts.domain import CONTACT_EVENT_CLASSES, Actor, Contact, public_name
from services.contacts.schemas import ContactCreate, ContactDetailsChange, JobChange
from services.projections.contacts_model import ContactRow
from services.projections.sql import contacts as contacts_sql
from shared.contract import contacts as contract
from shared.views import ContactFields


def _details_in(names: list[str]) -> list[str]:
    return [n for n in names if n in contract.DETAILS]


def test_every_part_holds_exactly_the_contracts_detail_fields_in_its_order() -> None:
    fields = list(contract.DETAIL_FIELDS)
    created = [f.name for f in dataclasses.fields(Contact.Created)]
    for names in (
        list(contract.ContactCreatedData.model_fields),
        created,
        list(ContactCreate.model_fields),
        list(ContactDetailsChange.model_fields),
        list(ContactFields.model_fields),
        [f.name for f in dataclasses.fields(ContactRow)],
        list(contacts_sql._COLUMN_NAMES),
    ):
        assert _details_in(names) == fields
    # Beside the fields, a change may only say whom the person is not (near duplicates).
    assert set(ContactDetailsChange.model_fields) == {*fields, "distinct_from"}


def test_a_job_change_sets_the_job_fields_and_the_person_keeps_the_personal_ones() -> None:
    assert _details_in(list(JobChange.model_fields)) == list(contract.JOB_DETAILS)
    assert set(contract.JOB_DETAILS) | set(contract.PERSONAL_DETAILS) == set(contract.DETAILS)
    assert not set(contract.JOB_DETAILS) & set(contract.PERSONAL_DETAILS)


def test_only_the_names_are_required_and_only_they_refuse_null_in_a_change() -> None:
    assert contract.REQUIRED_DETAILS == ("first_names", "last_names")
    required = [n for n, f in ContactCreate.model_fields.items() if f.is_required()]
    assert _details_in(required) == list(contract.REQUIRED_DETAILS)
    assert not any(f.is_required() for f in ContactDetailsChange.model_fields.values())


def test_the_domain_events_carry_the_public_names_of_the_contracts_events() -> None:
    assert sorted(public_name(cls) for cls in CONTACT_EVENT_CLASSES) == sorted(
        contract.CONTACT_EVENTS_BY_TYPE
    )


def test_an_event_stored_before_an_optional_field_existed_reads_it_as_null() -> None:
    contact = Contact.create(
        contact_id=uuid4(),
        person_id=uuid4(),
        actor=Actor("u", "c"),
        company_id=uuid4(),
        company_name="Acme",
        details={"first_names": "A", "last_names": "B", "job_title": "Buyer"},
    )
    (created,) = contact.collect_events()
    older = object.__new__(Contact.Created)
    # What the mapper does with a stored event: its state becomes the event's __dict__.
    object.__setattr__(
        older, "__dict__", {k: v for k, v in vars(created).items() if k != "job_title"}
    )
    rebuilt = older.mutate(None)
    assert rebuilt is not None
    assert rebuilt.details()["job_title"] is None
    assert rebuilt.details()["first_names"] == "A"
