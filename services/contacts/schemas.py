"""Request and response models of the contacts command API."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.contract.contacts import DETAILS, JOB_DETAILS, REQUIRED_DETAILS, FieldKind
from shared.http import DuplicateCandidate
from shared.http import ErrorBody as ErrorBody
from shared.text import VISIBLE_TEXT_PATTERN, edge_text
from shared.views import ContactFields, InfotagView, PhotoView

_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{1,38}[0-9]$")
#: What a phone number may look like (the edge's rule), for query parameters too.
PHONE_PATTERN = _PHONE.pattern
#: RFC 5321 bounds a local part to 64 octets; email-validator leaves that to the caller.
_LOCAL_PART_MAX = 64


#: Domains email-validator refuses (RFC 6761 special-use names), said in the schema too.
_SPECIAL_USE = "|".join(SPECIAL_USE_DOMAIN_NAMES)
_NOT_SPECIAL_USE = f"^[^@]+@(?!(?:.*\\.)?(?:{_SPECIAL_USE})$)[^@]+$"


def _text(value: str) -> str:
    value = edge_text(value)
    if not value:
        raise ValueError("must not be empty (or only invisible characters)")
    return value


def _email(value: str) -> str:
    value = edge_text(value)
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"is not an e-mail address: {exc}") from None
    if len(checked.local_part.encode()) > _LOCAL_PART_MAX:
        raise ValueError(f"is not an e-mail address: the part before @ is over {_LOCAL_PART_MAX}")
    return value


def _phone(value: str) -> str:
    value = edge_text(value)
    if not _PHONE.match(value):
        raise ValueError("is not a phone number (digits, spaces, + ( ) . / -)")
    return value


#: The JSON Schema of a text field: values generated from it are never refused.
_VISIBLE = Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN})

#: A required one-line text field: refused characters give 422, invisible ones are removed,
#: whitespace is trimmed, and what is left must not be empty.
Text = Annotated[str, StringConstraints(max_length=200), _VISIBLE, AfterValidator(_text)]
Reason = Annotated[str, StringConstraints(max_length=500), _VISIBLE, AfterValidator(_text)]
Tag = Annotated[str, StringConstraints(max_length=100), _VISIBLE, AfterValidator(_text)]
#: A catalogue tag's own name: a tag path without the separator (the domain refuses `/`).
TagName = Annotated[
    str,
    StringConstraints(max_length=100),
    # Every character class of the visible-text pattern also excludes "/".
    Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN.replace("[^", "[^/")}),
    AfterValidator(_text),
]
Email = Annotated[
    str,
    StringConstraints(max_length=254),
    Field(json_schema_extra={"format": "email", "pattern": _NOT_SPECIAL_USE}),
    AfterValidator(_email),
]
Phone = Annotated[
    str,
    StringConstraints(max_length=40),
    Field(json_schema_extra={"pattern": _PHONE.pattern}),
    AfterValidator(_phone),
]


#: How the edge validates each kind of detail field the contract defines.
_EDGE_TYPES: dict[FieldKind, Any] = {
    FieldKind.TEXT: Text,
    FieldKind.EMAIL: Email,
    FieldKind.PHONE: Phone,
}


def _details(names: tuple[str, ...], *, all_optional: bool = False) -> dict[str, Any]:
    """Annotations of detail fields as the edge validates them; optional ones default to null."""
    fields: dict[str, Any] = {}
    for name in names:
        edge = _EDGE_TYPES[DETAILS[name].kind]
        required = name in REQUIRED_DETAILS and not all_optional
        fields[name] = edge if required else Annotated[edge | None, Field(default=None)]
    return fields


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WithDetails(_Strict):
    if TYPE_CHECKING:
        # The detail fields are the contract's, declared by name, so checkers cannot list them.
        def __getattr__(self, name: str) -> Any: ...


#: Contacts a request says this person is not, though they look alike (near duplicates).
DistinctFrom = Annotated[
    list[UUID],
    Field(
        default_factory=list,
        max_length=100,
        description="Ids of current contacts this is a different person from: a create or"
        " change that would look like them (409 possible_duplicate) is accepted, and the"
        " event records them",
    ),
]


class ContactCreate(_WithDetails):
    """Create a contact."""

    company_id: UUID
    company_name: Text
    __annotations__.update(_details(tuple(DETAILS)))
    started_on: date | None = None
    distinct_from: DistinctFrom


def _required_names_schema(schema: dict[str, Any]) -> None:
    schema["minProperties"] = 1
    for name in REQUIRED_DETAILS:
        prop = schema["properties"][name]
        text = next(s for s in prop.pop("anyOf") if s.get("type") == "string")
        prop.update(text)
        prop.pop("default", None)


class ContactDetailsChange(_WithDetails):
    """Change detail fields; only the fields sent change (null clears an optional one)."""

    # A change names at least one field (an empty one is 422), and the names cannot be
    # cleared: the schema says both, so clients generating requests from it are told.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_required_names_schema)

    __annotations__ = {**_details(tuple(DETAILS), all_optional=True), "distinct_from": DistinctFrom}

    @field_validator(*REQUIRED_DETAILS, mode="before")
    @classmethod
    def _names_are_not_cleared(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be cleared (null)")
        return value

    def changes(self) -> dict[str, str | None]:
        """The detail fields the client sent, with their values."""
        return {name: getattr(self, name) for name in self.model_fields_set if name in DETAILS}


class JobChange(_WithDetails):
    """Record a job change: the person's new version at the new company."""

    company_id: UUID
    company_name: Text
    __annotations__.update(_details(JOB_DETAILS))
    effective_on: date | None = Field(default=None, description="Defaults to today (UTC).")


def _correction_schema(schema: dict[str, Any]) -> None:
    # A field is sent to correct it, never null: null corrects nothing (the domain says 422).
    schema["minProperties"] = 1
    for prop in schema["properties"].values():
        given = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
        prop.update(given[0])
        prop.pop("default", None)


class EmploymentCorrection(_Strict):
    """Correct a typo in an employment (current or former): only the fields sent change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_correction_schema)

    company_id: UUID | None = Field(default=None, description="The right company id")
    company_name: Text | None = Field(default=None, description="The company's right name")
    started_on: date | None = Field(
        default=None,
        description="The right start date; after a job change the former employment's"
        " end date moves with it",
    )


class OutlookSyncSwitch(_Strict):
    """Switch the caller's own Outlook sync for a contact."""

    enabled: bool
    reason: Reason | None = None


class OutlookSyncSwitchOff(_Strict):
    """Switch a named user's Outlook sync off, saying why (the sync service's principal)."""

    enabled: Literal[False]
    reason: Reason


def _one_of_tag_id_or_tag(schema: dict[str, Any]) -> None:
    # "Exactly one, and not null" in the document too, so generated bodies are accepted.
    schema.update(minProperties=1, maxProperties=1)
    for name in ("tag_id", "tag"):
        field = schema["properties"][name]
        field.update(next(s for s in field.pop("anyOf") if s.get("type") != "null"))
        field.pop("default", None)


class InfotagPlace(_Strict):
    """Place an infotag: by catalogue id, or by name path (`Kunde/Guld`); exactly one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_tag_id_or_tag)

    tag_id: UUID | None = None
    tag: Tag | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InfotagPlace:
        if (self.tag_id is None) == (self.tag is None):
            raise ValueError("give exactly one of tag_id and tag")
        return self


class InfotagDefine(_Strict):
    """Define a catalogue infotag under a parent (none: at the root)."""

    name: TagName
    parent_id: UUID | None = None


class InfotagChange(_Strict):
    """Rename and/or move a catalogue infotag (parent_id null: to the root)."""

    name: TagName | None = None
    parent_id: UUID | None = None


class InfotagNode(BaseModel):
    """A catalogue infotag: its name, place in the tree, and who defined it when."""

    tag_id: UUID
    name: str
    path: str
    parent_id: UUID | None
    active: bool
    defined_by: str
    defined_at: datetime


class InfotagCatalogueView(BaseModel):
    """Every catalogue infotag, sorted by path."""

    infotags: list[InfotagNode]


class ArchiveRequest(_Strict):
    """Archive a contact, optionally saying why."""

    reason: Reason | None = None


class EraseRequest(_Strict):
    """Erase a person. The reason is kept after the erasure: it must name no personal data."""

    reason: Reason


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


class JobChangeUndoResponse(CommandResponse):
    """An undone job change's outcome: the version current again, and the withdrawn one."""

    withdrawn: CommandResponse


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


class PossibleDuplicates(BaseModel):
    """Current contacts at the company that may be the same person, and why."""

    candidates: list[DuplicateCandidate]


class HistoryEntry(BaseModel):
    """One event of a contact's history."""

    version: int
    type: str
    occurred_at: datetime
    actor: str
    correlation_id: str
    #: Through which channel the change came (X-Kontakt-Channel).
    channel: str = "api"
    changes: dict[str, dict[str, Any]]
    data: dict[str, Any]
