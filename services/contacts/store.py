"""The contacts application on PostgreSQL, as every process that needs the event store builds it.

The contacts API, the relay and the operators' commands all open it here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from services.contacts.application import ContactsApp
from services.contacts.personal_data import (
    MasterKeys,
    PersonCipher,
    PostgresPersonKeyStore,
    parse_master_key,
)
from services.contacts.photos import PostgresPhotoStore
from shared import locks
from shared.migrations import migrate
from shared.settings import KontaktSettings
from shared.waiting import until_it_answers


def build_master_keys(settings: KontaktSettings) -> MasterKeys:
    """The master keys from settings."""
    return MasterKeys(
        parse_master_key(settings.master_key.get_secret_value()),
        [parse_master_key(k) for k in settings.previous_master_keys()],
    )


def build_contacts_app(settings: KontaktSettings, *, encrypt: bool = True) -> ContactsApp:
    """Build the application on PostgreSQL, migrating the database first.

    encrypt=False stores events without per-person encryption: only to measure its cost.
    """
    key_secret = settings.key_secret.get_secret_value().encode()
    pool = ConnectionPool(
        settings.pg_dsn(), min_size=1, max_size=4, open=True, kwargs={"autocommit": True}
    )
    keys = PostgresPersonKeyStore(build_master_keys(settings), pool)
    cipher = PersonCipher(keys, ttl_seconds=settings.key_cache_ttl_seconds)
    photos = PostgresPhotoStore(pool, cipher, key_secret, settings.photo_max_bytes)
    try:
        migrate(settings.pg_dsn())
        # Processes starting together on a new database (API, relay) would race to create
        # the event store's tables, and the library's "if not exists" is not safe against that.
        with pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (locks.EVENT_STORE_SCHEMA,))
            try:
                return ContactsApp(
                    settings.eventsourcing_env(),
                    key_secret=key_secret,
                    photos=photos,
                    cipher=cipher,
                    encrypt=encrypt,
                )
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (locks.EVENT_STORE_SCHEMA,))
    except BaseException:
        pool.close()  # a caller that tries again (PostgreSQL not up yet) leaks nothing
        raise


def close_contacts_app(contacts: ContactsApp) -> None:
    """Close the application's connection pools."""
    contacts.photos.close()
    contacts.close()


def rotate_person_keys(settings: KontaktSettings) -> tuple[int, str]:
    """Re-wrap every person key with the current master key: how many, and that key's id."""
    master = build_master_keys(settings)
    with ConnectionPool(
        settings.pg_dsn(), min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        migrate(settings.pg_dsn())
        store = PostgresPersonKeyStore(master, pool)
        return store.rotate(), master.current_id


async def open_contacts_app(
    settings: KontaktSettings,
    is_outage: Any,
    stop: asyncio.Event,
    log: logging.Logger,
) -> ContactsApp | None:
    """The application once PostgreSQL answers (None when stopped before it did)."""

    async def open_store() -> ContactsApp:
        # A quick look first: building the application in a thread would wait the
        # pool's whole timeout for a server that is not there, deaf to SIGTERM.
        probe = await psycopg.AsyncConnection.connect(settings.pg_dsn(), connect_timeout=5)
        await probe.close()
        return await asyncio.to_thread(build_contacts_app, settings)

    return await until_it_answers("opening the event store", open_store, is_outage, stop, log)


async def store_status(settings: KontaktSettings) -> dict[str, Any]:
    """The event store's newest position (what the contacts service serves at /status)."""
    async with await psycopg.AsyncConnection.connect(
        settings.pg_dsn(), connect_timeout=5, autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT to_regclass('contacts_events') IS NOT NULL")
        row = await cur.fetchone()
        if not (row and row[0]):
            return {"newest_position": 0}  # nothing stored yet
        cur = await conn.execute("SELECT max(notification_id) FROM contacts_events")
        row = await cur.fetchone()
    return {"newest_position": int(row[0]) if row and row[0] is not None else 0}


#: The backfills' names in contacts_backfills.
NEAR_KEY_BACKFILL = "near-duplicate-keys"
INFOTAG_BACKFILL = "infotag-catalogue-names"


def backfill_near_keys_once(
    contacts: ContactsApp, settings: KontaktSettings, stop: Callable[[], bool] = lambda: False
) -> int | None:
    """Join the near-duplicate keys of contacts stored before them, once per database.

    Returns how many contacts it looked at, or None (see _once).
    """
    return _once(
        settings, NEAR_KEY_BACKFILL, locks.NEAR_KEY_BACKFILL, contacts.backfill_near_keys, stop
    )


def backfill_infotags_once(
    contacts: ContactsApp, settings: KontaktSettings, stop: Callable[[], bool] = lambda: False
) -> int | None:
    """Define catalogue tags for the names placed before the catalogue, once per database.

    Returns how many names it carried over, or None (see _once).
    """
    return _once(
        settings, INFOTAG_BACKFILL, locks.INFOTAG_BACKFILL, contacts.backfill_infotags, stop
    )


def _once(
    settings: KontaktSettings,
    name: str,
    lock_id: int,
    work: Callable[[Callable[[], bool]], int],
    stop: Callable[[], bool],
) -> int | None:
    """Run a backfill once per database: one process does it (an advisory lock; the others
    go on at once) and records it when it went through to the end. None when it was done
    before or another process is doing it."""
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_id,)).fetchone()
        if not (got and got[0]):
            return None
        try:
            done = conn.execute(
                "SELECT 1 FROM contacts_backfills WHERE name = %s", (name,)
            ).fetchone()
            if done:
                return None
            seen = work(stop)
            if not stop():
                conn.execute(
                    "INSERT INTO contacts_backfills (name) VALUES (%s) ON CONFLICT DO NOTHING",
                    (name,),
                )
            return seen
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))
