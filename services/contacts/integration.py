"""Translation of stored contact events into the public integration events of the contract."""

from __future__ import annotations

from typing import Any

from services.contacts.domain import CONTACT_EVENT_CLASSES, Contact, event_type_name, public_name
from services.contacts.infotags import InfotagCatalogue
from shared.contract import contacts as contract
from shared.contract import infotags as catalogue_contract

# Built from the events' public names, so the domain and the contract cannot drift apart.
_DATA: dict[type[Any], type[contract.ContactEventBase]] = {
    cls: contract.CONTACT_EVENTS_BY_TYPE[public_name(cls)] for cls in CONTACT_EVENT_CLASSES
}

#: Stored-event topics of the contact events that go on the bus.
PUBLISHED_STORE_TOPICS: frozenset[str] = frozenset(cls.TOPIC for cls in _DATA)

# The catalogue's events by their stored topic (`kontakt:InfotagDefined`): the part after
# the colon is the contract's type name.
_CATALOGUE: dict[str, type[catalogue_contract.InfotagEventBase]] = {
    cls.TOPIC: catalogue_contract.INFOTAG_EVENTS_BY_TYPE[cls.TOPIC.split(":", 1)[1]]
    for cls in (
        InfotagCatalogue.Defined,
        InfotagCatalogue.Renamed,
        InfotagCatalogue.Moved,
        InfotagCatalogue.Deactivated,
        InfotagCatalogue.Reactivated,
    )
}

#: Stored-event topics of the catalogue events that go on the bus.
CATALOGUE_STORE_TOPICS: frozenset[str] = frozenset(_CATALOGUE)

_ENVELOPE = {
    "originator_id",
    "originator_version",
    "timestamp",
    "person_id",
    "actor",
    "correlation_id",
    "channel",
    "originator_topic",
}


def to_catalogue_event(event: Any, global_position: int) -> catalogue_contract.InfotagEventBase:
    """The contract's message for a stored catalogue event at a position of the store."""
    model = _CATALOGUE[type(event).TOPIC]
    data = {
        k: v
        for k, v in vars(event).items()
        if k not in _ENVELOPE and k not in {"tag_id", "actor", "correlation_id"}
    }
    return model.model_validate(
        {
            "event_id": catalogue_contract.catalogue_event_id(event.originator_version),
            "occurred_at": event.timestamp,
            "actor": event.actor,
            "correlation_id": event.correlation_id,
            "tag_id": event.tag_id,
            "catalogue_version": event.originator_version,
            "global_position": global_position,
            "data": data,
        }
    )


def to_integration_event(event: Any, global_position: int) -> contract.ContactEventBase:
    """The contract's message for a stored contact event at a position of the store."""
    model = _DATA[type(event)]
    data = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
    if isinstance(event, Contact.Created | Contact.JobChangeUndone):
        data["infotags"] = [{"tag": t, **placed} for t, placed in sorted(data["infotags"].items())]
    return model.model_validate(
        {
            "event_id": contract.event_id_for(event.originator_id, event.originator_version),
            "type": event_type_name(event),
            "occurred_at": event.timestamp,
            "actor": event.actor,
            "correlation_id": event.correlation_id,
            "channel": event.channel,
            "contact_id": event.originator_id,
            "person_id": event.person_id,
            "aggregate_version": event.originator_version,
            "global_position": global_position,
            "data": data,
        }
    )
