"""Integration events Kontakt publishes on `contacts.events` (JSON, key = person id).

Each message is one event: an envelope (who, when, which contact and person,
aggregate version, global position) and a `data` object whose shape the
`type` decides. Consumers deduplicate by `event_id`, which is derived from
(contact_id, aggregate_version): a re-delivered event has the same id.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: Namespace of event ids: uuid5(EVENT_ID_NAMESPACE, f"{contact_id}:{aggregate_version}").
EVENT_ID_NAMESPACE = UUID("5b0e7c8a-6a7d-4f43-9d1c-0b8a4c9f2e11")

#: What personal data reads as after the person was erased.
ERASED = "[erased]"

DetailField = Literal[
    "first_names",
    "last_names",
    "job_title",
    "department",
    "work_email",
    "private_email",
    "work_phone",
    "private_phone",
]


def event_id_for(contact_id: UUID, aggregate_version: int) -> UUID:
    """The event id of a contact's event at a version (stable across re-deliveries)."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{contact_id}:{aggregate_version}")


class _Model(BaseModel):
    # Consumers must tolerate fields added later (additive changes keep the version).
    model_config = ConfigDict(extra="ignore", frozen=True)


class InfotagPlacement(_Model):
    """An infotag on a contact: who placed it and when."""

    tag: str
    added_by: str
    added_at: datetime


class PhotoRef(_Model):
    """What an event tells of a photo; the bytes are not on the bus."""

    content_hash: str
    media_type: str
    byte_size: int
    width: int
    height: int


class ContactEventBase(_Model):
    """The envelope every contact event carries."""

    event_id: UUID = Field(description="uuid5 of (contact_id, aggregate_version); dedupe by it")
    type: str
    schema_version: int = Field(description="Bumped only for breaking changes of this type")
    occurred_at: datetime
    actor: str = Field(description="The user (token subject) whose command caused the event")
    correlation_id: str
    contact_id: UUID
    person_id: UUID = Field(description="Shared by every version of the human; the message key")
    aggregate_version: int = Field(ge=1, description="The contact's version after this event")
    global_position: int = Field(ge=1, description="Position in Kontakt's event store")


class ContactCreatedData(_Model):
    """A contact was created; with predecessor_id, a new version after a job change."""

    company_id: UUID
    company_name: str
    first_names: str
    last_names: str
    job_title: str | None
    department: str | None
    work_email: str | None
    private_email: str | None
    work_phone: str | None
    private_phone: str | None
    started_on: date | None
    predecessor_id: UUID | None
    infotags: list[InfotagPlacement]
    outlook_sync_users: list[str]
    photo: PhotoRef | None


class ContactCreated(ContactEventBase):
    """ContactCreated."""

    type: Literal["ContactCreated"] = "ContactCreated"
    schema_version: Literal[1] = 1
    data: ContactCreatedData


class ContactDetailsChangedData(_Model):
    """The named detail fields now hold these values (null: cleared)."""

    changes: dict[DetailField, str | None]


class ContactDetailsChanged(ContactEventBase):
    """ContactDetailsChanged."""

    type: Literal["ContactDetailsChanged"] = "ContactDetailsChanged"
    schema_version: Literal[1] = 1
    data: ContactDetailsChangedData


class JobChangedData(_Model):
    """This employment ended; the person goes on as successor_id at the new company."""

    ended_on: date
    successor_id: UUID
    new_company_id: UUID
    new_company_name: str


class JobChanged(ContactEventBase):
    """JobChanged (published for the former version; the new one has a ContactCreated)."""

    type: Literal["JobChanged"] = "JobChanged"
    schema_version: Literal[1] = 1
    data: JobChangedData


class OutlookSyncToggledData(_Model):
    """A user's Outlook sync for this contact was switched on or off."""

    user_id: str
    enabled: bool
    reason: str | None


class OutlookSyncToggled(ContactEventBase):
    """OutlookSyncToggled."""

    type: Literal["OutlookSyncToggled"] = "OutlookSyncToggled"
    schema_version: Literal[1] = 1
    data: OutlookSyncToggledData


class InfotagData(_Model):
    """The infotag placed or removed (who and when: actor and occurred_at)."""

    tag: str


class InfotagAdded(ContactEventBase):
    """InfotagAdded."""

    type: Literal["InfotagAdded"] = "InfotagAdded"
    schema_version: Literal[1] = 1
    data: InfotagData


class InfotagRemoved(ContactEventBase):
    """InfotagRemoved."""

    type: Literal["InfotagRemoved"] = "InfotagRemoved"
    schema_version: Literal[1] = 1
    data: InfotagData


class PhotoChanged(ContactEventBase):
    """PhotoChanged: the contact has a new current photo."""

    type: Literal["PhotoChanged"] = "PhotoChanged"
    schema_version: Literal[1] = 1
    data: PhotoRef


class EmptyData(_Model):
    """No data beyond the envelope."""


class PhotoRemoved(ContactEventBase):
    """PhotoRemoved."""

    type: Literal["PhotoRemoved"] = "PhotoRemoved"
    schema_version: Literal[1] = 1
    data: EmptyData = EmptyData()


class ReasonData(_Model):
    """A free-text reason."""

    reason: str | None


class ContactArchived(ContactEventBase):
    """ContactArchived (soft delete)."""

    type: Literal["ContactArchived"] = "ContactArchived"
    schema_version: Literal[1] = 1
    data: ReasonData


class ContactRestored(ContactEventBase):
    """ContactRestored."""

    type: Literal["ContactRestored"] = "ContactRestored"
    schema_version: Literal[1] = 1
    data: EmptyData = EmptyData()


class ContactErasedData(_Model):
    """Why, and keyed hashes of every address the person had (to forget them by)."""

    reason: str | None
    address_hashes: list[str] = Field(
        default_factory=list,
        description="HMAC-SHA256 (Kontakt's key secret) of each normalised e-mail address",
    )


class ContactErased(ContactEventBase):
    """ContactErased: delete every copy of this contact's personal data you hold."""

    type: Literal["ContactErased"] = "ContactErased"
    schema_version: Literal[1] = 1
    data: ContactErasedData


ContactEvent = Annotated[
    ContactCreated
    | ContactDetailsChanged
    | JobChanged
    | OutlookSyncToggled
    | InfotagAdded
    | InfotagRemoved
    | PhotoChanged
    | PhotoRemoved
    | ContactArchived
    | ContactRestored
    | ContactErased,
    Field(discriminator="type"),
]

CONTACT_EVENT_TYPES: tuple[type[ContactEventBase], ...] = (
    ContactCreated,
    ContactDetailsChanged,
    JobChanged,
    OutlookSyncToggled,
    InfotagAdded,
    InfotagRemoved,
    PhotoChanged,
    PhotoRemoved,
    ContactArchived,
    ContactRestored,
    ContactErased,
)

contact_event_adapter: TypeAdapter[ContactEvent] = TypeAdapter(ContactEvent)


def parse_contact_event(raw: bytes | str) -> ContactEvent:
    """Parse and validate one message of `contacts.events`."""
    return contact_event_adapter.validate_json(raw)
