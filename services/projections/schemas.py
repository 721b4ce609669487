"""Response models of the query API (one per tab)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

from shared.contract.contacts import ContactStatus
from shared.views import ContactFields, PhotoView

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, with the total count."""

    total: int
    limit: int
    offset: int
    items: list[T]


class ContactSummary(BaseModel):
    """A contact in a list."""

    contact_id: UUID
    person_id: UUID
    version: int
    status: ContactStatus
    first_names: str
    last_names: str
    company_id: UUID
    company_name: str
    job_title: str | None
    work_email: str | None


class Relation(BaseModel):
    """Another contact related to this one (another version, or a colleague)."""

    contact_id: UUID
    first_names: str
    last_names: str
    job_title: str | None
    company_name: str | None = None
    status: ContactStatus | None = None


class Company(BaseModel):
    """A company the contacts work at, as the contacts read model knows it."""

    company_id: UUID
    company_name: str
    #: Its current contacts.
    contacts: int


class SyncUser(BaseModel):
    """A user who has Outlook sync on for this contact, and how far the sync got."""

    user_id: str
    status: str | None = None
    reason: str | None = None
    updated_at: datetime | None = None


class ContactDetails(ContactFields):
    """The Details tab."""

    contact_id: UUID
    photo: PhotoView | None
    other_versions: list[Relation]
    colleagues: list[Relation]
    outlook_sync: list[SyncUser]
    created_at: datetime | None
    updated_at: datetime | None


class Activity(BaseModel):
    """An e-mail where the contact is sender or recipient."""

    message_id: str
    from_address: str
    to: list[str]
    cc: list[str]
    subject: str
    sent_at: datetime


class LinkedItem(BaseModel):
    """An opportunity, campaign or project the contact is linked to."""

    item_id: UUID
    title: str | None
    status: str | None
    closed: bool
    outcome: str | None
    role: str | None
    linked_at: datetime


#: A field's value in the history: text, a date or id as text, infotag paths, or null.
FieldValue = str | list[str] | None


class FieldChange(BaseModel):
    """One field an event changed: its value before and after (`[erased]` once erased)."""

    field: str
    old: FieldValue
    new: FieldValue


class HistoryItem(BaseModel):
    """One event of the contact: who, when, through which channel, and what it changed."""

    version: int
    type: str
    actor: str
    channel: str
    occurred_at: datetime
    changes: list[FieldChange]


class HistoryPage(BaseModel):
    """A page of the History tab, newest first."""

    limit: int
    items: list[HistoryItem]
    #: Send as before_version for the next (older) page; null when this is the last.
    next_before_version: int | None


class FieldProvenance(BaseModel):
    """Who last set a field, when, through which channel, by which event."""

    field: str
    set_by: str
    set_at: datetime
    channel: str
    version: int
    type: str


class PhotoEntry(PhotoView):
    """A photo the contact has had: who made it current when, and where its bytes are."""

    set_by: str
    set_at: datetime
    current: bool
    #: The contacts API's GET /contacts/{id}/photos/{content_hash}.
    url: str
