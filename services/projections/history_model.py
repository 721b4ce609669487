"""The contact history read model ("Mere..."): what each event changed, field by field (pure).

An entry compares the contacts read model's row before and after an event, so the
worker, the repair from the store and the rebuild all derive the same changes from the
same fold, and a new event type needs no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from services.projections.contacts_model import ContactRow
from shared.contract import contacts as c
from shared.text import clean_text

#: The employment's fields a history entry compares.
EMPLOYMENT_FIELDS: tuple[str, ...] = ("company_id", "company_name", "started_on", "ended_on")
#: Every field a history entry compares, in the order the changes list them.
HISTORY_FIELDS: tuple[str, ...] = (
    *c.DETAIL_FIELDS,
    *EMPLOYMENT_FIELDS,
    "infotags",
    "photo",
    "status",
)
#: The compared fields a row holds as they are (text, ids, dates).
_PLAIN_FIELDS: tuple[str, ...] = (*c.DETAIL_FIELDS, *EMPLOYMENT_FIELDS)
#: Fields that hold the person's data: an erasure leaves none of their values in the history.
#: Every detail field is among them, as the erasure blanks every detail of the contact.
#: (The photo's value in a change is its content hash, a keyed hash of the person's bytes.)
PERSONAL_FIELDS: frozenset[str] = frozenset({*c.DETAIL_FIELDS, "photo"})


def _json(value: Any) -> Any:
    # Values go into JSONB: dates and ids as the contract writes them.
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def field_values(row: ContactRow | None) -> dict[str, Any]:
    """The compared fields of a row as JSON values (all null before the contact existed)."""
    if row is None:
        return dict.fromkeys(HISTORY_FIELDS)
    values = {name: _json(getattr(row, name)) for name in _PLAIN_FIELDS}
    values["infotags"] = sorted(row.infotags)
    values["photo"] = row.photo.content_hash if row.photo else None
    values["status"] = row.status
    return values


def field_changes(before: ContactRow | None, after: ContactRow) -> list[dict[str, Any]]:
    """Each compared field whose value differs: {"field", "old", "new"}, in HISTORY_FIELDS order.

    A contact's creation compares with nothing, so it lists the fields it set (no empty ones).
    """
    if before is None:
        old, new = field_values(before), field_values(after)
        empty: tuple[Any, ...] = (None, [])
        return [
            {"field": name, "old": old[name], "new": new[name]}
            for name in HISTORY_FIELDS
            if old[name] != new[name] and new[name] not in empty
        ]
    # The plain fields hold text, ids and dates, which differ exactly when their JSON values
    # do: only the changed ones are converted (an event changes a few fields of many).
    changes = [
        {"field": name, "old": _json(old_value), "new": _json(new_value)}
        for name in _PLAIN_FIELDS
        if (old_value := getattr(before, name)) != (new_value := getattr(after, name))
    ]
    if before.infotags.keys() != after.infotags.keys():
        changes.append(
            {"field": "infotags", "old": sorted(before.infotags), "new": sorted(after.infotags)}
        )
    old_photo = before.photo.content_hash if before.photo else None
    new_photo = after.photo.content_hash if after.photo else None
    if old_photo != new_photo:
        changes.append({"field": "photo", "old": old_photo, "new": new_photo})
    if (old_status := before.status) != (new_status := after.status):
        changes.append({"field": "status", "old": old_status, "new": new_status})
    return changes


def redact_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes as they read once the person is erased: those of personal fields dropped.

    Dropped rather than blanked: once erased, the store's copies of the values are unreadable
    (null and set alike read `[erased]`), so a rebuild could not tell which of them an event
    changed; dropping them is what the worker and the rebuild both can derive.
    """
    return [change for change in changes if change["field"] not in PERSONAL_FIELDS]


def erasure_changes(before: ContactRow | None, after: ContactRow) -> list[dict[str, Any]]:
    """The erasure's own changes: every detail field now reads `[erased]`, the photo is gone.

    The old values are the person's, so they read `[erased]` too.
    """
    erased = {
        **{name: {"field": name, "old": c.ERASED, "new": c.ERASED} for name in c.DETAIL_FIELDS},
        **{ch["field"]: ch for ch in redact_changes(field_changes(before, after))},
    }
    if before is not None and before.photo is not None:
        erased["photo"] = {"field": "photo", "old": c.ERASED, "new": None}
    return [erased[name] for name in HISTORY_FIELDS if name in erased]


@dataclass(frozen=True)
class HistoryEntry:
    """One contact event in the history: who, when, through which channel, what changed."""

    contact_id: UUID
    aggregate_version: int
    type: str
    actor: str
    channel: str
    occurred_at: datetime
    changes: list[dict[str, Any]]
    #: The photo this event made current (the photo list's source); None when it made none.
    photo: dict[str, Any] | None = None

    def redacted(self) -> HistoryEntry:
        """The entry as it reads once the person is erased: no personal value, no photo."""
        return replace(self, changes=redact_changes(self.changes), photo=None)


def entry(before: ContactRow | None, after: ContactRow, event: c.ContactEventBase) -> HistoryEntry:
    """The history entry of an event, from the contact's row before and after it."""
    erasure = isinstance(event, c.ContactErased)
    changed_photo = after.photo is not None and (before is None or before.photo != after.photo)
    made = HistoryEntry(
        contact_id=event.contact_id,
        aggregate_version=event.aggregate_version,
        type=event.type,
        actor=clean_text(event.actor),
        channel=clean_text(event.channel),
        occurred_at=event.occurred_at,
        changes=erasure_changes(before, after) if erasure else field_changes(before, after),
        photo=after.photo.model_dump() if after.photo and changed_photo else None,
    )
    # Nothing changes an erased contact after its erasure; should anything, it shows no values.
    return made.redacted() if after.erased and not erasure else made
