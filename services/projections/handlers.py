"""What each consumed event does to the read models (inside the caller's transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

import asyncpg

from services.projections import contacts_model as model
from services.projections import history_model
from services.projections.sql import activities as activities_sql
from services.projections.sql import contacts as contacts_sql
from services.projections.sql import history as history_sql
from services.projections.sql import items as items_sql
from services.projections.sql import sync_status as sync_sql
from shared import locks
from shared.addresses import address_hash, mailboxes, normalise_address
from shared.contract import contacts as c
from shared.contract import inbound
from shared.contract.sync import OutlookSyncStatusChanged
from shared.text import clean_text

#: A contact's stored events after a version, oldest first (the event store, via its API).
History = Callable[[UUID, int], Awaitable[Sequence[c.ContactEventBase]]]


async def apply_contact_event(
    conn: asyncpg.Connection,
    event: c.ContactEventBase,
    key: bytes,
    schema: str = contacts_sql.LIVE,
    history: History | None = None,
) -> bool:
    """Apply a contact event once (by aggregate version); False for a duplicate.

    With `history`, a contact the model never saw, or a gap before this version, is
    first filled from the store, so one lost event never hides the contact's later ones.
    """
    before = await contacts_sql.load_row(conn, schema, event.contact_id)
    if before is not None and event.aggregate_version <= before.version:
        return False
    if history is not None and _missing_before(before, event):
        known = before.version if before else 0
        for earlier in await history(event.contact_id, known):
            if known < earlier.aggregate_version < event.aggregate_version:
                before = await _apply(conn, before, earlier, key, schema)
                known = earlier.aggregate_version
        if _missing_before(before, event):
            raise model.VersionGapError(
                f"{event.type} v{event.aggregate_version} of contact {event.contact_id}:"
                f" the store has it only up to v{known}"
            )
    await _apply(conn, before, event, key, schema)
    return True


def _missing_before(before: model.ContactRow | None, event: c.ContactEventBase) -> bool:
    if before is None:
        return not isinstance(event, c.ContactCreated)
    return event.aggregate_version > before.version + 1


async def _apply(
    conn: asyncpg.Connection,
    before: model.ContactRow | None,
    event: c.ContactEventBase,
    key: bytes,
    schema: str,
) -> model.ContactRow:
    after = model.apply(before, event)
    if isinstance(event, c.ContactErased):
        await forget_addresses(conn, event, before, key, schema)
        await forget_free_text(conn, event)
        await history_sql.redact(conn, schema, event.contact_id)
    await contacts_sql.save_row(conn, schema, before, after)
    await history_sql.record(conn, schema, history_model.entry(before, after, event))
    return after


async def forget_free_text(conn: asyncpg.Connection, event: c.ContactErased) -> None:
    """Blank what other services wrote about the erased contact (link roles, sync reasons)."""
    # Runs under the exclusive erasure lock (taken by the redaction before it), so a link
    # or outcome committed meanwhile is either blanked here or sees the erasure.
    await items_sql.forget_roles(conn, event.contact_id)
    await sync_sql.forget_reasons(conn, event.person_id)


async def forget_addresses(
    conn: asyncpg.Connection,
    event: c.ContactErased,
    before: model.ContactRow | None,
    key: bytes,
    schema: str,
) -> None:
    """Remember the erased addresses' hashes and redact them from stored e-mails."""
    known = before.addresses if before else frozenset()
    hashes = set(event.data.address_hashes) | {address_hash(key, a) for a in known}
    await contacts_sql.record_erased_addresses(conn, schema, hashes)
    await redact_hashes(conn, hashes, key, known)


async def redact_hashes(
    conn: asyncpg.Connection, hashes: set[str], key: bytes, known: frozenset[str] = frozenset()
) -> None:
    """Redact from stored e-mails the addresses with these hashes (`known`: some in plain)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", locks.ERASURE)
    plain = set(known)
    if hashes - {address_hash(key, a) for a in known}:
        # Addresses never seen in plain here (e.g. a rebuild after the erasure): find
        # them among stored e-mails by their hash.
        plain |= {
            a for a in await activities_sql.known_addresses(conn) if address_hash(key, a) in hashes
        }
    await activities_sql.redact(conn, plain)


async def apply_email(conn: asyncpg.Connection, event: inbound.EmailLogged, key: bytes) -> bool:
    """Store a logged e-mail once, with erased persons' addresses redacted.

    Each address field may hold display names and several addresses (`mailboxes`); one
    that cannot be read is kept (case-folded) for the tab to show, and matches no contact.
    """
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", locks.ERASURE)
    senders = mailboxes(event.from_address)
    to = [(field, mailboxes(field)) for field in event.to]
    cc = [(field, mailboxes(field)) for field in event.cc]
    matched = {(a, "from") for a in senders}
    matched |= {(a, "to") for _, found in to for a in found}
    matched |= {(a, "cc") for _, found in cc for a in found}
    by_hash = {address_hash(key, a): a for a, _ in matched}
    erased = {by_hash[h] for h in await contacts_sql.erased_among(conn, list(by_hash))}

    def shown(field: str, found: list[str]) -> list[str]:
        if not found:
            raw = normalise_address(clean_text(field))
            return [raw] if raw else []
        return [c.ERASED if a in erased else a for a in found]

    # A subject is free text about whoever the e-mail is from or to: with an erased
    # person among them, it is not kept.
    return await activities_sql.insert_email(
        conn,
        message_id=event.message_id,
        event_id=event.event_id,
        from_address=(shown(event.from_address, senders) or [""])[0],
        to=[a for field, found in to for a in shown(field, found)],
        cc=[a for field, found in cc for a in shown(field, found)],
        subject=c.ERASED if erased else event.subject,
        sent_at=event.sent_at,
        matched={(a, role) for a, role in matched if a not in erased},
    )


async def apply_item_event(conn: asyncpg.Connection, kind: str, event: inbound.ItemEvent) -> None:
    """Apply an opportunity, campaign or project event (newer facts win)."""
    at = event.occurred_at
    if isinstance(event, inbound.ItemCreated):
        await items_sql.set_title(conn, kind, event.item_id, event.title, at)
        await items_sql.set_status(conn, kind, event.item_id, event.status, at)
    elif isinstance(event, inbound.ItemRenamed):
        await items_sql.set_title(conn, kind, event.item_id, event.title, at)
    elif isinstance(event, inbound.ItemStatusChanged):
        await items_sql.set_status(conn, kind, event.item_id, event.status, at)
    elif isinstance(event, inbound.ItemClosed):
        await items_sql.close(conn, kind, event.item_id, event.outcome, at)
    elif isinstance(event, inbound.ContactLinked):
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", locks.ERASURE)
        # The role is free text about the contact: an erased one keeps none.
        role = None if await contacts_sql.is_erased(conn, event.contact_id) else event.role
        await items_sql.set_link(
            conn, kind, event.item_id, event.contact_id, linked=True, role=role, at=at
        )
    else:
        await items_sql.set_link(
            conn, kind, event.item_id, event.contact_id, linked=False, role=None, at=at
        )


async def apply_sync_status(conn: asyncpg.Connection, event: OutlookSyncStatusChanged) -> bool:
    """Keep a user's latest Outlook sync outcome for a person (no reason for an erased one)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", locks.ERASURE)
    erased = await contacts_sql.person_erased(conn, event.person_id)
    return await sync_sql.record(
        conn,
        user_id=event.user_id,
        person_id=event.person_id,
        contact_id=event.contact_id,
        status=event.status,
        reason=None if erased else event.reason,
        sequence=event.sequence,
        at=event.occurred_at,
    )
