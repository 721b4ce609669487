"""The pure core of the Outlook sync: snapshots from events, rendering, plans."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.sync import domain
from shared.contract.contacts import (
    ERASED,
    ContactEvent,
    contact_event_adapter,
    event_id_for,
)


def event(type_: str, contact_id: UUID, person_id: UUID, version: int, **data: Any) -> ContactEvent:
    """A contact event in the contract's shape."""
    return contact_event_adapter.validate_python(
        {
            "event_id": event_id_for(contact_id, version),
            "type": type_,
            "schema_version": 1,
            "occurred_at": datetime.now(UTC),
            "actor": "alice",
            "correlation_id": "c",
            "contact_id": contact_id,
            "person_id": person_id,
            "aggregate_version": version,
            "global_position": version,
            "data": data,
        }
    )


def created(contact_id: UUID, person_id: UUID, **overrides: Any) -> ContactEvent:
    data: dict[str, Any] = {
        "company_id": uuid4(),
        "company_name": "Acme",
        "first_names": "Sofie",
        "last_names": "Lund",
        "job_title": "CTO",
        "department": None,
        "work_email": "sofie@acme.example",
        "private_email": "sofie@home.example",
        "work_phone": "+45 1",
        "private_phone": "+45 2",
        "started_on": None,
        "predecessor_id": None,
        "infotags": [],
        "outlook_sync_users": ["bob"],
        "photo": None,
        **overrides,
    }
    return event("ContactCreated", contact_id, person_id, 1, **data)


def snapshot(**overrides: Any) -> domain.Snapshot:
    base = domain.Snapshot(
        contact_id=uuid4(),
        person_id=uuid4(),
        version=1,
        status="current",
        company_name="Acme",
        details={
            "first_names": "Sofie",
            "last_names": "Lund",
            "work_email": "sofie@acme.example",
            "private_email": "SOFIE@acme.example",
            "work_phone": "+45 1",
            "private_phone": "+45 2",
        },
        infotags=("VIP",),
        photo_hash=None,
    )
    return replace(base, **overrides)


def test_creation_switches_on_every_listed_user() -> None:
    cid, pid = uuid4(), uuid4()
    snap, intents = domain.apply_event(None, created(cid, pid, outlook_sync_users=["bob", "eve"]))
    assert snap.status == "current" and snap.details["first_names"] == "Sofie"
    assert [(i.kind, i.user_id, i.enabled) for i in intents] == [
        ("switch", "bob", True),
        ("switch", "eve", True),
    ]


def test_a_new_job_moves_the_links_of_the_former_version() -> None:
    old, new, pid = uuid4(), uuid4(), uuid4()
    _, intents = domain.apply_event(None, created(new, pid, predecessor_id=str(old)))
    assert intents[0].kind == "move" and intents[0].from_contact_id == old
    assert intents[0].users_on == ("bob",)


def test_a_corrected_company_name_is_what_outlook_shows_next() -> None:
    cid, pid = uuid4(), uuid4()
    snap, _ = domain.apply_event(None, created(cid, pid))
    fixed, intents = domain.apply_event(
        snap,
        event(
            "EmploymentCorrected", cid, pid, 2,
            company_id=str(uuid4()), company_name="Acme Danmark A/S",
            started_on="2020-01-01", ended_on=None,
        ),
    )  # fmt: skip
    assert fixed.status == "current" and fixed.version == 2
    assert domain.render_contact(fixed)["companyName"] == "Acme Danmark A/S"
    assert [i.kind for i in intents] == ["touch"]


def test_an_event_before_the_creation_is_a_named_error() -> None:
    with pytest.raises(domain.OutOfOrderEventError):
        domain.apply_event(None, event("PhotoRemoved", uuid4(), uuid4(), 2))


def test_erasure_keeps_nothing_personal() -> None:
    cid, pid = uuid4(), uuid4()
    snap, _ = domain.apply_event(None, created(cid, pid, infotags=[]))
    erased, intents = domain.apply_event(snap, event("ContactErased", cid, pid, 2, reason="gdpr"))
    assert erased.status == "erased" and erased.photo_hash is None and erased.infotags == ()
    assert set(erased.details.values()) == {ERASED}
    assert intents[0].kind == "touch"


def test_a_creation_published_after_the_erasure_never_counts_as_current() -> None:
    snap, _ = domain.apply_event(
        None, created(uuid4(), uuid4(), first_names=ERASED, last_names=ERASED)
    )
    assert snap.status == "erased"


def test_rendering_keeps_graph_limits_and_drops_duplicate_addresses() -> None:
    body = domain.render_contact(snapshot())
    assert [e["address"] for e in body["emailAddresses"]] == ["sofie@acme.example"]
    assert body["businessPhones"] == ["+45 1"] and body["homePhones"] == ["+45 2"]
    assert len(body["emailAddresses"]) <= domain.MAX_EMAILS
    assert body["categories"] == ["VIP"]
    prop = body["singleValueExtendedProperties"][0]
    assert prop["id"] == domain.CONTACT_ID_PROPERTY


def test_the_hash_changes_only_when_what_outlook_shows_changes() -> None:
    snap = snapshot()
    h = domain.content_hash(domain.render_contact(snap))
    assert domain.content_hash(domain.render_contact(replace(snap, version=9))) == h
    other = replace(snap, details={**snap.details, "job_title": "CEO"})
    assert domain.content_hash(domain.render_contact(other)) != h


def test_plan_creates_updates_skips_and_deletes() -> None:
    snap = snapshot()
    link = domain.Link("bob", snap.person_id, snap.contact_id, wanted=True)
    p = domain.plan(link, snap)
    assert p.kind == "create"
    synced = domain.linked(link, "g1", p)
    assert domain.plan(synced, snap).kind == "noop"
    changed = replace(snap, infotags=("VIP", "Board"))
    assert domain.plan(synced, changed).kind == "update"
    assert domain.plan(synced, replace(snap, status="archived")).kind == "delete"
    assert domain.plan(replace(synced, wanted=False), snap).kind == "delete"
    assert domain.plan(synced, replace(snap, status="former")).kind == "hold"


def test_a_user_deletion_is_not_undone_by_a_stale_switch_but_by_a_new_one() -> None:
    snap = snapshot(version=5)
    link = domain.Link("bob", snap.person_id, snap.contact_id, wanted=True)
    gone = domain.deleted_by_user(domain.linked(link, "g1", domain.plan(link, snap)))
    assert domain.plan(gone, snap).kind == "switch_off"
    off = domain.switched_off(gone, snap.contact_id, 6)
    assert domain.plan(off, snap).kind == "noop"
    stale = domain.apply_switch(off, snap.contact_id, True, 4)
    assert stale.suppressed and domain.plan(stale, snap).kind == "noop"
    fresh = domain.apply_switch(off, snap.contact_id, True, 7)
    assert not fresh.suppressed and domain.plan(fresh, snap).kind == "create"


def test_a_switch_on_while_our_switch_off_is_pending_stays_suppressed() -> None:
    snap = snapshot()
    gone = domain.deleted_by_user(domain.Link("bob", snap.person_id, snap.contact_id, True))
    assert domain.apply_switch(gone, snap.contact_id, True, 99).suppressed


def test_a_stray_item_is_a_duplicate_of_a_linked_one_or_left_from_a_link_now_off() -> None:
    snap = snapshot()
    link = domain.Link("bob", snap.person_id, snap.contact_id, wanted=True)
    synced = domain.linked(link, "g1", domain.plan(link, snap))
    assert domain.is_stray(synced, "g2") and not domain.is_stray(synced, "g1")
    assert not domain.is_stray(domain.linking(link), "g2")  # a create in progress may adopt it
    assert domain.is_stray(replace(link, wanted=False), "g2")
    assert not domain.is_stray(link, "g2")  # switched on: the next create adopts it


def test_stored_events_with_nul_and_lone_surrogates_are_cleaned_not_dropped() -> None:
    from shared.contract.contacts import ContactDetailsChanged, event_id_for

    cid, pid = uuid4(), uuid4()
    event = ContactDetailsChanged.model_validate(
        {
            "event_id": str(event_id_for(cid, 2)),
            "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
            "contact_id": str(cid),
            "person_id": str(pid),
            "actor": "a\x00lice",
            "correlation_id": "c",
            "aggregate_version": 2,
            "global_position": 7,
            "data": {"changes": {"work_email": "nul\x00l@x.example", "job_title": "C\ud800TO"}},
        }
    )
    cleaned = domain.clean_event(event)
    assert cleaned.data.changes == {"work_email": "null@x.example", "job_title": "CTO"}  # type: ignore[union-attr]
    assert cleaned.aggregate_version == 2 and cleaned.contact_id == cid


def test_a_missing_creation_or_a_version_gap_is_noticed_unless_repairing() -> None:
    from shared.contract.contacts import ContactArchived, event_id_for

    cid, pid = uuid4(), uuid4()

    def archived(version: int) -> ContactArchived:
        return ContactArchived.model_validate(
            {
                "event_id": str(event_id_for(cid, version)),
                "schema_version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
                "contact_id": str(cid),
                "person_id": str(pid),
                "actor": "alice",
                "correlation_id": "c",
                "aggregate_version": version,
                "global_position": version,
                "data": {"reason": "left"},
            }
        )

    with pytest.raises(domain.OutOfOrderEventError):
        domain.check_continuous(None, archived(3), repairing=False)
    snap = domain.Snapshot(cid, pid, 1, "current", "Acme", {}, (), None)
    domain.check_continuous(snap, archived(2), repairing=False)
    with pytest.raises(domain.VersionGapError):
        domain.check_continuous(snap, archived(3), repairing=False)
    domain.check_continuous(snap, archived(3), repairing=True)


def test_merging_categories_keeps_the_users_own_and_replaces_kontakts() -> None:
    merged = domain.merge_categories(["VIP", "Golf", "Golf"], ["VIP"], ["Partner"])
    assert merged == ["Golf", "Partner"]
    assert domain.merge_categories(["Golf"], [], []) == ["Golf"]
    assert domain.kontakt_categories('["A", 1]') == ["A"] and domain.kontakt_categories("{") == []


def test_an_explicit_mailbox_map_names_the_only_users_synced() -> None:
    mapping = {"bob": "bob@contoso.example"}
    assert domain.mailbox_for(mapping, "bob") == "bob@contoso.example"
    with pytest.raises(domain.UnmappedUserError, match="eve"):
        domain.mailbox_for(mapping, "eve")
    # The development fallback maps no one while a map is set.
    with pytest.raises(domain.UnmappedUserError, match="eve"):
        domain.mailbox_for(mapping, "eve", "{user_id}")


def test_without_a_map_no_user_is_synced_unless_the_development_fallback_is_on() -> None:
    with pytest.raises(domain.UnmappedUserError, match="KONTAKT_SYNC_MAILBOXES"):
        domain.mailbox_for({}, "eve")
    assert domain.mailbox_for({}, "eve", "{user_id}@x.example") == "eve@x.example"
