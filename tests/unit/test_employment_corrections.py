"""Corrections of an employment's company or dates, and the job change to the same company."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest

from services.contacts.domain import (
    Actor,
    Contact,
    ContactArchivedError,
    ContactErasedError,
    InvalidValueError,
    NothingToChangeError,
    SameCompanyJobChangeError,
    uniqueness_keys,
)
from tests.unit.test_contact_rules import new_contact

ALICE = Actor("alice", "corr-1")


def moved_on(contact: Contact, on: date = date(2024, 5, 1)) -> Contact:
    return contact.change_job(
        ALICE,
        successor_id=uuid4(),
        company_id=uuid4(),
        company_name="Beta ApS",
        job={"job_title": "CFO"},
        effective_on=on,
    )


def test_company_name_typo_is_corrected_as_its_own_event() -> None:
    contact = new_contact()
    company_id = contact.company_id
    assert contact.correct_employment(Actor("bob", "c2"), company_name="Acme A/S Danmark")
    event = contact.pending_events[-1]
    assert isinstance(event, Contact.EmploymentCorrected) and event.actor == "bob"
    assert (event.company_id, event.company_name) == (company_id, "Acme A/S Danmark")
    assert (event.started_on, event.ended_on) == (date(2020, 1, 1), None)
    assert contact.company_name == "Acme A/S Danmark" and contact.status == "current"


def test_a_correction_that_changes_nothing_records_nothing() -> None:
    contact = new_contact()
    assert not contact.correct_employment(ALICE, company_name="Acme A/S")
    assert len(contact.pending_events) == 1


def test_a_correction_without_any_field_is_refused() -> None:
    with pytest.raises(NothingToChangeError):
        new_contact().correct_employment(ALICE)


def test_company_id_correction_moves_the_name_key_to_the_right_company() -> None:
    contact = new_contact()
    before = uniqueness_keys(contact)
    right = uuid4()
    contact.correct_employment(ALICE, company_id=right)
    after = uniqueness_keys(contact)
    assert all(str(right) in k for k in after if k.startswith("name"))
    assert not any(str(right) in k for k in before)


def test_former_employment_can_be_corrected_but_keeps_its_end() -> None:
    old = new_contact()
    moved_on(old)
    assert old.correct_employment(ALICE, company_name="Acme Holding", started_on=date(2019, 6, 1))
    assert (old.company_name, old.started_on) == ("Acme Holding", date(2019, 6, 1))
    assert old.ended_on == date(2024, 5, 1) and old.status == "former"


def test_a_start_after_the_end_is_refused() -> None:
    old = new_contact()
    moved_on(old)
    with pytest.raises(InvalidValueError):
        old.correct_employment(ALICE, started_on=date(2024, 5, 2))
    with pytest.raises(InvalidValueError):
        old.correct_employment(ALICE, ended_on=date(2019, 12, 31))


def test_only_a_former_employment_has_an_end_to_correct() -> None:
    with pytest.raises(InvalidValueError):
        new_contact().correct_employment(ALICE, ended_on=date(2025, 1, 1))


def test_archived_and_erased_contacts_refuse_corrections() -> None:
    archived = new_contact()
    archived.archive(ALICE)
    with pytest.raises(ContactArchivedError):
        archived.correct_employment(ALICE, company_name="X")
    erased = new_contact()
    erased.erase(ALICE, None, [])
    with pytest.raises(ContactErasedError):
        erased.correct_employment(ALICE, company_name="X")


def test_job_change_to_the_same_company_is_refused_as_a_title_change() -> None:
    contact = new_contact()
    with pytest.raises(SameCompanyJobChangeError) as err:
        contact.change_job(
            ALICE,
            successor_id=uuid4(),
            company_id=contact.company_id,
            company_name="Acme A/S",
            job={"job_title": "CEO"},
            effective_on=date(2025, 1, 1),
        )
    assert err.value.company_id == contact.company_id
    assert len(contact.pending_events) == 1 and contact.status == "current"
