"""Translation of stored contact events into the public integration events of the contract."""

from __future__ import annotations

from typing import Any

from services.contacts.domain import Contact, event_type_name
from shared.contract import contacts as contract

_DATA: dict[type[Any], type[contract.ContactEventBase]] = {
    Contact.Created: contract.ContactCreated,
    Contact.DetailsChanged: contract.ContactDetailsChanged,
    Contact.JobChanged: contract.JobChanged,
    Contact.OutlookSyncToggled: contract.OutlookSyncToggled,
    Contact.InfotagAdded: contract.InfotagAdded,
    Contact.InfotagRemoved: contract.InfotagRemoved,
    Contact.PhotoChanged: contract.PhotoChanged,
    Contact.PhotoRemoved: contract.PhotoRemoved,
    Contact.Archived: contract.ContactArchived,
    Contact.Restored: contract.ContactRestored,
    Contact.Erased: contract.ContactErased,
}

#: Stored-event topics of the events that go on the bus.
PUBLISHED_STORE_TOPICS: frozenset[str] = frozenset(cls.TOPIC for cls in _DATA)

_ENVELOPE = {
    "originator_id",
    "originator_version",
    "timestamp",
    "person_id",
    "actor",
    "correlation_id",
    "originator_topic",
}


def is_published(event: object) -> bool:
    """True for the events that go on the bus (contact events; not uniqueness keys)."""
    return type(event) in _DATA


def to_integration_event(event: Any, global_position: int) -> contract.ContactEventBase:
    """The contract's message for a stored contact event at a position of the store."""
    model = _DATA[type(event)]
    data = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
    if isinstance(event, Contact.Created):
        data["infotags"] = [{"tag": t, **placed} for t, placed in sorted(data["infotags"].items())]
    return model.model_validate(
        {
            "event_id": contract.event_id_for(event.originator_id, event.originator_version),
            "type": event_type_name(event),
            "occurred_at": event.timestamp,
            "actor": event.actor,
            "correlation_id": event.correlation_id,
            "contact_id": event.originator_id,
            "person_id": event.person_id,
            "aggregate_version": event.originator_version,
            "global_position": global_position,
            "data": data,
        }
    )
