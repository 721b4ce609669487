"""SQL of the contacts read model (list/search, details, infotags, photo, employments).

Its tables live in one schema (`rm`, or `rm_build` while a rebuild makes a new
copy), so a rebuild can swap the whole model atomically by renaming schemas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.projections.contacts_model import ContactRow, Held, Infotag
from shared.contract.contacts import DETAIL_FIELDS, PhotoRef
from shared.folding import phone_tails

LIVE = "rm"
BUILD = "rm_build"
#: Channel the worker notifies on commit (payload "contact_id:version"), for read-your-writes.
CHANNEL = "kontakt_rm_contacts"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def _s(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"not a schema name: {schema!r}")
    return schema


async def copy_schema(conn: asyncpg.Connection, source: str, target: str) -> None:
    """Create `target` with an empty copy of every table of `source`, keeping index names.

    The live tables come from the migrations; a copy made from them cannot drift from them.
    """
    src, dst = _s(source), _s(target)
    await conn.execute(f"CREATE SCHEMA {dst}")
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", src
    )
    for t in tables:
        # Indexes are made below under their own names (LIKE would name them anew), so a
        # later migration finds them by name in a rebuilt model too.
        await conn.execute(
            f'CREATE TABLE {dst}."{t["tablename"]}"'
            f' (LIKE {src}."{t["tablename"]}" INCLUDING ALL EXCLUDING INDEXES)'
        )
    indexes = await conn.fetch(
        """
        SELECT t.relname AS table_name, pg_get_indexdef(x.indexrelid) AS index_def,
               k.conname AS constraint_name, pg_get_constraintdef(k.oid) AS constraint_def
        FROM pg_index x
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid
        WHERE n.nspname = $1
        ORDER BY t.relname, x.indexrelid
        """,
        src,
    )
    for i in indexes:
        if i["constraint_name"] is not None:  # a primary key or unique constraint
            await conn.execute(
                f'ALTER TABLE {dst}."{i["table_name"]}"'
                f' ADD CONSTRAINT "{i["constraint_name"]}" {i["constraint_def"]}'
            )
        else:
            await conn.execute(i["index_def"].replace(f" ON {src}.", f" ON {dst}.", 1))


async def analyze_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Gather the planner's statistics for every table of a schema."""
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
    )
    for t in tables:
        await conn.execute(f'ANALYZE {_s(schema)}."{t["tablename"]}"')


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Drop a schema and everything in it."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {_s(schema)} CASCADE")


# ------------------------------------------------------------------- rows


#: Columns that hold a ContactRow attribute as it is (one column per detail field).
_PLAIN = (
    "contact_id", "person_id", "version", "position", "status", "company_id", "company_name",
    "search_text", "free_text", "phone_digits", "phone_tails",
    *DETAIL_FIELDS, "started_on", "ended_on", "predecessor_id", "successor_id",
    "archived", "erased", "withdrawn",
)  # fmt: skip
_COLUMN_NAMES = (*_PLAIN, "photo", "outlook_sync_users", "created_at", "updated_at")
_COLUMNS = ", ".join(_COLUMN_NAMES)
#: Columns a ContactRow derives (its status and search keys).
_DERIVED = ("status", "search_text", "free_text", "phone_digits", "phone_tails")
#: Columns a ContactRow takes as they are (photo and outlook_sync_users are converted).
_FIELDS = tuple(
    name for name in _COLUMN_NAMES if name not in (*_DERIVED, "photo", "outlook_sync_users")
)


def _record(row: ContactRow) -> tuple[Any, ...]:
    photo = row.photo.model_dump_json() if row.photo else None
    return (
        *(getattr(row, name) for name in _PLAIN),
        photo,
        list(row.outlook_sync_users),
        row.created_at,
        row.updated_at,
    )


_HELD_COLUMNS = ("contact_id", "person_id", "address", "valid_from", "valid_to")


def _held_record(row: ContactRow, held: Held) -> tuple[Any, ...]:
    return (row.contact_id, row.person_id, held.address, held.since, held.until)


#: The infotags table's columns, in the order _tag_record gives them.
_TAG_COLUMNS = "contact_id, tag, added_by, added_at, tag_id"


def _tag_record(row: ContactRow, tag: str, placed: Infotag) -> tuple[Any, ...]:
    return (row.contact_id, tag, placed.added_by, placed.added_at, placed.tag_id)


async def load_row(conn: asyncpg.Connection, schema: str, contact_id: UUID) -> ContactRow | None:
    """A contact's row with its infotags and addresses (one round trip), locked for update."""
    s = _s(schema)
    rec = await conn.fetchrow(
        f"SELECT c.*,"
        f" (SELECT coalesce(json_agg(json_build_array(t.tag, t.added_by, t.added_at, t.tag_id)),"
        f"  '[]')"
        f"  FROM {s}.infotags t WHERE t.contact_id = c.contact_id) AS tag_rows,"
        f" (SELECT coalesce(json_agg(json_build_array(a.address, a.valid_from, a.valid_to)),"
        f"  '[]') FROM {s}.contact_addresses a WHERE a.contact_id = c.contact_id) AS held_rows"
        f" FROM {s}.contacts c WHERE c.contact_id = $1 FOR UPDATE OF c",
        contact_id,
    )
    if rec is None:
        return None
    tags = json.loads(rec["tag_rows"])
    return ContactRow(
        **{name: rec[name] for name in _FIELDS},
        photo=PhotoRef.model_validate_json(rec["photo"]) if rec["photo"] else None,
        outlook_sync_users=tuple(rec["outlook_sync_users"]),
        infotags={
            tag: Infotag(by, datetime.fromisoformat(at), UUID(tid) if tid else None)
            for tag, by, at, tid in tags
        },
        held=frozenset(
            Held(a, datetime.fromisoformat(since), datetime.fromisoformat(until) if until else None)
            for a, since, until in json.loads(rec["held_rows"])
        ),
    )


async def save_row(
    conn: asyncpg.Connection, schema: str, before: ContactRow | None, after: ContactRow
) -> None:
    """Write a changed row, its infotags and addresses, and notify waiting readers."""
    s = _s(schema)
    placeholders = ", ".join(f"${i}" for i in range(1, len(_COLUMN_NAMES) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMN_NAMES[1:])
    await conn.execute(
        f"INSERT INTO {s}.contacts ({_COLUMNS}) VALUES ({placeholders})"
        f" ON CONFLICT (contact_id) DO UPDATE SET {updates}",
        *_record(after),
    )
    old_tags = before.infotags if before else {}
    if old_tags != after.infotags:
        await conn.execute(f"DELETE FROM {s}.infotags WHERE contact_id = $1", after.contact_id)
        await conn.executemany(
            f"INSERT INTO {s}.infotags ({_TAG_COLUMNS}) VALUES ($1,$2,$3,$4,$5)",
            [_tag_record(after, t, i) for t, i in after.infotags.items()],
        )
    old_held = before.held if before else frozenset()
    if old_held != after.held:
        # An interval that ended is replaced by its ended row; erasure deletes them all.
        await conn.executemany(
            f"DELETE FROM {s}.contact_addresses"
            " WHERE contact_id = $1 AND address = $2 AND valid_from = $3",
            [(after.contact_id, h.address, h.since) for h in old_held - after.held],
        )
        await conn.executemany(
            f"INSERT INTO {s}.contact_addresses ({', '.join(_HELD_COLUMNS)})"
            " VALUES ($1, $2, $3, $4, $5)",
            [_held_record(after, h) for h in after.held - old_held],
        )
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{after.contact_id}:{after.version}")


async def record_erased_addresses(
    conn: asyncpg.Connection, schema: str, hashes: Iterable[str]
) -> None:
    """Remember keyed hashes of erased addresses (to refuse them in later activities)."""
    await conn.executemany(
        f"INSERT INTO {_s(schema)}.erased_addresses (address_hash) VALUES ($1)"
        " ON CONFLICT DO NOTHING",
        [(h,) for h in hashes],
    )


async def erased_among(conn: asyncpg.Connection, hashes: Sequence[str]) -> set[str]:
    """Which of these address hashes belong to erased persons."""
    rows = await conn.fetch(
        f"SELECT address_hash FROM {LIVE}.erased_addresses WHERE address_hash = ANY($1)",
        list(hashes),
    )
    return {r["address_hash"] for r in rows}


async def is_erased(conn: asyncpg.Connection, contact_id: UUID) -> bool:
    """True when the contact is known and erased."""
    return bool(
        await conn.fetchval(f"SELECT erased FROM {LIVE}.contacts WHERE contact_id = $1", contact_id)
    )


async def person_erased(conn: asyncpg.Connection, person_id: UUID) -> bool:
    """True when any known contact of the person is erased."""
    return bool(
        await conn.fetchval(
            f"SELECT bool_or(erased) FROM {LIVE}.contacts WHERE person_id = $1", person_id
        )
    )


async def copy_rows(conn: asyncpg.Connection, schema: str, rows: Sequence[ContactRow]) -> None:
    """Bulk-load rows into an empty schema (the rebuild's first pass)."""
    s = _s(schema)
    await conn.copy_records_to_table(
        "contacts", schema_name=s, columns=list(_COLUMN_NAMES), records=[_record(r) for r in rows]
    )
    await conn.copy_records_to_table(
        "infotags",
        schema_name=s,
        columns=_TAG_COLUMNS.split(", "),
        records=[_tag_record(r, t, i) for r in rows for t, i in r.infotags.items()],
    )
    await conn.copy_records_to_table(
        "contact_addresses",
        schema_name=s,
        columns=list(_HELD_COLUMNS),
        records=[_held_record(r, h) for r in rows for h in r.held],
    )


# ---------------------------------------------------------------- queries

_SORTS = {
    "name": "last_names, first_names, contact_id",
    "company": "company_name, last_names, first_names, contact_id",
    "created": "created_at DESC, contact_id",
    "updated": "updated_at DESC, contact_id",
}


def like_prefix(text: str) -> str:
    """Text with LIKE's wildcards escaped, so a search for "%" or "_" means those characters."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def filters(
    *,
    name: str | None = None,
    company_id: UUID | None = None,
    infotag: str | None = None,
    statuses: Sequence[str] = ("current",),
    email: str | None = None,
    phone: str | None = None,
    text: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause of a search over `rm.contacts c`, and its arguments.

    `name` and `text` come folded (fold_name), `email` normalised (normalise_address),
    `phone` as its digits (phone_digits), as the stored keys are.
    """
    where = ["status = ANY($1)"]
    args: list[Any] = [list(statuses)]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if name:
        n = arg(like_prefix(name))
        # A name begins with the prefix, or one of its words does (a trigram index serves both).
        where.append(
            f"(search_text LIKE {n} || '%' ESCAPE '\\'"
            f" OR search_text LIKE '% ' || {n} || '%' ESCAPE '\\')"
        )
    if text:
        where.append(f"free_text LIKE '%' || {arg(like_prefix(text))} || '%' ESCAPE '\\'")
    if email:
        where.append(
            f"EXISTS (SELECT 1 FROM {LIVE}.contact_addresses a WHERE a.contact_id = c.contact_id"
            f" AND a.address LIKE {arg(like_prefix(email))} || '%' ESCAPE '\\')"
        )
    if phone is not None:
        # Equal digits, or equal once a country code is taken off either side.
        where.append(
            f"(phone_digits && {arg([phone, *phone_tails(phone)])}::text[]"
            f" OR phone_tails && {arg([phone])}::text[])"
        )
    if company_id:
        where.append(f"company_id = {arg(company_id)}")
    if infotag := (infotag or "").strip("/"):
        matches = placement_matches(arg(infotag), arg(like_prefix(infotag)), arg(_as_uuid(infotag)))
        where.append(
            f"EXISTS (SELECT 1 FROM {LIVE}.infotags t WHERE t.contact_id = c.contact_id"
            f" AND {matches})"
        )
    return " AND ".join(where), args


def placement_matches(path: str, like: str, tag_id: str) -> str:
    """SQL true for a placement `t` of a tag, or of one below it, by path or by id.

    The arguments are parameter references: the path as given (compared case-insensitively),
    the same escaped for LIKE, and a tag id or NULL. A placement the catalogue model knows
    matches by the tag's current place in the tree; one it does not know (placed by a name
    before the catalogue, or its definition not here yet) by the path it was placed under.
    """
    cat = f"{LIVE}.infotag_catalogue"
    roots = (
        f"(SELECT array_agg(r.tag_id) FROM {cat} r WHERE r.tag_id = {tag_id}::uuid"
        f" OR ({tag_id}::uuid IS NULL AND lower(r.path) = lower({path}::text)))"
    )
    placed_under = (
        f"(lower(t.tag) = lower({path}::text)"
        f" OR lower(t.tag) LIKE lower({like}::text) || '/%' ESCAPE '\\')"
    )
    return (
        f"(t.tag_id IN (SELECT d.tag_id FROM {cat} d WHERE d.lineage && {roots})"
        f" OR (NOT EXISTS (SELECT 1 FROM {cat} k WHERE k.tag_id = t.tag_id)"
        f" AND (t.tag_id = {tag_id}::uuid OR ({tag_id}::uuid IS NULL AND {placed_under}))))"
    )


async def search(
    conn: asyncpg.Connection,
    *,
    name: str | None,
    company_id: UUID | None,
    infotag: str | None,
    statuses: Sequence[str],
    sort: str,
    limit: int,
    offset: int,
    email: str | None = None,
    phone: str | None = None,
    text: str | None = None,
) -> tuple[int, list[asyncpg.Record]]:
    """Contacts matching every filter given (see `filters`): (total, one page)."""
    clause, args = filters(
        name=name,
        company_id=company_id,
        infotag=infotag,
        statuses=statuses,
        email=email,
        phone=phone,
        text=text,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM {LIVE}.contacts c WHERE {clause}", *args)
    rows = await conn.fetch(
        f"SELECT * FROM {LIVE}.contacts c WHERE {clause} ORDER BY {_SORTS[sort]}"
        f" LIMIT {int(limit)} OFFSET {int(offset)}",
        *args,
    )
    return int(total), list(rows)


async def get(conn: asyncpg.Connection, contact_id: UUID) -> asyncpg.Record | None:
    """A contact's row."""
    return await conn.fetchrow(f"SELECT * FROM {LIVE}.contacts WHERE contact_id = $1", contact_id)


async def position(conn: asyncpg.Connection) -> int:
    """The newest store position the read model reflects (0: none yet, or no table yet)."""
    if not await conn.fetchval(f"SELECT to_regclass('{LIVE}.contacts') IS NOT NULL"):
        return 0
    return int(await conn.fetchval(f"SELECT max(position) FROM {LIVE}.contacts") or 0)


async def version_of(conn: asyncpg.Connection, contact_id: UUID) -> int | None:
    """The contact version the read model reflects (None when unknown)."""
    value = await conn.fetchval(
        f"SELECT version FROM {LIVE}.contacts WHERE contact_id = $1", contact_id
    )
    return None if value is None else int(value)


async def versions_of_person(conn: asyncpg.Connection, person_id: UUID) -> list[asyncpg.Record]:
    """Every version of a person, oldest first (the Employments tab)."""
    return list(
        await conn.fetch(
            f"SELECT * FROM {LIVE}.contacts WHERE person_id = $1"
            " ORDER BY created_at, started_on NULLS FIRST, contact_id",
            person_id,
        )
    )


async def colleagues(
    conn: asyncpg.Connection, company_id: UUID, contact_id: UUID, limit: int = 50
) -> list[asyncpg.Record]:
    """Current contacts at the same company."""
    return list(
        await conn.fetch(
            f"SELECT contact_id, first_names, last_names, job_title FROM {LIVE}.contacts"
            " WHERE company_id = $1 AND status = 'current' AND contact_id <> $2"
            " ORDER BY last_names, first_names, contact_id LIMIT $3",
            company_id,
            contact_id,
            limit,
        )
    )


async def companies(conn: asyncpg.Connection, name: str, limit: int) -> list[asyncpg.Record]:
    """Companies whose name, or one of its words, begins with `name` (case-insensitively).

    One row per company id, with the name of its most recently updated contact among those
    that match, and how many current contacts it has; erased and withdrawn versions count
    for nothing.
    """
    return list(
        await conn.fetch(
            "SELECT company_id, company_name, contacts FROM ("
            " SELECT DISTINCT ON (company_id) company_id, company_name,"
            "  count(*) FILTER (WHERE status = 'current') OVER (PARTITION BY company_id)"
            "  AS contacts"
            f" FROM {LIVE}.contacts"
            " WHERE status IN ('current', 'former', 'archived')"
            "  AND (company_name ILIKE $1 || '%' ESCAPE '\\'"
            "   OR company_name ILIKE '% ' || $1 || '%' ESCAPE '\\')"
            " ORDER BY company_id, updated_at DESC NULLS LAST"
            ") latest ORDER BY lower(company_name), company_id LIMIT $2",
            like_prefix(name),
            limit,
        )
    )


async def infotags(conn: asyncpg.Connection, contact_id: UUID) -> list[asyncpg.Record]:
    """A contact's infotags, oldest first."""
    return list(
        await conn.fetch(
            # A catalogue tag shows its current path (renamed or moved since it was placed).
            f"SELECT coalesce(k.path, t.tag) AS tag, t.tag AS placed_as, t.tag_id,"
            f" coalesce(k.active, true) AS active, t.added_by, t.added_at"
            f" FROM {LIVE}.infotags t LEFT JOIN {LIVE}.infotag_catalogue k"
            f" ON k.tag_id = t.tag_id WHERE t.contact_id = $1 ORDER BY t.added_at, t.tag",
            contact_id,
        )
    )


def photo_of(rec: asyncpg.Record) -> dict[str, Any] | None:
    """The photo metadata of a contact row."""
    value = rec["photo"]
    return json.loads(value) if value else None


# ----------------------------------------------------- comparing models


async def dump(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the schema's tables, sorted: for comparing two builds."""
    s = _s(schema)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, order in (
        ("contacts", "contact_id"),
        ("infotags", "contact_id, tag"),
        ("infotag_catalogue", "tag_id"),
        ("contact_addresses", "contact_id, address, valid_from"),
        ("erased_addresses", "address_hash"),
        ("contact_history", "contact_id, aggregate_version"),
    ):
        rows = await conn.fetch(f"SELECT * FROM {s}.{table} ORDER BY {order}")
        out[table] = [tuple(r.values()) for r in rows]
    return out
