"""SQL of the activities read model: e-mails logged by the activities service.

E-mails are kept as they arrive (a ledger: they are not in Kontakt's event
store, so a rebuild leaves them be). A contact's activities are matched at
query time against the intervals in which it held each address
(`rm.contact_addresses`, made by the contacts model from its events'
`occurred_at`): an e-mail belongs to the contact that held one of its
addresses when it was sent. An e-mail sent while nobody held the address goes
to the next contact that takes it, so an address added later picks up the
e-mails sent before it was anyone's.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.projections.sql.contacts import LIVE
from shared.contract.contacts import ERASED


async def insert_email(
    conn: asyncpg.Connection,
    *,
    message_id: str,
    event_id: UUID,
    from_address: str,
    to: list[str],
    cc: list[str],
    subject: str,
    sent_at: datetime,
    matched: Collection[tuple[str, str]],
) -> bool:
    """Store an e-mail once; False if known.

    The addresses shown (`from_address`, `to`, `cc`) are normalised or redacted already;
    `matched` holds the (address, role) pairs contacts may match, erased ones left out.
    """
    inserted = await conn.fetchval(
        "INSERT INTO ledger.emails (message_id, event_id, from_address, to_addresses,"
        " cc_addresses, subject, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (message_id) DO NOTHING RETURNING true",
        message_id, event_id, from_address, to, cc, subject, sent_at,
    )  # fmt: skip
    if not inserted:
        return False
    await conn.executemany(
        "INSERT INTO ledger.email_addresses (message_id, address, role) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        [(message_id, a, role) for a, role in set(matched) if a != ERASED],
    )
    return True


async def known_addresses(conn: asyncpg.Connection) -> list[str]:
    """Every address any stored e-mail mentions (to find erased ones by hash)."""
    return [
        r["address"]
        for r in await conn.fetch("SELECT DISTINCT address FROM ledger.email_addresses")
    ]


async def redact(conn: asyncpg.Connection, addresses: Collection[str]) -> None:
    """Replace erased addresses, and the subjects of their e-mails, by the erased placeholder."""
    if not addresses:
        return
    await conn.execute(
        "UPDATE ledger.emails SET"
        " from_address = CASE WHEN from_address = ANY($1) THEN $2 ELSE from_address END,"
        " to_addresses = ARRAY(SELECT CASE WHEN a = ANY($1) THEN $2 ELSE a END"
        "   FROM unnest(to_addresses) AS a),"
        " cc_addresses = ARRAY(SELECT CASE WHEN a = ANY($1) THEN $2 ELSE a END"
        "   FROM unnest(cc_addresses) AS a),"
        # The subject is free text about the people in the e-mail: an erased one's go.
        " subject = $2"
        " WHERE message_id IN"
        "   (SELECT message_id FROM ledger.email_addresses WHERE address = ANY($1))",
        list(addresses),
        ERASED,
    )
    await conn.execute(
        "DELETE FROM ledger.email_addresses WHERE address = ANY($1)", list(addresses)
    )


#: The e-mails a contact's intervals match. An interval matches from the moment the address
#: was last held by another interval before it (the e-mails sent while nobody held it), or
#: from the beginning when none came before; and up to its end, exclusive.
_MATCHING = (
    "SELECT DISTINCT ea.message_id FROM ledger.email_addresses ea"
    " JOIN ledger.emails e ON e.message_id = ea.message_id"
    f" JOIN {LIVE}.contact_addresses ca ON ca.address = ea.address"
    " WHERE ca.contact_id = $1"
    " AND (ca.valid_to IS NULL OR e.sent_at < ca.valid_to)"
    " AND e.sent_at >= coalesce("
    "   (SELECT max(least(coalesce(o.valid_to, ca.valid_from), ca.valid_from))"
    f"   FROM {LIVE}.contact_addresses o"
    "    WHERE o.address = ca.address AND o.valid_from < ca.valid_from),"
    "   '-infinity')"
)


async def for_contact(
    conn: asyncpg.Connection, contact_id: UUID, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    """E-mails sent, to, or copied to an address while the contact held it; newest first."""
    total = await conn.fetchval(f"SELECT count(*) FROM ({_MATCHING}) m", contact_id)
    rows = await conn.fetch(
        f"SELECT e.* FROM ledger.emails e WHERE e.message_id IN ({_MATCHING})"
        " ORDER BY e.sent_at DESC, e.message_id LIMIT $2 OFFSET $3",
        contact_id,
        limit,
        offset,
    )
    return int(total), list(rows)


async def dump(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, sorted: for comparing states in tests."""
    return {
        "emails": [
            tuple(r.values()) for r in await conn.fetch("SELECT * FROM ledger.emails ORDER BY 1")
        ],
        "email_addresses": [
            tuple(r.values())
            for r in await conn.fetch("SELECT * FROM ledger.email_addresses ORDER BY 1, 2, 3")
        ],
    }
