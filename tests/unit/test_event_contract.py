"""The public event contract: pinned JSON Schemas, round trips, and the AsyncAPI document."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from uuid import uuid4

from services.contacts.domain import Actor, Contact, PhotoInfo
from services.contacts.integration import to_integration_event
from shared.contract import contacts as contract
from shared.contract.inbound import EmailLogged, item_event_adapter
from shared.contract.spec import (
    ASYNCAPI_FILE,
    SCHEMAS_FILE,
    asyncapi_document,
    default_settings,
    json_schemas,
    render,
)

CONTRACT_DOCS = Path(__file__).resolve().parents[2] / "docs" / "contract"
HOW = (
    "the event contract changed. If that was deliberate: additive changes keep the schema"
    " version, breaking ones bump it (docs/contract/README.md); then run `kontakt contract`"
    " and commit docs/contract/."
)


def test_json_schemas_match_the_checked_in_snapshot() -> None:
    assert render(json_schemas()) == (CONTRACT_DOCS / SCHEMAS_FILE).read_text(), HOW


def test_asyncapi_document_matches_the_checked_in_copy_and_names_every_topic() -> None:
    document = asyncapi_document(default_settings())
    assert render(document) == (CONTRACT_DOCS / ASYNCAPI_FILE).read_text(), HOW
    channels = json.dumps(document["channels"])
    for topic in default_settings().all_topics():
        assert topic in channels


def test_every_domain_event_maps_to_a_contract_event_that_round_trips() -> None:
    actor = Actor("u", "corr")
    contact = Contact.create(
        contact_id=uuid4(),
        person_id=uuid4(),
        actor=actor,
        company_id=uuid4(),
        company_name="X",
        details={"first_names": "A", "last_names": "B"},
    )
    contact.add_infotag(actor, "t")
    contact.remove_infotag(actor, "t")
    contact.change_details(actor, {"job_title": "Z", "work_phone": None, "department": "D"})
    contact.change_photo(
        actor, PhotoInfo(content_hash="h", media_type="image/png", byte_size=1, width=2, height=3)
    )
    contact.remove_photo(actor)
    contact.toggle_outlook_sync(actor, user_id="u", enabled=True)
    contact.archive(actor, "r")
    contact.restore(actor)
    contact.correct_employment(actor, company_name="X A/S", started_on=date(2025, 1, 1))
    successor = contact.change_job(
        actor,
        successor_id=uuid4(),
        company_id=uuid4(),
        company_name="Y",
        job={},
        effective_on=date(2026, 1, 1),
    )
    successor.add_infotag(actor, "t2")
    successor.withdraw_job_change(actor)
    contact.undo_job_change(actor, successor)
    successor.erase(actor, "gdpr", ["ab12"])
    events = contact.pending_events + successor.pending_events
    published = [to_integration_event(e, i + 1) for i, e in enumerate(events)]
    assert {m.type for m in published} == {
        t.model_fields["type"].default for t in contract.CONTACT_EVENT_TYPES
    }
    for message in published:
        again = contract.parse_contact_event(message.model_dump_json())
        assert again == message
        assert message.event_id == contract.event_id_for(
            message.contact_id, message.aggregate_version
        )
    created = published[0]
    assert isinstance(created, contract.ContactCreated) and created.data.first_names == "A"


def test_consumers_ignore_fields_added_later() -> None:
    message = contract.parse_contact_event(
        json.dumps(
            {
                "event_id": str(uuid4()),
                "type": "InfotagAdded",
                "schema_version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
                "actor": "u",
                "correlation_id": "c",
                "contact_id": str(uuid4()),
                "person_id": str(uuid4()),
                "aggregate_version": 2,
                "global_position": 9,
                "data": {"tag": "x", "added_later": True},
                "new_field": 1,
            }
        )
    )
    assert isinstance(message, contract.InfotagAdded) and message.data.tag == "x"
    # The channel came later: a message without one came through the API.
    assert message.channel == "api"


def test_every_event_carries_the_actors_channel_and_old_events_read_as_api() -> None:
    imported = Actor("u", "corr", "import")
    contact = Contact.create(
        contact_id=uuid4(),
        person_id=uuid4(),
        actor=imported,
        company_id=uuid4(),
        company_name="X",
        details={"first_names": "A", "last_names": "B"},
    )
    contact.add_infotag(Actor("v", "c2", "outlook-sync"), "t")
    contact.change_details(Actor("w", "c3"), {"job_title": "Z"})
    successor = contact.change_job(
        Actor("s", "c4", "service"),
        successor_id=uuid4(),
        company_id=uuid4(),
        company_name="Y",
        job={},
        effective_on=date(2026, 1, 1),
    )
    events = contact.pending_events + successor.pending_events
    assert [getattr(e, "channel") for e in events] == [  # noqa: B009
        "import",
        "outlook-sync",
        "api",
        "service",
        "service",
    ]
    published = [to_integration_event(e, i + 1) for i, e in enumerate(events)]
    assert [m.channel for m in published] == ["import", "outlook-sync", "api", "service", "service"]
    assert all("channel" not in getattr(m, "data").model_dump() for m in published)  # noqa: B009
    # An event stored before channels existed has no attribute of its own.
    old = events[1]
    object.__delattr__(old, "channel")
    assert getattr(old, "channel") == "api"  # noqa: B009
    assert to_integration_event(old, 9).channel == "api"


def test_inbound_events_parse_with_their_wire_names() -> None:
    email = EmailLogged.model_validate_json(
        json.dumps(
            {
                "event_id": str(uuid4()),
                "type": "EmailLogged",
                "occurred_at": "2026-01-01T00:00:00Z",
                "message_id": "<m1@x>",
                "from": "a@x.dk",
                "to": ["b@y.dk"],
                "cc": [],
                "subject": "Hej",
                "sent_at": "2026-01-01T00:00:00Z",
            }
        )
    )
    assert email.from_address == "a@x.dk"
    linked = item_event_adapter.validate_json(
        json.dumps(
            {
                "event_id": str(uuid4()),
                "type": "ContactLinked",
                "occurred_at": "2026-01-01T00:00:00Z",
                "item_id": str(uuid4()),
                "contact_id": str(uuid4()),
                "role": "decision maker",
            }
        )
    )
    assert linked.type == "ContactLinked"
