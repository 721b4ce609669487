"""SQL of the history read model: each contact event's changes, field provenance, photo list.

Its table lives in the contacts model's schema (`rm`, or `rm_build` during a rebuild), so
a rebuild makes and swaps it with the contacts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from services.projections.history_model import HISTORY_FIELDS, HistoryEntry, redact_changes
from services.projections.sql.contacts import LIVE, _s

_COLUMNS = (
    "contact_id",
    "aggregate_version",
    "type",
    "actor",
    "channel",
    "occurred_at",
    "changes",
    "photo",
)


def _record(entry: HistoryEntry) -> tuple[Any, ...]:
    return (
        entry.contact_id,
        entry.aggregate_version,
        entry.type,
        entry.actor,
        entry.channel,
        entry.occurred_at,
        json.dumps(entry.changes),
        json.dumps(entry.photo) if entry.photo else None,
    )


async def record(conn: asyncpg.Connection, schema: str, entry: HistoryEntry) -> None:
    """Store an event's entry (once: a version already there is left as it is)."""
    await conn.execute(
        f"INSERT INTO {_s(schema)}.contact_history ({', '.join(_COLUMNS)})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)"
        " ON CONFLICT (contact_id, aggregate_version) DO NOTHING",
        *_record(entry),
    )


async def redact(conn: asyncpg.Connection, schema: str, contact_id: UUID) -> None:
    """Blank every personal value (and photo) in the erased contact's entries."""
    s = _s(schema)
    rows = await conn.fetch(
        f"SELECT aggregate_version, changes FROM {s}.contact_history WHERE contact_id = $1",
        contact_id,
    )
    # The same redaction as the rebuild's (HistoryEntry.redacted), so both read alike.
    await conn.executemany(
        f"UPDATE {s}.contact_history SET changes = $3::jsonb, photo = NULL"
        " WHERE contact_id = $1 AND aggregate_version = $2",
        [
            (
                contact_id,
                r["aggregate_version"],
                json.dumps(redact_changes(json.loads(r["changes"]))),
            )
            for r in rows
        ],
    )


async def copy_entries(
    conn: asyncpg.Connection, schema: str, entries: Sequence[HistoryEntry]
) -> None:
    """Bulk-load entries into an empty schema (the rebuild's first pass)."""
    await conn.copy_records_to_table(
        "contact_history",
        schema_name=_s(schema),
        columns=list(_COLUMNS),
        records=[_record(e) for e in entries],
    )


# ---------------------------------------------------------------- queries


def _entry(rec: asyncpg.Record) -> dict[str, Any]:
    return {
        "version": rec["aggregate_version"],
        "type": rec["type"],
        "actor": rec["actor"],
        "channel": rec["channel"],
        "occurred_at": rec["occurred_at"],
        "changes": json.loads(rec["changes"]),
    }


async def page(
    conn: asyncpg.Connection, contact_id: UUID, limit: int, before_version: int | None
) -> list[dict[str, Any]]:
    """A contact's entries, newest first, older than before_version when given."""
    rows = await conn.fetch(
        f"SELECT * FROM {LIVE}.contact_history WHERE contact_id = $1"
        " AND ($2::integer IS NULL OR aggregate_version < $2)"
        " ORDER BY aggregate_version DESC LIMIT $3",
        contact_id,
        before_version,
        limit,
    )
    return [_entry(r) for r in rows]


async def provenance(conn: asyncpg.Connection, contact_id: UUID) -> list[dict[str, Any]]:
    """For each field a change set: who set it last, when, through which channel, by which event."""
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (ch->>'field') ch->>'field' AS field, h.actor, h.channel,"
        " h.occurred_at, h.aggregate_version, h.type"
        f" FROM {LIVE}.contact_history h, jsonb_array_elements(h.changes) ch"
        " WHERE h.contact_id = $1"
        " ORDER BY ch->>'field', h.aggregate_version DESC",
        contact_id,
    )
    order = {name: i for i, name in enumerate(HISTORY_FIELDS)}
    return [
        {
            "field": r["field"],
            "set_by": r["actor"],
            "set_at": r["occurred_at"],
            "channel": r["channel"],
            "version": r["aggregate_version"],
            "type": r["type"],
        }
        for r in sorted(rows, key=lambda r: order.get(r["field"], len(order)))
    ]


async def photos(conn: asyncpg.Connection, contact_id: UUID) -> list[dict[str, Any]]:
    """Every photo the contact has had, newest first (each once, as it was last made current)."""
    rows = await conn.fetch(
        "SELECT * FROM (SELECT DISTINCT ON (photo->>'content_hash') photo, actor, occurred_at,"
        " aggregate_version"
        f" FROM {LIVE}.contact_history WHERE contact_id = $1 AND photo IS NOT NULL"
        " ORDER BY photo->>'content_hash', aggregate_version DESC) p"
        " ORDER BY aggregate_version DESC",
        contact_id,
    )
    return [
        {**json.loads(r["photo"]), "set_by": r["actor"], "set_at": r["occurred_at"]} for r in rows
    ]
