"""The relay in process, on the real PostgreSQL and Kafka: shapes, keys, resume."""

from __future__ import annotations

from datetime import date
from uuid import uuid4

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor
from services.contacts.relay import Relay
from shared.contract.contacts import CONTACT_EVENT_TYPES, parse_contact_event
from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.kafka_helpers import read_topic, topic_suffix
from tests.relay_checks import check_complete_and_ordered, contact_positions
from tests.support import relay_until_caught_up

ALICE = Actor("alice", "relay-corr")


def every_event_type(contacts: ContactsApp) -> set[str]:
    """Commands that make one contact go through every published event type."""
    c = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name="Relay Co",
        details={"first_names": "Rel", "last_names": "Ay"},
    )
    cid = c.contact_id
    contacts.change_details(ALICE, cid, {"job_title": "CTO"})
    contacts.toggle_outlook_sync(ALICE, cid, user_id="alice", enabled=True)
    contacts.add_infotag(ALICE, cid, "Relay/Tag")
    contacts.remove_infotag(ALICE, cid, "Relay/Tag")
    contacts.change_photo(ALICE, cid, image_bytes())
    contacts.remove_photo(ALICE, cid)
    contacts.archive(ALICE, cid, "test")
    contacts.restore(ALICE, cid)
    contacts.correct_employment(ALICE, cid, company_name="Relay Co A/S")
    _, new = contacts.change_job(
        ALICE,
        cid,
        company_id=uuid4(),
        company_name="Relay Two",
        job={},
        effective_on=date(2026, 2, 1),
    )
    contacts.undo_job_change(ALICE, new.contact_id)
    contacts.erase_person(Actor("dpo", "erase"), cid, "test")
    return {str(cid), str(new.contact_id)}


@pytest.fixture
def topic_settings(settings: KontaktSettings) -> KontaktSettings:
    return settings.model_copy(update={"contacts_topic": f"contacts.events.{topic_suffix()}"})


async def test_every_event_type_arrives_in_the_documented_shape_keyed_by_person(
    contacts: ContactsApp, topic_settings: KontaktSettings
) -> None:
    ids = every_event_type(contacts)
    relay = Relay(topic_settings, contacts)
    await relay_until_caught_up(relay, contacts)
    records = await read_topic(topic_settings.kafka_bootstrap, topic_settings.contacts_topic)
    report = check_complete_and_ordered(records, contact_positions(contacts))
    assert report.duplicates == 0
    mine = [parse_contact_event(r.value) for r in records]
    mine = [e for e in mine if str(e.contact_id) in ids]
    assert {e.type for e in mine} == {t.model_fields["type"].default for t in CONTACT_EVENT_TYPES}
    created = [e for e in mine if e.type == "ContactCreated"]
    # Published after the erasure: the relay decrypts with fresh keys, so none of it is readable.
    assert all(e.data.first_names == "[erased]" for e in created)
    assert all(e.actor in ("alice", "dpo") for e in mine)


async def test_relay_resumes_from_its_recorded_position_without_republishing(
    contacts: ContactsApp, topic_settings: KontaktSettings
) -> None:
    await relay_until_caught_up(Relay(topic_settings, contacts), contacts)
    before = await read_topic(topic_settings.kafka_bootstrap, topic_settings.contacts_topic)
    every_event_type(contacts)
    second = Relay(topic_settings, contacts)
    await relay_until_caught_up(second, contacts)
    after = await read_topic(topic_settings.kafka_bootstrap, topic_settings.contacts_topic)
    report = check_complete_and_ordered(after, contact_positions(contacts))
    assert report.duplicates == 0 and len(after) - len(before) == 16


async def test_batches_in_flight_keep_order_per_key_on_the_default_partitioners_partition(
    contacts: ContactsApp, topic_settings: KontaktSettings
) -> None:
    for _ in range(6):
        every_event_type(contacts)
    # Batches of 3: many are handed to the producer while earlier ones await their acks.
    relay = Relay(topic_settings.model_copy(update={"relay_batch_size": 3}), contacts)
    await relay_until_caught_up(relay, contacts)
    records = await read_topic(topic_settings.kafka_bootstrap, topic_settings.contacts_topic)
    report = check_complete_and_ordered(records, contact_positions(contacts))
    assert report.duplicates == 0 and report.delivered == report.expected
    partitions = list(range(topic_settings.topic_partitions))
    for r in records:
        assert r.partition == DefaultPartitioner()(r.key, partitions, partitions)
