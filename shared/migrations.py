"""The database schema: versioned SQL migrations of each service, applied with yoyo.

Each service keeps its migrations as package data in its `migrations/` folder
(`NNNN_<service>_<what>.sql`; yoyo knows a migration by its file name, so names are unique
across services). `migrate` applies those not yet applied, in order: contacts, projections,
sync. Every process runs it before it serves; an advisory lock makes processes that start
together apply each migration exactly once, one after another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from yoyo import get_backend, read_migrations

from shared import locks

log = logging.getLogger("kontakt.migrations")

#: The packages whose `migrations/` folder holds SQL migrations, in the order they apply.
PACKAGES = ("services.contacts", "services.projections", "services.sync")


class DatabaseUnreachableError(ConnectionError):
    """PostgreSQL could not be reached (or went away) while migrating."""


def sources(extra: Sequence[str] = ()) -> list[str]:
    """Where the migrations are, as yoyo sources: each package's folder, then `extra` folders."""
    return [f"package:{package}:migrations" for package in PACKAGES] + list(extra)


def _yoyo_uri(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// connection URI")
    return f"postgresql+psycopg://{rest}"


def migrate(dsn: str, extra: Sequence[str] = ()) -> list[str]:
    """Apply every migration not yet applied to the database; the ids of those applied."""
    # yoyo logs every statement it runs; the lines below name each migration applied.
    logging.getLogger("yoyo").setLevel(logging.WARNING)
    migrations = read_migrations(*sources(extra))
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            if _all_applied(conn, migrations):
                # The usual start: nothing to do, and no need for yoyo's set-up, which
                # runs DDL (and logs an error in PostgreSQL's log) each time it connects.
                return []
            # Session lock: released by PostgreSQL too if this process dies half-way.
            conn.execute("SELECT pg_advisory_lock(%s)", (locks.MIGRATIONS,))
            backend = get_backend(_yoyo_uri(dsn))
            try:
                # Every migrating process holds the advisory lock, so a row in yoyo's own
                # lock table now was left by a process killed while applying.
                backend.break_lock()
                pending = backend.to_apply(migrations)
                if pending:
                    with backend.lock():
                        backend.apply_migrations(pending)
            finally:
                backend.connection.close()
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachableError(f"migrating the database: {exc}") from exc
    applied = [m.id for m in pending]
    for migration_id in applied:
        log.info("applied migration %s", migration_id)
    return applied


def _all_applied(conn: psycopg.Connection[Any], migrations: Iterable[Any]) -> bool:
    """Whether yoyo's own table records every migration as applied."""
    if conn.execute("SELECT to_regclass('_yoyo_migration')").fetchone() in (None, (None,)):
        return False
    applied = {row[0] for row in conn.execute("SELECT migration_hash FROM _yoyo_migration")}
    return all(m.hash in applied for m in migrations)


async def migrate_async(dsn: str, extra: Sequence[str] = ()) -> list[str]:
    """`migrate` from async code (in a thread: yoyo is synchronous)."""
    return await asyncio.to_thread(migrate, dsn, extra)
