"""The contacts read model's rows, and how each contract event changes them (pure).

The incremental worker and the rebuild both fold events with `apply`, so a
rebuilt read model equals the incrementally built one by construction.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from shared.contract import contacts as c
from shared.text import clean_text, clean_value


class UnknownContactError(Exception):
    """An event for a contact the read model has never seen created."""


class VersionGapError(Exception):
    """An event whose earlier versions the read model lacks and could not recover."""


@dataclass(frozen=True)
class Infotag:
    """An infotag on a contact."""

    added_by: str
    added_at: datetime


@dataclass(frozen=True)
class ContactRow:
    """One contact (one version of a person) as the read model keeps it."""

    contact_id: UUID
    person_id: UUID
    version: int
    position: int
    company_id: UUID
    company_name: str
    # The detail fields are the contract's, so a new one needs no edit here.
    __annotations__.update(c.detail_annotations())
    started_on: date | None
    ended_on: date | None
    predecessor_id: UUID | None
    successor_id: UUID | None
    archived: bool
    erased: bool
    photo: c.PhotoRef | None
    outlook_sync_users: tuple[str, ...]
    infotags: dict[str, Infotag] = field(default_factory=dict)
    #: Every address the contact ever had (normalised), for matching activities.
    addresses: frozenset[str] = frozenset()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    if TYPE_CHECKING:
        # The detail fields are declared by name, so checkers cannot list them.
        def __getattr__(self, name: str) -> Any: ...

    @property
    def status(self) -> c.ContactStatus:
        """current, former, archived or erased."""
        return c.contact_status(
            erased=self.erased, former=self.successor_id is not None, archived=self.archived
        )

    @property
    def search_text(self) -> str:
        """Names folded for accent- and case-insensitive prefix search."""
        return fold(f"{self.first_names} {self.last_names}")


def fold(text: str) -> str:
    """Accents stripped, case folded, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def normalise_address(address: str) -> str:
    """An e-mail address as compared with activities: trimmed, case-folded."""
    return unicodedata.normalize("NFKC", address).strip().casefold()


def _t(value: str | None) -> str | None:
    # Events stored before the edge refused such characters still carry them; PostgreSQL
    # refuses NUL and lone surrogates, so every path into a row (worker, repair, rebuild)
    # cleans here, where they all meet.
    return None if value is None else clean_text(value)


def _photo(photo: c.PhotoRef | None) -> c.PhotoRef | None:
    if photo is None:
        return None
    return c.PhotoRef.model_validate(clean_value(photo.model_dump()))


def _addresses(row: ContactRow) -> frozenset[str]:
    values = (getattr(row, name) for name in c.EMAIL_DETAILS)
    current = {normalise_address(v) for v in values if v and v != c.ERASED}
    return row.addresses | current


def apply(row: ContactRow | None, event: c.ContactEventBase) -> ContactRow:
    """The row after the event; raises UnknownContactError for a contact never created."""
    if isinstance(event, c.ContactCreated):
        d = event.data
        details: dict[str, Any] = {name: _t(getattr(d, name)) for name in c.DETAIL_FIELDS}
        created = ContactRow(
            contact_id=event.contact_id,
            person_id=event.person_id,
            version=event.aggregate_version,
            position=event.global_position,
            company_id=d.company_id,
            company_name=clean_text(d.company_name),
            **details,
            started_on=d.started_on,
            ended_on=None,
            predecessor_id=d.predecessor_id,
            successor_id=None,
            archived=False,
            erased=False,
            photo=_photo(d.photo),
            outlook_sync_users=tuple(sorted(clean_text(u) for u in d.outlook_sync_users)),
            infotags={
                clean_text(t.tag): Infotag(clean_text(t.added_by), t.added_at) for t in d.infotags
            },
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
        return replace(created, addresses=_addresses(created))
    if row is None:
        raise UnknownContactError(f"{event.type} for unknown contact {event.contact_id}")
    row = replace(
        row,
        version=event.aggregate_version,
        position=event.global_position,
        updated_at=event.occurred_at,
    )
    if isinstance(event, c.ContactDetailsChanged):
        changes: dict[str, Any] = {str(k): _t(v) for k, v in event.data.changes.items()}
        row = replace(row, **changes)
        return replace(row, addresses=_addresses(row))
    if isinstance(event, c.JobChanged):
        return replace(row, ended_on=event.data.ended_on, successor_id=event.data.successor_id)
    if isinstance(event, c.EmploymentCorrected):
        fixed = event.data
        return replace(
            row,
            company_id=fixed.company_id,
            company_name=clean_text(fixed.company_name),
            started_on=fixed.started_on,
            ended_on=fixed.ended_on,
        )
    if isinstance(event, c.OutlookSyncToggled):
        users = set(row.outlook_sync_users)
        user = clean_text(event.data.user_id)
        if event.data.enabled:
            users.add(user)
        else:
            users.discard(user)
        return replace(row, outlook_sync_users=tuple(sorted(users)))
    if isinstance(event, c.InfotagAdded):
        tag = clean_text(event.data.tag)
        tags = {**row.infotags, tag: Infotag(clean_text(event.actor), event.occurred_at)}
        return replace(row, infotags=tags)
    if isinstance(event, c.InfotagRemoved):
        gone = clean_text(event.data.tag)
        return replace(row, infotags={k: v for k, v in row.infotags.items() if k != gone})
    if isinstance(event, c.PhotoChanged):
        return replace(row, photo=_photo(event.data))
    if isinstance(event, c.PhotoRemoved):
        return replace(row, photo=None)
    if isinstance(event, c.ContactArchived):
        return replace(row, archived=True)
    if isinstance(event, c.ContactRestored):
        return replace(row, archived=False)
    if isinstance(event, c.ContactErased):
        erased: dict[str, Any] = dict.fromkeys(c.DETAIL_FIELDS, c.ERASED)
        return replace(
            row,
            erased=True,
            **erased,
            photo=None,
            outlook_sync_users=(),
            addresses=frozenset(),
        )
    raise TypeError(f"no projection for {event.type}")
