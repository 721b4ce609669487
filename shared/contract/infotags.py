"""Events of the infotag catalogue Kontakt publishes on `infotags.events` (JSON).

The catalogue is one tree of contact tags; every change to it is one event,
all under one key (the catalogue's id), so every consumer sees them in the
order they were made. A consumer keeps, per tag, its name, parent and whether
it is active; a tag's path is its ancestors' names and its own joined by `/`.
A rename or move therefore changes the path of every tag below it too.
Deduplicate by `event_id`, or keep the highest `catalogue_version` applied.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: The catalogue's id: the key of every message on the topic.
CATALOGUE_ID = uuid5(NAMESPACE_URL, "kontakt:infotag-catalogue:contacts")

#: Namespace of the ids of tags first placed by name: see `tag_id_for_path`.
TAG_NAMESPACE = uuid5(NAMESPACE_URL, "kontakt:infotag:contacts")
#: Joins the names of a tag's ancestors and its own into its path.
PATH_SEPARATOR = "/"

#: Namespace of event ids: uuid5(CATALOGUE_EVENT_NAMESPACE, str(catalogue_version)).
CATALOGUE_EVENT_NAMESPACE = uuid5(NAMESPACE_URL, "kontakt:infotag-catalogue:events")


def catalogue_event_id(catalogue_version: int) -> UUID:
    """The event id of the catalogue's event at a version (stable across re-deliveries)."""
    return uuid5(CATALOGUE_EVENT_NAMESPACE, str(catalogue_version))


def name_key(name: str) -> str:
    """A tag name as siblings compare it: NFKC-normalised, casefolded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def split_path(path: str) -> list[str]:
    """A path's names, root first (`Kunde/Guld` gives `Kunde`, `Guld`); empty parts dropped."""
    return [part for part in (p.strip() for p in path.split(PATH_SEPARATOR)) if part]


def tag_id_for_path(path: str) -> UUID:
    """The id of the catalogue tag a placement by name (`tag_id` null) was carried over to."""
    return uuid5(TAG_NAMESPACE, PATH_SEPARATOR.join(name_key(p) for p in split_path(path)))


def placement_tag_id(tag: str, tag_id: UUID | None) -> UUID:
    """The catalogue tag of a placement: its `tag_id`, or for one by name (null) the tag
    its name was carried over to."""
    return tag_id or tag_id_for_path(tag)


class _Model(BaseModel):
    # Consumers must tolerate fields added later (additive changes keep the version).
    model_config = ConfigDict(extra="ignore", frozen=True)


class InfotagEventBase(_Model):
    """The envelope every catalogue event carries."""

    event_id: UUID = Field(description="uuid5 of the catalogue version; dedupe by it")
    type: str
    schema_version: int = Field(description="Bumped only for breaking changes of this type")
    occurred_at: datetime
    actor: str = Field(description="The admin (token subject) whose command caused the event")
    correlation_id: str
    tag_id: UUID = Field(description="The tag the event is about; kept through renames and moves")
    catalogue_version: int = Field(ge=1, description="The catalogue's version after this event")
    global_position: int = Field(ge=1, description="Position in Kontakt's event store")


class InfotagDefinedData(_Model):
    """A new tag: its name and its parent (null: at the root)."""

    name: str = Field(min_length=1, max_length=100)
    parent_id: UUID | None = None


class InfotagDefined(InfotagEventBase):
    """InfotagDefined: a new, active tag."""

    type: Literal["InfotagDefined"] = "InfotagDefined"
    schema_version: Literal[1] = 1
    data: InfotagDefinedData


class InfotagRenamedData(_Model):
    """The tag's new name (its descendants' paths change with it)."""

    name: str = Field(min_length=1, max_length=100)


class InfotagRenamed(InfotagEventBase):
    """InfotagRenamed: the tag has a new name."""

    type: Literal["InfotagRenamed"] = "InfotagRenamed"
    schema_version: Literal[1] = 1
    data: InfotagRenamedData


class InfotagMovedData(_Model):
    """The tag's new parent (null: the root); its descendants move with it."""

    parent_id: UUID | None = None


class InfotagMoved(InfotagEventBase):
    """InfotagMoved: the tag sits under another parent."""

    type: Literal["InfotagMoved"] = "InfotagMoved"
    schema_version: Literal[1] = 1
    data: InfotagMovedData


class _NoData(_Model):
    """Nothing beyond the envelope."""


class InfotagDeactivated(InfotagEventBase):
    """InfotagDeactivated: no new placements; contacts keep it and can be found by it."""

    type: Literal["InfotagDeactivated"] = "InfotagDeactivated"
    schema_version: Literal[1] = 1
    data: _NoData = _NoData()


class InfotagReactivated(InfotagEventBase):
    """InfotagReactivated: the tag can be placed again."""

    type: Literal["InfotagReactivated"] = "InfotagReactivated"
    schema_version: Literal[1] = 1
    data: _NoData = _NoData()


InfotagEvent = Annotated[
    InfotagDefined | InfotagRenamed | InfotagMoved | InfotagDeactivated | InfotagReactivated,
    Field(discriminator="type"),
]

INFOTAG_EVENT_TYPES: tuple[type[InfotagEventBase], ...] = (
    InfotagDefined,
    InfotagRenamed,
    InfotagMoved,
    InfotagDeactivated,
    InfotagReactivated,
)

#: Each catalogue event's model by its type name.
INFOTAG_EVENTS_BY_TYPE: dict[str, type[InfotagEventBase]] = {
    model.model_fields["type"].default: model for model in INFOTAG_EVENT_TYPES
}

infotag_event_adapter: TypeAdapter[InfotagEvent] = TypeAdapter(InfotagEvent)


def parse_infotag_event(raw: bytes | str) -> InfotagEvent:
    """Parse and validate one message of `infotags.events`."""
    return infotag_event_adapter.validate_json(raw)
