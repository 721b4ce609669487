"""Checks that a topic holds every contact event of the store, in order per key."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from services.contacts.application import ContactsApp
from services.contacts.integration import PUBLISHED_STORE_TOPICS
from shared.contract.contacts import parse_contact_event
from tests.kafka_helpers import Record


@dataclass(frozen=True)
class Completeness:
    """What a topic holds compared with the store."""

    expected: int
    delivered: int
    duplicates: int


def contact_positions(contacts: ContactsApp) -> set[int]:
    """Positions of every contact event in the store (what the relay must publish)."""
    positions: set[int] = set()
    start = 0
    while True:
        batch = contacts.recorder.select_notifications(
            start=start, limit=5000, inclusive_of_start=False
        )
        if not batch:
            return positions
        positions.update(n.id for n in batch if n.topic in PUBLISHED_STORE_TOPICS)
        start = batch[-1].id


def check_complete_and_ordered(records: list[Record], expected: set[int]) -> Completeness:
    """Assert every expected position arrived, keyed by person, first arrivals in order."""
    first_seen: dict[str, int] = {}
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    duplicates = 0
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = parse_contact_event(record.value)  # the documented shape, or it raises
        assert record.key == str(event.person_id).encode(), "message key must be the person id"
        if str(event.event_id) in first_seen:
            duplicates += 1
            continue
        first_seen[str(event.event_id)] = event.global_position
        per_key[record.key].append(event.global_position)
    delivered = set(first_seen.values())
    missing = expected - delivered
    assert not missing, f"{len(missing)} events never reached the topic, e.g. {sorted(missing)[:5]}"
    for key, positions in per_key.items():
        assert positions == sorted(positions), f"events of person {key!r} out of order"
    return Completeness(len(expected), len(delivered), duplicates)
