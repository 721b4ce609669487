"""Integration events Kontakt publishes on `contacts.events` (JSON, key = person id).

Each message is one event: an envelope (who, when, which contact and person,
aggregate version, global position) and a `data` object whose shape the
`type` decides. Consumers deduplicate by `event_id`, which is derived from
(contact_id, aggregate_version): a re-delivered event has the same id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: Namespace of event ids: uuid5(EVENT_ID_NAMESPACE, f"{contact_id}:{aggregate_version}").
EVENT_ID_NAMESPACE = UUID("5b0e7c8a-6a7d-4f43-9d1c-0b8a4c9f2e11")

#: What personal data reads as after the person was erased.
ERASED = "[erased]"

#: Through which channel a change came: the contacts API's `X-Kontakt-Channel` header.
CHANNELS: tuple[str, ...] = ("api", "import", "outlook-sync", "service")
#: The channel of a change that names none, and of events stored before channels existed.
DEFAULT_CHANNEL = "api"
# A Literal of the tuple, for the APIs' validation and documents; checkers only see str.
Channel = Literal[CHANNELS]  # type: ignore[valid-type]

ContactStatus = Literal["current", "former", "archived", "erased", "withdrawn"]
"""Where a contact stands: one version of a person is current, former (moved on), archived,
erased, or withdrawn (made by a job change that was undone)."""


def contact_status(
    *, erased: bool, former: bool, archived: bool, withdrawn: bool = False
) -> ContactStatus:
    """A contact's status: erased above all, then withdrawn, former (moved on), archived."""
    if erased:
        return "erased"
    if withdrawn:
        return "withdrawn"
    if former:
        return "former"
    return "archived" if archived else "current"


class FieldKind(StrEnum):
    """What a detail field holds, which decides how the edge validates it."""

    TEXT = "text"
    EMAIL = "email"
    PHONE = "phone"


@dataclass(frozen=True)
class Detail:
    """A detail field's kind, and whether it belongs to the person or to the job."""

    kind: FieldKind
    #: A personal field follows the person to a new job; the others are the job's.
    personal: bool


def event_id_for(contact_id: UUID, aggregate_version: int) -> UUID:
    """The event id of a contact's event at a version (stable across re-deliveries)."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{contact_id}:{aggregate_version}")


class _Model(BaseModel):
    # Consumers must tolerate fields added later (additive changes keep the version).
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContactDetails(_Model):
    """A contact's detail fields: the one definition the domain, the APIs, the read model and
    the sync derive theirs from (a field without a default is required)."""

    first_names: Annotated[str, Detail(FieldKind.TEXT, personal=True)]
    last_names: Annotated[str, Detail(FieldKind.TEXT, personal=True)]
    job_title: Annotated[str | None, Detail(FieldKind.TEXT, personal=False)]
    department: Annotated[str | None, Detail(FieldKind.TEXT, personal=False)]
    work_email: Annotated[str | None, Detail(FieldKind.EMAIL, personal=False)]
    private_email: Annotated[str | None, Detail(FieldKind.EMAIL, personal=True)]
    work_phone: Annotated[str | None, Detail(FieldKind.PHONE, personal=False)]
    private_phone: Annotated[str | None, Detail(FieldKind.PHONE, personal=True)]


#: Every detail field by name, in the contract's order.
DETAILS: dict[str, Detail] = {
    name: next(m for m in info.metadata if isinstance(m, Detail))
    for name, info in ContactDetails.model_fields.items()
}
DETAIL_FIELDS: tuple[str, ...] = tuple(DETAILS)
#: Detail fields every contact has (they cannot be cleared).
REQUIRED_DETAILS: tuple[str, ...] = tuple(
    name for name, info in ContactDetails.model_fields.items() if info.annotation is str
)
#: Detail fields that belong to the person and follow them to a new job.
PERSONAL_DETAILS: tuple[str, ...] = tuple(n for n, d in DETAILS.items() if d.personal)
#: Detail fields of the job: a job change sets them afresh.
JOB_DETAILS: tuple[str, ...] = tuple(n for n, d in DETAILS.items() if not d.personal)
#: Detail fields that hold e-mail addresses.
EMAIL_DETAILS: tuple[str, ...] = tuple(n for n, d in DETAILS.items() if d.kind is FieldKind.EMAIL)
#: Detail fields that hold phone numbers.
PHONE_DETAILS: tuple[str, ...] = tuple(n for n, d in DETAILS.items() if d.kind is FieldKind.PHONE)

# A Literal of a computed tuple is what the JSON Schema needs (the names as an enum);
# type checkers only see str.
DetailField = Literal[DETAIL_FIELDS]  # type: ignore[valid-type]


def detail_annotations(names: tuple[str, ...] = DETAIL_FIELDS) -> dict[str, Any]:
    """The contract's type of each named detail field, to declare them elsewhere by."""
    return {name: ContactDetails.model_fields[name].annotation for name in names}


class InfotagPlacement(_Model):
    """An infotag on a contact: who placed it and when."""

    #: The name path the tag had when placed (`Kunde/Guld`); the catalogue has the current one.
    tag: str
    #: The catalogue tag; None for a placement by name made before the catalogue.
    tag_id: UUID | None = None
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
    channel: str = Field(
        default=DEFAULT_CHANNEL,
        description="Through which channel the change came: api, import, outlook-sync or"
        " service (more may be added); messages from before it read as api",
    )
    contact_id: UUID
    person_id: UUID = Field(description="Shared by every version of the human; the message key")
    aggregate_version: int = Field(ge=1, description="The contact's version after this event")
    global_position: int = Field(ge=1, description="Position in Kontakt's event store")


class _Employer(_Model):
    company_id: UUID
    company_name: str


# Bases' fields come first, the last base's first: company, details, then the rest.
class ContactCreatedData(ContactDetails, _Employer):
    """A contact was created; with predecessor_id, a new version after a job change."""

    started_on: date | None
    predecessor_id: UUID | None
    infotags: list[InfotagPlacement]
    outlook_sync_users: list[str]
    photo: PhotoRef | None
    distinct_from: list[UUID] = Field(
        default_factory=list,
        description="Contacts at the company the creator said this person is not, though"
        " they look alike (near duplicates); empty when none",
    )


class ContactCreated(ContactEventBase):
    """ContactCreated."""

    type: Literal["ContactCreated"] = "ContactCreated"
    schema_version: Literal[1] = 1
    data: ContactCreatedData


class ContactDetailsChangedData(_Model):
    """The named detail fields now hold these values (null: cleared)."""

    changes: dict[DetailField, str | None]
    distinct_from: list[UUID] = Field(
        default_factory=list,
        description="Contacts the editor said this person is not, though the change makes"
        " them look alike (near duplicates); empty when none",
    )


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


class EmploymentCorrectedData(_Employer):
    """A typo in this employment was corrected: it now reads so (no job change happened).

    After a corrected job-change date, the former version's event carries the new
    ended_on and its successor's the same date as started_on.
    """

    started_on: date | None
    ended_on: date | None


class EmploymentCorrected(ContactEventBase):
    """EmploymentCorrected: the employer's id or name, or a date, of this employment fixed."""

    type: Literal["EmploymentCorrected"] = "EmploymentCorrected"
    schema_version: Literal[1] = 1
    data: EmploymentCorrectedData


class JobChangeWithdrawnData(_Model):
    """This version was made by a job change that was undone: the predecessor is current again.

    A withdrawn version accepts no more changes; its history stays.
    """

    predecessor_id: UUID


class JobChangeWithdrawn(ContactEventBase):
    """JobChangeWithdrawn (for the withdrawn version; its predecessor has a JobChangeUndone)."""

    type: Literal["JobChangeWithdrawn"] = "JobChangeWithdrawn"
    schema_version: Literal[1] = 1
    data: JobChangeWithdrawnData


class JobChangeUndoneData(_Model):
    """This employment's job change was undone: it is current again (no end, no successor).

    The infotags, Outlook switches and photo are those the withdrawn version had at the
    undo: they replace this version's.
    """

    withdrawn_id: UUID
    infotags: list[InfotagPlacement]
    outlook_sync_users: list[str]
    photo: PhotoRef | None


class JobChangeUndone(ContactEventBase):
    """JobChangeUndone (published for the version that is current again)."""

    type: Literal["JobChangeUndone"] = "JobChangeUndone"
    schema_version: Literal[1] = 1
    data: JobChangeUndoneData


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

    #: The name path the tag was placed under (`Kunde/Guld`): the placement's key.
    tag: str
    #: The catalogue tag; None for a placement by name made before the catalogue.
    tag_id: UUID | None = None


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
    | EmploymentCorrected
    | JobChangeWithdrawn
    | JobChangeUndone
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
    EmploymentCorrected,
    JobChangeWithdrawn,
    JobChangeUndone,
    OutlookSyncToggled,
    InfotagAdded,
    InfotagRemoved,
    PhotoChanged,
    PhotoRemoved,
    ContactArchived,
    ContactRestored,
    ContactErased,
)

#: Each contact event's model by its type name.
CONTACT_EVENTS_BY_TYPE: dict[str, type[ContactEventBase]] = {
    model.model_fields["type"].default: model for model in CONTACT_EVENT_TYPES
}

contact_event_adapter: TypeAdapter[ContactEvent] = TypeAdapter(ContactEvent)


def parse_contact_event(raw: bytes | str) -> ContactEvent:
    """Parse and validate one message of `contacts.events`."""
    return contact_event_adapter.validate_json(raw)
