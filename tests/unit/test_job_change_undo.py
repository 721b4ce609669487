"""Undoing a mistaken job change: the new version withdrawn, the former current again."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import pytest

from services.contacts.domain import (
    Actor,
    Contact,
    ContactWithdrawnError,
    FormerEmploymentError,
    NotAJobChangeError,
    PhotoInfo,
    uniqueness_keys,
)
from services.contacts.integration import to_integration_event
from services.projections.contacts_model import ContactRow
from services.projections.contacts_model import apply as fold
from services.sync import domain as sync
from tests.unit.test_contact_rules import new_contact
from tests.unit.test_employment_corrections import moved_on

BOB = Actor("bob", "corr-undo")


def undone(former: Contact, new: Contact) -> None:
    new.withdraw_job_change(BOB)
    former.undo_job_change(BOB, new)


def test_undo_withdraws_the_new_version_and_makes_the_former_current() -> None:
    former = new_contact()
    new = moved_on(former)
    undone(former, new)
    assert new.status == "withdrawn" and former.status == "current"
    assert (former.ended_on, former.successor_id) == (None, None)
    assert former.withdrawn_ids == [new.id]
    withdrawn, back = new.pending_events[-1], former.pending_events[-1]
    assert isinstance(withdrawn, Contact.JobChangeWithdrawn)
    assert withdrawn.predecessor_id == former.id and withdrawn.actor == "bob"
    assert isinstance(back, Contact.JobChangeUndone) and back.withdrawn_id == new.id


def test_infotags_photo_and_outlook_switches_come_back_as_the_new_version_has_them() -> None:
    former = new_contact()
    former.add_infotag(BOB, "golf")
    former.toggle_outlook_sync(BOB, user_id="alice", enabled=True)
    new = moved_on(former)
    new.remove_infotag(BOB, "golf")
    new.add_infotag(BOB, "wine")
    new.toggle_outlook_sync(BOB, user_id="carl", enabled=True)
    photo = PhotoInfo(
        content_hash="ab" * 32, media_type="image/png", byte_size=10, width=1, height=1
    )
    new.change_photo(BOB, photo)
    undone(former, new)
    assert set(former.infotags) == {"wine"}
    assert former.outlook_sync_users == {"alice", "carl"}
    assert former.photo is not None and former.photo["content_hash"] == "ab" * 32


def test_keys_return_to_the_former_version() -> None:
    former = new_contact()
    held = uniqueness_keys(former)
    new = moved_on(former)
    assert uniqueness_keys(former) == {}
    undone(former, new)
    assert uniqueness_keys(new) == {} and uniqueness_keys(former) == held


def test_a_version_no_job_change_created_has_nothing_to_undo() -> None:
    with pytest.raises(NotAJobChangeError):
        new_contact().withdraw_job_change(BOB)


def test_a_former_version_cannot_be_undone() -> None:
    former = new_contact()
    moved_on(former)
    with pytest.raises(FormerEmploymentError):
        former.withdraw_job_change(BOB)


def test_a_withdrawn_version_refuses_every_change() -> None:
    former = new_contact()
    new = moved_on(former)
    undone(former, new)
    with pytest.raises(ContactWithdrawnError):
        new.withdraw_job_change(BOB)
    with pytest.raises(ContactWithdrawnError):
        new.change_details(BOB, {"job_title": "CEO"})
    with pytest.raises(ContactWithdrawnError):
        new.archive(BOB)
    with pytest.raises(ContactWithdrawnError):
        new.correct_employment(BOB, company_name="Beta")


def test_the_former_takes_back_only_its_own_successor() -> None:
    former = new_contact()
    moved_on(former)
    other = moved_on(new_contact())
    other.withdraw_job_change(BOB)
    with pytest.raises(NotAJobChangeError):
        former.undo_job_change(BOB, other)


def test_the_former_version_can_change_job_again_after_an_undo() -> None:
    former = new_contact()
    undone(former, moved_on(former))
    again = moved_on(former, date(2025, 1, 1))
    assert former.status == "former" and again.predecessor_id == former.id


def _contract_events(*contacts: Contact) -> list[Any]:
    events = [e for c in contacts for e in c.collect_events()]
    return [to_integration_event(e, i) for i, e in enumerate(events, 1)]


def test_the_read_model_folds_the_undo() -> None:
    former = new_contact()
    former.add_infotag(BOB, "golf")
    new = moved_on(former)
    events = _contract_events(former, new)
    new.add_infotag(BOB, "wine")
    undone(former, new)
    events += _contract_events(new, former)
    rows: dict[UUID, ContactRow] = {}
    for event in events:
        rows[event.contact_id] = fold(rows.get(event.contact_id), event)
    old_row, new_row = rows[former.id], rows[new.id]
    # The withdrawn version gave its addresses up; the former holds them again.
    assert new_row.status == "withdrawn" and all(h.until for h in new_row.held)
    assert {h.address for h in old_row.held if h.until is None} == {"kmj@acme.dk", "karen@home.dk"}
    assert old_row.status == "current" and set(old_row.infotags) == {"golf", "wine"}
    assert old_row.ended_on is None and old_row.successor_id is None


def test_the_sync_worker_moves_the_links_back_and_holds_the_withdrawn_version() -> None:
    former = new_contact()
    former.toggle_outlook_sync(BOB, user_id="alice", enabled=True)
    new = moved_on(former)
    snaps: dict[UUID, sync.Snapshot] = {}
    intents: list[sync.LinkIntent] = []
    for event in _contract_events(former, new):
        snaps[event.contact_id], _ = sync.apply_event(snaps.get(event.contact_id), event)
    undone(former, new)
    for event in _contract_events(new, former):
        snaps[event.contact_id], found = sync.apply_event(snaps.get(event.contact_id), event)
        intents += found
    assert snaps[new.id].status == "withdrawn" and snaps[former.id].status == "current"
    (move,) = intents
    assert (move.kind, move.contact_id, move.from_contact_id) == ("move", former.id, new.id)
    assert move.users_on == ("alice",)
    link = sync.Link(user_id="alice", person_id=former.person_id, contact_id=new.id, wanted=True)
    assert sync.plan(link, snaps[new.id]).kind == "hold"
    moved = sync.apply_move(link, former.id, move.users_on)
    assert sync.plan(moved, snaps[former.id]).kind == "create"
