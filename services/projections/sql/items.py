"""SQL of the items read model: opportunities, campaigns and projects linked to contacts.

Items belong to other services (a ledger, not rebuilt from Kontakt's store).
Every field remembers when it was last set, and an event older than that is
ignored, so the rows end the same whatever order the events arrive in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


async def _ensure_item(conn: asyncpg.Connection, kind: str, item_id: UUID) -> None:
    await conn.execute(
        "INSERT INTO ledger.items (kind, item_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        kind,
        item_id,
    )


async def _set_if_newer(
    conn: asyncpg.Connection, kind: str, item_id: UUID, field: str, value: str, at: datetime
) -> None:
    if field not in ("title", "status"):
        raise ValueError(f"not an item field: {field}")
    await _ensure_item(conn, kind, item_id)
    await conn.execute(
        f"UPDATE ledger.items SET {field} = $3, {field}_at = $4 WHERE kind = $1"
        f" AND item_id = $2 AND ({field}_at IS NULL OR {field}_at <= $4)",
        kind, item_id, value, at,
    )  # fmt: skip


async def set_title(
    conn: asyncpg.Connection, kind: str, item_id: UUID, title: str, at: datetime
) -> None:
    """Set the title unless a newer one is known."""
    await _set_if_newer(conn, kind, item_id, "title", title, at)


async def set_status(
    conn: asyncpg.Connection, kind: str, item_id: UUID, status: str, at: datetime
) -> None:
    """Set the status unless a newer one is known."""
    await _set_if_newer(conn, kind, item_id, "status", status, at)


async def close(
    conn: asyncpg.Connection, kind: str, item_id: UUID, outcome: str | None, at: datetime
) -> None:
    """Mark the item closed."""
    await _ensure_item(conn, kind, item_id)
    await conn.execute(
        "UPDATE ledger.items SET closed = true, outcome = $3, closed_at = $4"
        " WHERE kind = $1 AND item_id = $2 AND (closed_at IS NULL OR closed_at <= $4)",
        kind, item_id, outcome, at,
    )  # fmt: skip


async def set_link(
    conn: asyncpg.Connection,
    kind: str,
    item_id: UUID,
    contact_id: UUID,
    *,
    linked: bool,
    role: str | None,
    at: datetime,
) -> None:
    """Link or unlink a contact unless a newer change of that link is known."""
    await conn.execute(
        "INSERT INTO ledger.item_links (kind, item_id, contact_id, linked, role, changed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (kind, item_id, contact_id) DO UPDATE SET linked = excluded.linked,"
        " role = CASE WHEN excluded.linked THEN excluded.role ELSE item_links.role END,"
        " changed_at = excluded.changed_at WHERE item_links.changed_at <= excluded.changed_at",
        kind, item_id, contact_id, linked, role, at,
    )  # fmt: skip


async def forget_roles(conn: asyncpg.Connection, contact_id: UUID) -> None:
    """Blank the roles (free text) of every link of an erased contact."""
    await conn.execute(
        "UPDATE ledger.item_links SET role = NULL WHERE contact_id = $1 AND role IS NOT NULL",
        contact_id,
    )


async def for_contact(
    conn: asyncpg.Connection, contact_id: UUID, kind: str, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    """Items of a kind the contact is linked to, open ones first, then by title."""
    total = await conn.fetchval(
        "SELECT count(*) FROM ledger.item_links WHERE contact_id = $1 AND kind = $2 AND linked",
        contact_id,
        kind,
    )
    rows = await conn.fetch(
        # A link can arrive before its item's first event: no item row yet, so not closed.
        "SELECT l.item_id, l.role, l.changed_at AS linked_at, i.title, i.status,"
        " coalesce(i.closed, false) AS closed,"
        " i.outcome FROM ledger.item_links l"
        " LEFT JOIN ledger.items i ON i.kind = l.kind AND i.item_id = l.item_id"
        " WHERE l.contact_id = $1 AND l.kind = $2 AND l.linked"
        " ORDER BY coalesce(i.closed, false), i.title NULLS LAST, l.item_id LIMIT $3 OFFSET $4",
        contact_id,
        kind,
        limit,
        offset,
    )
    return int(total), list(rows)


async def dump(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, sorted: for comparing states in tests."""
    return {
        "items": [
            tuple(r.values()) for r in await conn.fetch("SELECT * FROM ledger.items ORDER BY 1, 2")
        ],
        "item_links": [
            tuple(r.values())
            for r in await conn.fetch("SELECT * FROM ledger.item_links ORDER BY 1, 2, 3")
        ],
    }
