"""Rebuilding the contacts read model (and its history) from the event store, without downtime.

1. Fold every stored event in memory (the same `apply` as the worker) and
   bulk-load the result into a new schema beside the live one.
2. Catch up with what was stored meanwhile, event by event.
3. In one transaction: lock the live tables, apply the last events, rename
   the schemas. Readers and the worker wait for that transaction only; their
   next statement sees the new tables, and the worker skips what the rebuild
   already applied (by contact version).

The ledgers of other services' events (e-mails, items) are not in Kontakt's
store and are left as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import asyncpg

from services.projections import contacts_model as model
from services.projections import handlers, history_model
from services.projections.sql import contacts as contacts_sql
from services.projections.sql import history as history_sql
from services.projections.sql import infotags as infotags_sql
from shared.addresses import address_hash
from shared.contract.contacts import ContactErased, ContactEventBase
from shared.contract.infotags import InfotagEventBase
from shared.migrations import migrate_async
from shared.settings import KontaktSettings

log = logging.getLogger("kontakt.rebuild")

#: Read models a rebuild can make from the event store.
REBUILDABLE = ("contacts",)
BATCH = 5000


class EventSource(Protocol):
    """The event store, read as contract events in store order."""

    def max_position(self) -> int:
        """The newest position."""
        ...

    def read_published(
        self, after: int, limit: int
    ) -> tuple[list[ContactEventBase | InfotagEventBase], int | None]:
        """Contact and catalogue events after a position, and the last position scanned."""
        ...

    def read_bulk(
        self, after: int, limit: int
    ) -> tuple[list[ContactEventBase | InfotagEventBase], int | None]:
        """The same as read_published, read at less cost per event (for folding many)."""
        ...


@dataclass
class RebuildReport:
    """What a rebuild did."""

    events: int
    contacts: int
    position: int
    seconds: float
    skipped: int

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds else 0.0


Progress = Callable[[int, int], None]


class _Fold:
    """Rows folded in memory from the store's events."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.rows: dict[UUID, model.ContactRow] = {}
        #: Each contact's history entries, oldest first.
        self.history: dict[UUID, list[history_model.HistoryEntry]] = {}
        self.erased_hashes: set[str] = set()
        self.events = 0
        self.skipped = 0
        #: The catalogue's events, applied after the rows are loaded (there are few).
        self.catalogue: list[InfotagEventBase] = []

    def add(self, event: ContactEventBase | InfotagEventBase) -> None:
        self.events += 1
        if isinstance(event, InfotagEventBase):
            self.catalogue.append(event)
            return
        before = self.rows.get(event.contact_id)
        if before is not None and event.aggregate_version <= before.version:
            return
        try:
            after = self.rows[event.contact_id] = model.apply(before, event)
        except model.UnknownContactError as exc:
            self.skipped += 1
            log.warning("skipped: %s", exc)
            return
        entries = self.history.setdefault(event.contact_id, [])
        if isinstance(event, ContactErased):
            # As the worker's erasure does (history_sql.redact): no personal value stays.
            entries[:] = [e.redacted() for e in entries]
        entries.append(history_model.entry(before, after, event))
        if isinstance(event, ContactErased):
            known = before.addresses if before else frozenset()
            self.erased_hashes |= set(event.data.address_hashes)
            self.erased_hashes |= {address_hash(self.key, a) for a in known}


async def rebuild_contacts(
    settings: KontaktSettings,
    pool: asyncpg.Pool,
    source: EventSource,
    progress: Progress = lambda done, total: None,
) -> RebuildReport:
    """Rebuild the contacts read model from the store and swap it in atomically."""
    started = time.monotonic()
    key = settings.key_secret.get_secret_value().encode()
    await migrate_async(settings.pg_dsn())
    async with pool.acquire() as conn:
        await contacts_sql.drop_schema(conn, contacts_sql.BUILD)
        await contacts_sql.copy_schema(conn, contacts_sql.LIVE, contacts_sql.BUILD)

    # 1. Fold everything stored so far, then bulk-load it.
    total = await asyncio.to_thread(source.max_position)
    fold = _Fold(key)
    position = 0
    while position < total:
        events, last = await asyncio.to_thread(source.read_bulk, position, BATCH)
        if last is None:
            break
        for event in events:
            fold.add(event)
        position = last
        progress(position, total)
    async with pool.acquire() as conn, conn.transaction():
        await contacts_sql.copy_rows(conn, contacts_sql.BUILD, list(fold.rows.values()))
        await history_sql.copy_entries(
            conn, contacts_sql.BUILD, [e for entries in fold.history.values() for e in entries]
        )
        await contacts_sql.record_erased_addresses(conn, contacts_sql.BUILD, fold.erased_hashes)
        await handlers.redact_hashes(conn, fold.erased_hashes, key)
        for tag_event in fold.catalogue:
            await infotags_sql.apply_catalogue_event(conn, tag_event, contacts_sql.BUILD)
    async with pool.acquire() as conn:
        # Freshly loaded tables have no statistics: until autovacuum gets to them the
        # planner guesses, and a search read every row of a million-contact table.
        await contacts_sql.analyze_schema(conn, contacts_sql.BUILD)

    # 2. Catch up with what was stored meanwhile.
    events_done = fold.events
    while True:
        async with pool.acquire() as conn:
            position, applied = await _catch_up(conn, source, position, key)
        events_done += applied
        if applied < BATCH:
            break

    # 3. Swap, with the last events applied under the lock.
    live, build = contacts_sql.LIVE, contacts_sql.BUILD
    retired = f"rm_retired_{int(time.time())}"
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute(
                f"LOCK TABLE {live}.contacts, {live}.infotags, {live}.contact_addresses,"
                f" {live}.erased_addresses, {live}.contact_history, {live}.infotag_catalogue"
                " IN ACCESS EXCLUSIVE MODE"
            )
            position, applied = await _catch_up(conn, source, position, key)
            events_done += applied
            await conn.execute(f"ALTER SCHEMA {live} RENAME TO {retired}")
            await conn.execute(f"ALTER SCHEMA {build} RENAME TO {live}")
        await contacts_sql.drop_schema(conn, retired)
        count = await conn.fetchval(f"SELECT count(*) FROM {live}.contacts")
    progress(position, max(position, total))
    return RebuildReport(
        events=events_done,
        contacts=int(count),
        position=position,
        seconds=time.monotonic() - started,
        skipped=fold.skipped,
    )


async def _catch_up(
    conn: asyncpg.Connection, source: EventSource, position: int, key: bytes
) -> tuple[int, int]:
    """Apply stored events after a position to the new schema; (new position, events)."""
    applied = 0
    while True:
        events, last = await asyncio.to_thread(source.read_bulk, position, BATCH)
        if last is None:
            return position, applied
        async with conn.transaction():
            for event in events:
                if isinstance(event, InfotagEventBase):
                    await infotags_sql.apply_catalogue_event(conn, event, contacts_sql.BUILD)
                    continue
                try:
                    await handlers.apply_contact_event(conn, event, key, contacts_sql.BUILD)
                except model.UnknownContactError as exc:
                    log.warning("skipped: %s", exc)
        applied += len(events)
        position = last


async def rebuild_from_store(
    settings: KontaktSettings, progress: Progress = lambda done, total: None
) -> RebuildReport:
    """Rebuild the contacts read model from the contacts service's event store (`rebuild`)."""
    # The one place the projections read the contacts store directly: a rebuild starts
    # from the first event, which the contract's topic may no longer hold.
    from services.contacts.export import StoreReader
    from services.contacts.store import build_contacts_app, close_contacts_app
    from services.projections.db import pool_for

    contacts = await asyncio.to_thread(build_contacts_app, settings)
    try:
        async with pool_for(settings, size=2) as pool:
            return await rebuild_contacts(settings, pool, StoreReader(contacts), progress)
    finally:
        await asyncio.to_thread(close_contacts_app, contacts)
