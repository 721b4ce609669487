"""What each consumed event does to the read models (inside the caller's transaction)."""

from __future__ import annotations

import asyncpg

from services.projections import contacts_model as model
from services.projections.sql import activities as activities_sql
from services.projections.sql import contacts as contacts_sql
from services.projections.sql import items as items_sql
from services.projections.sql import sync_status as sync_sql
from shared.addresses import address_hash, normalise_address
from shared.contract import contacts as c
from shared.contract import inbound
from shared.contract.sync import OutlookSyncStatusChanged

#: Advisory-lock key shared by e-mail inserts (shared) and erasures (exclusive), so an
#: e-mail committed while an erasure runs cannot slip past the redaction.
ERASURE_LOCK = 0x6B6F6E74616B74


async def apply_contact_event(
    conn: asyncpg.Connection,
    event: c.ContactEventBase,
    key: bytes,
    schema: str = contacts_sql.LIVE,
) -> bool:
    """Apply a contact event once (by aggregate version); False for a duplicate."""
    before = await contacts_sql.load_row(conn, schema, event.contact_id)
    if before is not None and event.aggregate_version <= before.version:
        return False
    after = model.apply(before, event)
    if isinstance(event, c.ContactErased):
        await forget_addresses(conn, event, before, key, schema)
    await contacts_sql.save_row(conn, schema, before, after)
    return True


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
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ERASURE_LOCK)
    plain = set(known)
    if hashes - {address_hash(key, a) for a in known}:
        # Addresses never seen in plain here (e.g. a rebuild after the erasure): find
        # them among stored e-mails by their hash.
        plain |= {
            a for a in await activities_sql.known_addresses(conn) if address_hash(key, a) in hashes
        }
    await activities_sql.redact(conn, plain)


async def apply_email(conn: asyncpg.Connection, event: inbound.EmailLogged, key: bytes) -> bool:
    """Store a logged e-mail once, with erased persons' addresses redacted."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK)
    addresses = {
        normalise_address(a) for a in (event.from_address, *event.to, *event.cc) if a.strip()
    }
    by_hash = {address_hash(key, a): a for a in addresses}
    erased = {by_hash[h] for h in await contacts_sql.erased_among(conn, list(by_hash))}

    def shown(address: str) -> str:
        norm = normalise_address(address)
        return c.ERASED if norm in erased else norm

    return await activities_sql.insert_email(
        conn,
        message_id=event.message_id,
        event_id=event.event_id,
        from_address=shown(event.from_address),
        to=[shown(a) for a in event.to if a.strip()],
        cc=[shown(a) for a in event.cc if a.strip()],
        subject=event.subject,
        sent_at=event.sent_at,
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
        await items_sql.set_link(
            conn, kind, event.item_id, event.contact_id, linked=True, role=event.role, at=at
        )
    else:
        await items_sql.set_link(
            conn, kind, event.item_id, event.contact_id, linked=False, role=None, at=at
        )


async def apply_sync_status(conn: asyncpg.Connection, event: OutlookSyncStatusChanged) -> bool:
    """Keep a user's latest Outlook sync outcome for a person."""
    return await sync_sql.record(
        conn,
        user_id=event.user_id,
        person_id=event.person_id,
        contact_id=event.contact_id,
        status=event.status,
        reason=event.reason,
        sequence=event.sequence,
        at=event.occurred_at,
    )
