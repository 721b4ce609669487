"""The pure core of the Outlook sync: contact snapshots, Outlook rendering, the link state machine.

A *link* is one user's Outlook copy of one person, keyed by (user_id, person_id)
so that the same Outlook item follows the person across job changes. Its state:

    off --(switched on)--> linking --(created or found again)--> linked(graph id, hashes)
    linked --(details/photo/infotags/new job)--> linked (one update, none if nothing shows)
    linked --(switched off, archived, erased)--> off (the item deleted)
    linked --(404: the user deleted it in Outlook)--> user_deleted --(switched off)--> off
    any --(permanent Graph error)--> failed (parked until the contact changes again)

Nothing here does I/O: the worker feeds events and Graph outcomes in, and does what
the functions below decide.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from uuid import UUID

from shared.contract.contacts import (
    DETAIL_FIELDS,
    ERASED,
    ContactArchived,
    ContactCreated,
    ContactDetailsChanged,
    ContactErased,
    ContactEvent,
    ContactRestored,
    ContactStatus,
    EmploymentCorrected,
    InfotagAdded,
    InfotagPlacement,
    InfotagRemoved,
    JobChanged,
    JobChangeUndone,
    JobChangeWithdrawn,
    OutlookSyncToggled,
    PhotoChanged,
    PhotoRemoved,
)
from shared.contract.infotags import placement_tag_id
from shared.infotag_tree import TagNode, path_of
from shared.text import clean_value

#: Graph's limits on a contact.
MAX_EMAILS = 3
MAX_BUSINESS_PHONES = 2
#: Graph refuses contact photos of 4 MB and more.
MAX_PHOTO_BYTES = 4 * 1024 * 1024

#: The single-value extended property holding the CRM contact id (PS_PUBLIC_STRINGS).
CONTACT_ID_PROPERTY = "String {00020329-0000-0000-C000-000000000046} Name KontaktContactId"
#: The categories Kontakt set on an item (JSON list): the others are the user's own.
CATEGORIES_PROPERTY = "String {00020329-0000-0000-C000-000000000046} Name KontaktCategories"

#: Reason given when the user deleted the item in Outlook.
DELETED_IN_OUTLOOK = "deleted in Outlook by the user"

LinkState = Literal["off", "linking", "linked", "user_deleted", "failed"]


class SyncError(Exception):
    """Base of the sync service's named errors."""


class UnmappedUserError(SyncError):
    """The CRM user has no mailbox in the configured mapping."""


def mailbox_for(mailboxes: dict[str, str], user_id: str, dev_format: str | None = None) -> str:
    """The Graph mailbox of a CRM user, from the explicit map.

    `dev_format` (development only) maps every user while the map is empty.
    """
    if user_id in mailboxes:
        return mailboxes[user_id]
    if dev_format is not None and not mailboxes:
        return dev_format.format(user_id=user_id)
    raise UnmappedUserError(
        f"no mailbox mapped for CRM user {user_id!r} (KONTAKT_SYNC_MAILBOXES): not synced"
    )


class PlanError(SyncError):
    """A plan or intent that cannot be carried out: what it needs is missing."""


class VersionGapError(SyncError):
    """An event more than one version past the snapshot: the ones between never arrived."""

    def __init__(self, contact_id: UUID, have: int, got: int) -> None:
        super().__init__(f"contact {contact_id}: have version {have}, got {got}")
        self.contact_id = contact_id
        self.have = have


class OutOfOrderEventError(SyncError):
    """An event for a contact the worker has never seen created (the stream lost its start)."""

    def __init__(self, contact_id: UUID, event_type: str) -> None:
        super().__init__(f"{event_type} for unknown contact {contact_id}: ContactCreated missing")
        self.contact_id = contact_id


@dataclass(frozen=True)
class Snapshot:
    """What the worker keeps of one contact version: only what Outlook shows."""

    contact_id: UUID
    person_id: UUID
    version: int
    status: ContactStatus
    company_name: str
    details: dict[str, str | None]
    #: The infotags as placed (their keys: the paths they were placed under), sorted.
    infotags: tuple[str, ...]
    photo_hash: str | None
    successor_id: UUID | None = None
    #: The catalogue tag of each placement (key, tag id), so a renamed tag shows renamed.
    infotag_ids: tuple[tuple[str, UUID], ...] = ()


@dataclass(frozen=True)
class LinkIntent:
    """What an event asks of links: set a user's switch, move links, or just re-check them."""

    kind: Literal["switch", "move", "touch"]
    person_id: UUID
    contact_id: UUID
    user_id: str | None = None
    enabled: bool = False
    version: int = 0
    from_contact_id: UUID | None = None
    users_on: tuple[str, ...] = ()


def clean_event(event: ContactEvent) -> ContactEvent:
    """The event with every string cleaned (shared.text): stored events may predate the rule."""
    raw = event.model_dump(mode="python")
    cleaned = clean_value(raw)
    if cleaned == raw:
        return event
    return type(event).model_validate(cleaned)


def check_continuous(before: Snapshot | None, event: ContactEvent, *, repairing: bool) -> None:
    """Raise when events of the contact are missing before this one (none while repairing)."""
    if repairing:
        return
    if before is None and not isinstance(event, ContactCreated):
        raise OutOfOrderEventError(event.contact_id, event.type)
    if before is not None and event.aggregate_version > before.version + 1:
        raise VersionGapError(event.contact_id, before.version, event.aggregate_version)


def apply_event(before: Snapshot | None, event: ContactEvent) -> tuple[Snapshot, list[LinkIntent]]:
    """The snapshot after an event, and what it asks of the person's links."""
    cid, pid, version = event.contact_id, event.person_id, event.aggregate_version
    touch = LinkIntent("touch", pid, cid)
    if isinstance(event, ContactCreated):
        d = event.data
        # Published after an erasure, a creation reads "[erased]": never show it anywhere.
        erased = d.first_names == ERASED and d.last_names == ERASED
        snap = Snapshot(
            contact_id=cid,
            person_id=pid,
            version=version,
            status="erased" if erased else "current",
            company_name=d.company_name,
            details={name: getattr(d, name) for name in DETAIL_FIELDS},
            photo_hash=d.photo.content_hash if d.photo else None,
            **_placements(d.infotags),
        )
        intents = [
            LinkIntent("switch", pid, cid, user_id=u, enabled=True, version=version)
            for u in sorted(d.outlook_sync_users)
        ]
        if d.predecessor_id is not None:
            intents.insert(
                0,
                LinkIntent(
                    "move",
                    pid,
                    cid,
                    from_contact_id=d.predecessor_id,
                    users_on=tuple(sorted(d.outlook_sync_users)),
                ),
            )
        return snap, intents
    if before is None:
        raise OutOfOrderEventError(cid, event.type)
    snap = replace(before, version=version)
    if isinstance(event, ContactDetailsChanged):
        changes: dict[str, str | None] = {str(k): v for k, v in event.data.changes.items()}
        snap = replace(snap, details={**snap.details, **changes})
    elif isinstance(event, JobChanged):
        snap = replace(snap, status="former", successor_id=event.data.successor_id)
    elif isinstance(event, EmploymentCorrected):
        snap = replace(snap, company_name=event.data.company_name)
    elif isinstance(event, JobChangeWithdrawn):
        # Held, not deleted: the predecessor's JobChangeUndone moves the links back.
        return replace(snap, status="withdrawn"), []
    elif isinstance(event, JobChangeUndone):
        undone = event.data
        snap = replace(
            snap,
            status="current",
            successor_id=None,
            photo_hash=undone.photo.content_hash if undone.photo else None,
            **_placements(undone.infotags),
        )
        # The same items follow the person back, rendering this version again.
        return snap, [
            LinkIntent(
                "move",
                pid,
                cid,
                from_contact_id=undone.withdrawn_id,
                users_on=tuple(sorted(undone.outlook_sync_users)),
            )
        ]
    elif isinstance(event, OutlookSyncToggled):
        toggle = event.data
        return snap, [
            LinkIntent(
                "switch", pid, cid, user_id=toggle.user_id, enabled=toggle.enabled, version=version
            )
        ]
    elif isinstance(event, InfotagAdded):
        ids = {
            **dict(snap.infotag_ids),
            event.data.tag: placement_tag_id(event.data.tag, event.data.tag_id),
        }
        snap = replace(
            snap,
            infotags=tuple(sorted({*snap.infotags, event.data.tag})),
            infotag_ids=tuple(sorted(ids.items())),
        )
    elif isinstance(event, InfotagRemoved):
        snap = replace(
            snap,
            infotags=tuple(t for t in snap.infotags if t != event.data.tag),
            infotag_ids=tuple(p for p in snap.infotag_ids if p[0] != event.data.tag),
        )
    elif isinstance(event, PhotoChanged):
        snap = replace(snap, photo_hash=event.data.content_hash)
    elif isinstance(event, PhotoRemoved):
        snap = replace(snap, photo_hash=None)
    elif isinstance(event, ContactArchived):
        snap = replace(snap, status="archived")
    elif isinstance(event, ContactRestored):
        snap = replace(snap, status="current")
    elif isinstance(event, ContactErased):
        # Keep nothing personal: the Outlook items go, and so does our copy.
        snap = erased_snapshot(snap)
    return snap, [touch]


def _placements(placements: list[InfotagPlacement]) -> dict[str, Any]:
    return {
        "infotags": tuple(sorted(t.tag for t in placements)),
        "infotag_ids": tuple(
            sorted((t.tag, placement_tag_id(t.tag, t.tag_id)) for t in placements)
        ),
    }


def with_current_paths(snap: Snapshot, tags: Mapping[UUID, TagNode]) -> Snapshot:
    """The snapshot showing each catalogue tag under its current path (renamed, moved)."""
    ids = dict(snap.infotag_ids)
    shown = set()
    for tag in snap.infotags:
        shown.add(path_of(tags, ids.get(tag) or placement_tag_id(tag, None)) or tag)
    return replace(snap, infotags=tuple(sorted(shown)))


def erased_snapshot(snap: Snapshot) -> Snapshot:
    """The snapshot with nothing personal left: what an erased person reads as."""
    return replace(
        snap,
        status="erased",
        company_name="",
        details=dict.fromkeys(DETAIL_FIELDS, ERASED),
        infotags=(),
        infotag_ids=(),
        photo_hash=None,
    )


# ------------------------------------------------------------------ Outlook rendering


def _unique(values: list[str | None]) -> list[str]:
    seen: set[str] = set()
    out = []
    for v in values:
        if v and v.strip() and v != ERASED and v.strip().lower() not in seen:
            seen.add(v.strip().lower())
            out.append(v.strip())
    return out


def render_contact(snap: Snapshot) -> dict[str, Any]:
    """The Graph contact body for a snapshot, within Graph's limits, chosen deterministically.

    E-mail addresses: work before private, duplicates dropped, at most 3.
    Business phones: the work phone (at most 2); the private phone is a home phone.
    """
    d = snap.details
    first, last = d.get("first_names") or "", d.get("last_names") or ""
    display = f"{first} {last}".strip()
    emails = _unique([d.get("work_email"), d.get("private_email")])[:MAX_EMAILS]
    return {
        "givenName": first,
        "surname": last,
        "displayName": display,
        "companyName": snap.company_name or None,
        "jobTitle": d.get("job_title"),
        "department": d.get("department"),
        "emailAddresses": [{"address": e, "name": display} for e in emails],
        "businessPhones": _unique([d.get("work_phone")])[:MAX_BUSINESS_PHONES],
        "homePhones": _unique([d.get("private_phone")]),
        "categories": list(snap.infotags),
        "singleValueExtendedProperties": [
            {"id": CONTACT_ID_PROPERTY, "value": str(snap.contact_id)},
            {"id": CATEGORIES_PROPERTY, "value": json.dumps(list(snap.infotags))},
        ],
    }


def kontakt_categories(value: str | None) -> list[str]:
    """The categories Kontakt set, from the item's CATEGORIES_PROPERTY (none if unreadable)."""
    try:
        parsed = json.loads(value) if value else []
    except ValueError:
        return []
    return [c for c in parsed if isinstance(c, str)] if isinstance(parsed, list) else []


def merge_categories(current: list[str], ours_before: list[str], ours_now: list[str]) -> list[str]:
    """The item's categories: the user's own (those Kontakt did not set) kept, then Kontakt's."""
    mine = set(ours_before) | set(ours_now)
    users = [c for c in current if c not in mine]
    return [*dict.fromkeys(users), *ours_now]


def without_categories(body: dict[str, Any]) -> dict[str, Any]:
    """The body leaving the item's categories alone: neither they nor Kontakt's record of them."""
    out = {k: v for k, v in body.items() if k != "categories"}
    props = [
        p for p in body.get("singleValueExtendedProperties", []) if p["id"] != CATEGORIES_PROPERTY
    ]
    return {**out, "singleValueExtendedProperties": props}


def categories_hash(body: dict[str, Any]) -> str:
    """A stable hash of the categories Kontakt sets on an item (the body's own)."""
    return content_hash({"categories": body["categories"]})


def content_hash(body: dict[str, Any]) -> str:
    """A stable hash of what Outlook shows (canonical JSON)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ the link machine


@dataclass(frozen=True)
class Link:
    """One user's Outlook copy of one person, as persisted."""

    user_id: str
    person_id: UUID
    contact_id: UUID
    wanted: bool = False
    state: LinkState = "off"
    graph_id: str | None = None
    pushed_hash: str | None = None
    pushed_photo: str | None = None
    #: Hash of Kontakt's categories last written (categories_hash); None: unknown.
    pushed_categories: str | None = None
    reason: str | None = None
    # Set once the user deleted the item in Outlook: not recreated until switched on again.
    suppressed: bool = False
    suppressed_contact_id: UUID | None = None
    suppressed_through_version: int | None = None
    sequence: int = 0
    generation: int = 0
    attempts: int = 0


def apply_switch(link: Link, contact_id: UUID, enabled: bool, version: int) -> Link:
    """A user's switch as an event reports it (idempotent under re-delivery)."""
    suppressed = link.suppressed
    if enabled and suppressed:
        # A switch-on newer than the one we caused (or any on another contact version)
        # is the user's deliberate choice: sync again.
        stale = link.suppressed_through_version is None or (
            link.suppressed_contact_id == contact_id and version <= link.suppressed_through_version
        )
        suppressed = stale
    return replace(link, contact_id=contact_id, wanted=enabled, suppressed=suppressed)


def apply_move(link: Link, contact_id: UUID, users_on: tuple[str, ...]) -> Link:
    """The person moved to a new contact version (job change): the link follows."""
    return replace(link, contact_id=contact_id, wanted=link.user_id in users_on)


@dataclass(frozen=True)
class Plan:
    """What to do for a link now."""

    kind: Literal["noop", "hold", "create", "update", "delete", "find_and_delete", "switch_off"]
    body: dict[str, Any] = field(default_factory=dict)
    body_hash: str | None = None
    photo_hash: str | None = None
    write_body: bool = False
    write_photo: bool = False
    categories_hash: str | None = None
    #: Kontakt's categories differ from those last written (or those are unknown): the
    #: item's categories are read and merged; otherwise the update leaves them alone.
    write_categories: bool = True


def wants_item(link: Link, snap: Snapshot) -> bool:
    """True when the user's Outlook should hold the person now."""
    return link.wanted and not link.suppressed and snap.status == "current"


def plan(link: Link, snap: Snapshot) -> Plan:
    """Decide the next step for a link, given the contact version it points at."""
    if link.state == "user_deleted":
        return Plan("switch_off")
    if snap.status in ("former", "withdrawn"):
        # A job change (or its undoing) is under way: the other version's event moves the link.
        return Plan("hold")
    if not wants_item(link, snap):
        if link.graph_id is not None:
            return Plan("delete")
        if link.state == "linking":
            return Plan("find_and_delete")
        return Plan("noop")
    body = render_contact(snap)
    body_hash = content_hash(body)
    categories = categories_hash(body)
    if link.graph_id is None:
        return Plan(
            "create",
            body,
            body_hash,
            snap.photo_hash,
            True,
            snap.photo_hash is not None,
            categories,
        )
    write_body = body_hash != link.pushed_hash
    write_photo = snap.photo_hash != link.pushed_photo
    if not (write_body or write_photo):
        return Plan("noop")
    return Plan(
        "update",
        body,
        body_hash,
        snap.photo_hash,
        write_body,
        write_photo,
        categories,
        categories != link.pushed_categories,
    )


# ------------------------------------------------------------------ transitions


def linking(link: Link) -> Link:
    """Before a create: recorded so that a crash never leaves an unknown item behind."""
    return replace(link, state="linking")


def linked(link: Link, graph_id: str, p: Plan) -> Link:
    """The item exists with what the plan pushed."""
    return replace(
        link,
        state="linked",
        graph_id=graph_id,
        pushed_hash=p.body_hash,
        pushed_photo=p.photo_hash,
        pushed_categories=p.categories_hash,
        reason=None,
        attempts=0,
    )


def unlinked(link: Link) -> Link:
    """The item is gone."""
    return replace(
        link,
        state="off",
        graph_id=None,
        pushed_hash=None,
        pushed_photo=None,
        pushed_categories=None,
        attempts=0,
    )


def deleted_by_user(link: Link) -> Link:
    """Graph said 404 for our item: the user deleted it; never recreate it behind their back."""
    return replace(
        link,
        state="user_deleted",
        graph_id=None,
        pushed_hash=None,
        pushed_photo=None,
        pushed_categories=None,
        reason=DELETED_IN_OUTLOOK,
        suppressed=True,
        suppressed_contact_id=link.contact_id,
        suppressed_through_version=None,
        attempts=0,
    )


def switched_off(link: Link, contact_id: UUID, version: int) -> Link:
    """The contacts service recorded the switch-off we asked for (at that contact version)."""
    return replace(
        link,
        state="off",
        suppressed_contact_id=contact_id,
        suppressed_through_version=version,
        attempts=0,
    )


def failed(link: Link, reason: str) -> Link:
    """A permanent error: parked with its reason until the contact changes again."""
    return replace(link, state="failed", reason=reason, attempts=0)


def is_stray(link: Link, graph_id: str) -> bool:
    """An item of ours that must go: a duplicate of the linked one, or left from a link now off.

    A duplicate appears when Graph applied a create whose answer never came, after the
    lookup that preceded the next attempt had already run.
    """
    if link.state == "linked":
        return link.graph_id != graph_id
    return link.state == "off" and not link.wanted
