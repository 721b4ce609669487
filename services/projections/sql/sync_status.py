"""SQL of the Outlook sync status read model: how far each user's Outlook copy got.

Fed by the sync service's outcome events (a ledger, not in Kontakt's store); the
highest sequence per (user, person) wins, whatever order outcomes arrive in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


async def record(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    person_id: UUID,
    contact_id: UUID,
    status: str,
    reason: str | None,
    sequence: int,
    at: datetime,
) -> bool:
    """Keep an outcome unless a later one (higher sequence) is known; True if kept."""
    kept = await conn.fetchval(
        "INSERT INTO ledger.outlook_sync_status"
        " (user_id, person_id, contact_id, status, reason, sequence, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (user_id, person_id) DO UPDATE SET contact_id = excluded.contact_id,"
        " status = excluded.status, reason = excluded.reason, sequence = excluded.sequence,"
        " updated_at = excluded.updated_at"
        " WHERE outlook_sync_status.sequence < excluded.sequence RETURNING true",
        user_id, person_id, contact_id, status, reason, sequence, at,
    )  # fmt: skip
    return bool(kept)


async def forget_reasons(conn: asyncpg.Connection, person_id: UUID) -> None:
    """Blank the reasons (free text) of an erased person's outcomes."""
    await conn.execute(
        "UPDATE ledger.outlook_sync_status SET reason = NULL"
        " WHERE person_id = $1 AND reason IS NOT NULL",
        person_id,
    )


async def for_person(
    conn: asyncpg.Connection, person_id: UUID, users: Sequence[str]
) -> dict[str, asyncpg.Record]:
    """The latest outcome of each of these users for a person."""
    rows = await conn.fetch(
        "SELECT user_id, status, reason, updated_at FROM ledger.outlook_sync_status"
        " WHERE person_id = $1 AND user_id = ANY($2)",
        person_id,
        list(users),
    )
    return {r["user_id"]: r for r in rows}


async def dump(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """Every row, sorted: for comparing states in tests."""
    rows = await conn.fetch("SELECT * FROM ledger.outlook_sync_status ORDER BY 1, 2")
    return [tuple(r.values()) for r in rows]
