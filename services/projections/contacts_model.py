"""The contacts read model's rows, and how each contract event changes them (pure).

The incremental worker and the rebuild both fold events with `apply`, so a
rebuilt read model equals the incrementally built one by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from shared.addresses import normalise_address
from shared.contract import contacts as c
from shared.contract.infotags import placement_tag_id
from shared.folding import fold_name, phone_digits, phone_tails
from shared.text import clean_text, clean_value

#: The detail fields that hold phone numbers.
_PHONES = tuple(n for n, d in c.DETAILS.items() if d.kind is c.FieldKind.PHONE)


class UnknownContactError(Exception):
    """An event for a contact the read model has never seen created."""


class VersionGapError(Exception):
    """An event whose earlier versions the read model lacks and could not recover."""


@dataclass(frozen=True)
class Infotag:
    """An infotag on a contact."""

    added_by: str
    added_at: datetime
    #: The catalogue tag (a placement by name made before the catalogue: the tag its name
    #: was carried over to, `tag_id_for_path`).
    tag_id: UUID | None = None


@dataclass(frozen=True)
class Held:
    """A time a contact held an address: from `since` until `until` (None: it still does)."""

    address: str
    since: datetime
    until: datetime | None = None


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
    #: Made by a job change that was undone (JobChangeWithdrawn).
    withdrawn: bool = False
    #: When the contact held which address (normalised), for matching activities.
    held: frozenset[Held] = frozenset()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    if TYPE_CHECKING:
        # The detail fields are declared by name, so checkers cannot list them.
        def __getattr__(self, name: str) -> Any: ...

    @property
    def status(self) -> c.ContactStatus:
        """current, former, archived, erased or withdrawn."""
        return c.contact_status(
            erased=self.erased,
            former=self.successor_id is not None,
            archived=self.archived,
            withdrawn=self.withdrawn,
        )

    @property
    def addresses(self) -> frozenset[str]:
        """Every address the contact ever held (normalised)."""
        return frozenset(h.address for h in self.held)

    @property
    def search_text(self) -> str:
        """Names folded for accent-, case- and spelling-insensitive prefix search."""
        return fold_name(f"{self.first_names} {self.last_names}")

    @property
    def free_text(self) -> str:
        """Title, department and company name, folded as names are, for free-text search."""
        parts = (self.job_title, self.department, self.company_name)
        return fold_name(" ".join(p for p in parts if p and p != c.ERASED))

    @property
    def phone_digits(self) -> list[str]:
        """The digits of each phone number, for search by phone."""
        values = (getattr(self, name) for name in _PHONES)
        return sorted({d for v in values if v and v != c.ERASED if (d := phone_digits(v))})

    @property
    def phone_tails(self) -> list[str]:
        """Each phone number without a country code, so a search without one finds it."""
        return sorted({t for d in self.phone_digits for t in phone_tails(d)})


#: The row's fields by name (what `_with` may set).
_ROW_FIELDS = frozenset(f.name for f in fields(ContactRow))


def _with(row: ContactRow, **changes: Any) -> ContactRow:
    """dataclasses.replace for rows, at a fraction of its cost (the fold's hottest step).

    A row has no `__post_init__` and no init-only fields, so copying its fields and setting
    the changed ones makes the row `__init__` would; unknown names are refused as there.
    """
    if not changes.keys() <= _ROW_FIELDS:
        raise TypeError(f"unknown row fields: {sorted(changes.keys() - _ROW_FIELDS)}")
    copy = object.__new__(ContactRow)
    copy.__dict__.update(row.__dict__)
    copy.__dict__.update(changes)
    return copy


def _t(value: str | None) -> str | None:
    # Events stored before the edge refused such characters still carry them; PostgreSQL
    # refuses NUL and lone surrogates, so every path into a row (worker, repair, rebuild)
    # cleans here, where they all meet.
    return None if value is None else clean_text(value)


def _photo(photo: c.PhotoRef | None) -> c.PhotoRef | None:
    if photo is None:
        return None
    return c.PhotoRef.model_validate(clean_value(photo.model_dump()))


#: Statuses in which a contact holds its addresses: a former version gave them up at its
#: job change (its successor holds what it carried over), an erased one keeps none.
_HOLDING: frozenset[c.ContactStatus] = frozenset({"current", "archived"})


def _held(row: ContactRow, at: datetime) -> frozenset[Held]:
    """The intervals after a change at `at`: those given up end, those taken start."""
    values = (getattr(row, name) for name in c.EMAIL_DETAILS)
    holding = row.status in _HOLDING
    now = {normalise_address(v) for v in values if v and v != c.ERASED} if holding else set()
    if {h.address for h in row.held if h.until is None} == now:
        # Nothing given up, nothing taken: the same intervals (most events change neither).
        return row.held
    given_up = {h for h in row.held if h.until is None and h.address not in now}
    held = (row.held - given_up) | {replace(h, until=at) for h in given_up}
    still = {h.address for h in held if h.until is None}
    return frozenset(held | {Held(a, at) for a in now - still})


def _infotags(placements: list[c.InfotagPlacement]) -> dict[str, Infotag]:
    return {
        clean_text(t.tag): Infotag(
            clean_text(t.added_by), t.added_at, placement_tag_id(t.tag, t.tag_id)
        )
        for t in placements
    }


def apply(row: ContactRow | None, event: c.ContactEventBase) -> ContactRow:
    """The row after the event; raises UnknownContactError for a contact never created."""
    after = _fold(row, event)
    if after.erased:
        return _with(after, held=frozenset())
    # Every event may change what the contact holds (a detail, a job change, a status), so
    # the intervals follow the row whatever the event: a new event type needs no edit here.
    held = _held(after, event.occurred_at)
    return after if held is after.held else _with(after, held=held)


def _fold(row: ContactRow | None, event: c.ContactEventBase) -> ContactRow:
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
            infotags=_infotags(d.infotags),
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
        return created
    if row is None:
        raise UnknownContactError(f"{event.type} for unknown contact {event.contact_id}")
    row = _with(
        row,
        version=event.aggregate_version,
        position=event.global_position,
        updated_at=event.occurred_at,
    )
    if isinstance(event, c.ContactDetailsChanged):
        changes: dict[str, Any] = {str(k): _t(v) for k, v in event.data.changes.items()}
        return _with(row, **changes)
    if isinstance(event, c.JobChanged):
        return _with(row, ended_on=event.data.ended_on, successor_id=event.data.successor_id)
    if isinstance(event, c.EmploymentCorrected):
        fixed = event.data
        return _with(
            row,
            company_id=fixed.company_id,
            company_name=clean_text(fixed.company_name),
            started_on=fixed.started_on,
            ended_on=fixed.ended_on,
        )
    if isinstance(event, c.JobChangeWithdrawn):
        return _with(row, withdrawn=True)
    if isinstance(event, c.JobChangeUndone):
        undone = event.data
        return _with(
            row,
            ended_on=None,
            successor_id=None,
            photo=_photo(undone.photo),
            outlook_sync_users=tuple(sorted(clean_text(u) for u in undone.outlook_sync_users)),
            infotags=_infotags(undone.infotags),
        )
    if isinstance(event, c.OutlookSyncToggled):
        users = set(row.outlook_sync_users)
        user = clean_text(event.data.user_id)
        if event.data.enabled:
            users.add(user)
        else:
            users.discard(user)
        return _with(row, outlook_sync_users=tuple(sorted(users)))
    if isinstance(event, c.InfotagAdded):
        tag = clean_text(event.data.tag)
        placed = Infotag(
            clean_text(event.actor), event.occurred_at, placement_tag_id(tag, event.data.tag_id)
        )
        tags = {**row.infotags, tag: placed}
        return _with(row, infotags=tags)
    if isinstance(event, c.InfotagRemoved):
        gone = clean_text(event.data.tag)
        return _with(row, infotags={k: v for k, v in row.infotags.items() if k != gone})
    if isinstance(event, c.PhotoChanged):
        return _with(row, photo=_photo(event.data))
    if isinstance(event, c.PhotoRemoved):
        return _with(row, photo=None)
    if isinstance(event, c.ContactArchived):
        return _with(row, archived=True)
    if isinstance(event, c.ContactRestored):
        return _with(row, archived=False)
    if isinstance(event, c.ContactErased):
        erased: dict[str, Any] = dict.fromkeys(c.DETAIL_FIELDS, c.ERASED)
        return _with(
            row,
            erased=True,
            **erased,
            photo=None,
            outlook_sync_users=(),
        )
    raise TypeError(f"no projection for {event.type}")
