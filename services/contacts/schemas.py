"""Request and response models of the contacts command API."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.views import ContactFields

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{1,38}[0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("is not an e-mail address")
    return value


def _phone(value: str) -> str:
    if not _PHONE.match(value):
        raise ValueError("is not a phone number (digits, spaces, + ( ) . / -)")
    return value


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=40), AfterValidator(_phone)
]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactCreate(_Strict):
    """Create a contact."""

    company_id: UUID
    company_name: Text
    first_names: Text
    last_names: Text
    job_title: Text | None = None
    department: Text | None = None
    work_email: Email | None = None
    private_email: Email | None = None
    work_phone: Phone | None = None
    private_phone: Phone | None = None
    started_on: date | None = None


class ContactDetailsChange(_Strict):
    """Change detail fields; only the fields sent change (null clears an optional one)."""

    first_names: Text | None = None
    last_names: Text | None = None
    job_title: Text | None = None
    department: Text | None = None
    work_email: Email | None = None
    private_email: Email | None = None
    work_phone: Phone | None = None
    private_phone: Phone | None = None

    def changes(self) -> dict[str, str | None]:
        """The fields the client sent, with their values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class JobChange(_Strict):
    """Record a job change: the person's new version at the new company."""

    company_id: UUID
    company_name: Text
    job_title: Text | None = None
    department: Text | None = None
    work_email: Email | None = None
    work_phone: Phone | None = None
    effective_on: date | None = Field(default=None, description="Defaults to today (UTC).")


class OutlookSyncSwitch(_Strict):
    """Switch the caller's own Outlook sync for a contact."""

    enabled: bool
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class OutlookSyncSwitchOff(_Strict):
    """Switch a named user's Outlook sync off, saying why (the sync service's principal)."""

    enabled: Literal[False]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class InfotagPlace(_Strict):
    """Place an infotag."""

    tag: Tag


class ArchiveRequest(_Strict):
    """Archive a contact, optionally saying why."""

    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class EraseRequest(_Strict):
    """Erase a person. The reason is kept after the erasure: it must name no personal data."""

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class CommandResponse(BaseModel):
    """A command's outcome: the contact and its new version."""

    contact_id: UUID
    person_id: UUID
    version: int


class ErasureResponse(BaseModel):
    """An erasure's outcome: every version of the person, now erased."""

    person_id: UUID
    erased: list[CommandResponse]


class JobChangeResponse(CommandResponse):
    """A job change's outcome: the new version, and the former one."""

    predecessor: CommandResponse


class InfotagView(BaseModel):
    """An infotag on a contact, with who placed it and when."""

    tag: str
    added_by: str
    added_at: datetime


class PhotoView(BaseModel):
    """What is known of a contact's current photo."""

    content_hash: str
    media_type: str
    byte_size: int
    width: int
    height: int


class ContactView(ContactFields):
    """A contact's state, read from the event store."""

    id: UUID
    archived: bool
    erased: bool
    infotags: list[InfotagView]
    outlook_sync_users: list[str]
    photo: PhotoView | None
    created_on: datetime
    modified_on: datetime


class HistoryEntry(BaseModel):
    """One event of a contact's history."""

    version: int
    type: str
    occurred_at: datetime
    actor: str
    correlation_id: str
    changes: dict[str, dict[str, Any]]
    data: dict[str, Any]


class EmploymentView(BaseModel):
    """One version of a person: an employment."""

    contact_id: UUID
    company_id: UUID
    company_name: str
    job_title: str | None
    department: str | None
    started_on: date | None
    ended_on: date | None
    status: str
    version: int


class ErrorBody(BaseModel):
    """An error: a message, and for conflicts the field and the existing contact."""

    detail: str
    field: str | None = None
    existing_contact_id: UUID | None = None
    current_version: int | None = None
