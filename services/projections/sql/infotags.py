"""SQL of the infotag catalogue read model (`rm.infotag_catalogue`): each tag's current path.

The table sits in the contacts model's schema, so a rebuild makes it anew with the
contacts and swaps both at once.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.projections.sql.contacts import LIVE, _s
from shared.contract import infotags as c
from shared.infotag_tree import UnknownInfotagError

#: Deeper than any real tree; stops a path computation on data that would loop.
MAX_DEPTH = 64


async def apply_catalogue_event(
    conn: asyncpg.Connection, event: c.InfotagEventBase, schema: str = LIVE
) -> bool:
    """Apply a catalogue event once (by catalogue version); False for a duplicate."""
    s = _s(schema)
    version = await conn.fetchval(
        f"SELECT version FROM {s}.infotag_catalogue WHERE tag_id = $1 FOR UPDATE", event.tag_id
    )
    if version is not None and event.catalogue_version <= version:
        return False
    who = (event.catalogue_version, event.actor, event.occurred_at, event.tag_id)
    if isinstance(event, c.InfotagDefined):
        await conn.execute(
            f"INSERT INTO {s}.infotag_catalogue"
            " (version, changed_by, changed_at, tag_id, parent_id, name, active, path, lineage)"
            " VALUES ($1, $2, $3, $4, $5, $6, true, $6, ARRAY[$4::uuid])"
            " ON CONFLICT (tag_id) DO UPDATE SET parent_id = excluded.parent_id,"
            " name = excluded.name, active = true, version = excluded.version,"
            " changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            *who,
            event.data.parent_id,
            event.data.name,
        )
    else:
        if version is None:
            raise UnknownInfotagError(
                f"{event.type} of infotag {event.tag_id}, which was never defined here"
            )
        value: object
        if isinstance(event, c.InfotagRenamed):
            change, value = "name = $5", event.data.name
        elif isinstance(event, c.InfotagMoved):
            change, value = "parent_id = $5", event.data.parent_id
        else:
            change, value = "active = $5", isinstance(event, c.InfotagReactivated)
        await conn.execute(
            f"UPDATE {s}.infotag_catalogue SET version = $1, changed_by = $2, changed_at = $3,"
            f" {change} WHERE tag_id = $4",
            *who,
            value,
        )
    if not isinstance(event, c.InfotagDeactivated | c.InfotagReactivated):
        await _repath(conn, s, event.tag_id)
    return True


async def _repath(conn: asyncpg.Connection, s: str, tag_id: UUID) -> None:
    """Recompute the path and lineage of a tag and of every tag below it."""
    # A parent not (yet) known reads as the root: the path is then the best known.
    await conn.execute(
        f"""
        WITH RECURSIVE sub (tag_id, path, lineage, depth) AS (
            SELECT k.tag_id,
                   CASE WHEN p.tag_id IS NULL THEN k.name ELSE p.path || '/' || k.name END,
                   CASE WHEN p.tag_id IS NULL THEN ARRAY[k.tag_id]
                        ELSE p.lineage || k.tag_id END,
                   1
            FROM {s}.infotag_catalogue k
            LEFT JOIN {s}.infotag_catalogue p ON p.tag_id = k.parent_id
            WHERE k.tag_id = $1
          UNION ALL
            SELECT k.tag_id, sub.path || '/' || k.name, sub.lineage || k.tag_id, sub.depth + 1
            FROM {s}.infotag_catalogue k JOIN sub ON k.parent_id = sub.tag_id
            WHERE NOT k.tag_id = ANY(sub.lineage) AND sub.depth < {MAX_DEPTH}
        )
        UPDATE {s}.infotag_catalogue k SET path = sub.path, lineage = sub.lineage
        FROM sub WHERE k.tag_id = sub.tag_id
        """,
        tag_id,
    )
