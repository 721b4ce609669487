"""PostgreSQL store of the Outlook sync: contact snapshots, links, the outbox (all its SQL).

Applying an event and changing a link's state are each one transaction; an outcome
event is written to the outbox in the transaction that changes the link, so the
published status never disagrees with the recorded one (no dual write).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.sync import domain
from services.sync.sealing import PersonKeys, seal, unseal
from shared import locks
from shared.contract.contacts import ContactEvent
from shared.contract.infotags import InfotagDefined, InfotagEvent, InfotagMoved, InfotagRenamed
from shared.contract.sync import OutlookSyncStatusChanged, SyncStatus
from shared.infotag_tree import TagNode, UnknownInfotagError, subtree
from shared.migrations import migrate_async

_LINK_FIELDS = [f.name for f in fields(domain.Link)]
# Written by the reconciler only; the switch fields belong to the event consumer.
_RECONCILER_FIELDS = [
    "state",
    "graph_id",
    "pushed_hash",
    "pushed_photo",
    "pushed_categories",
    "reason",
    "suppressed",
    "suppressed_contact_id",
    "suppressed_through_version",
    "sequence",
    "attempts",
]


@dataclass(frozen=True)
class Claimed:
    """A link claimed for reconciling, with its contact and the person's contact ids."""

    link: domain.Link
    snapshot: domain.Snapshot
    person_contact_ids: list[UUID]


_INSERT_SNAPSHOT = (
    "INSERT INTO sync_contacts (contact_id, person_id, version, status, company_name,"
    " details, infotags, photo_hash, successor_id, sealed, tag_ids)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (contact_id) DO NOTHING RETURNING contact_id"
)
_UPDATE_SNAPSHOT = (
    "UPDATE sync_contacts SET person_id = %s, version = %s, status = %s,"
    " company_name = %s, details = %s, infotags = %s, photo_hash = %s,"
    " successor_id = %s, sealed = %s, tag_ids = %s WHERE contact_id = %s"
)


class ConcurrentApplyError(domain.SyncError):
    """Another worker applied a contact's creation meanwhile (a rebalance): apply one by one."""


@dataclass(frozen=True)
class Reconciled:
    """A claimed link after one step: its new state, outcomes, and whether it is settled."""

    claimed: domain.Link
    link: domain.Link
    outcomes: list[tuple[SyncStatus, str | None]]
    done: bool
    #: Seconds until the next attempt, when not done.
    retry_in: float = 0.0


def _snapshot(row: dict[str, Any], key: bytes | None) -> domain.Snapshot:
    """A stored row as a snapshot; erased when the person's sync key is gone (None)."""
    snap = domain.Snapshot(
        contact_id=row["contact_id"],
        person_id=row["person_id"],
        version=row["version"],
        status=row["status"],
        company_name=row["company_name"],
        details=dict(row["details"]),
        infotags=tuple(row["infotags"]),
        photo_hash=row["photo_hash"],
        successor_id=row["successor_id"],
    )
    if key is None or snap.status == "erased":
        return domain.erased_snapshot(snap)
    if row["sealed"] is None:
        return snap  # written before sealing: sealed on its next change
    fields = unseal(key, snap.contact_id, bytes(row["sealed"]))
    return replace(
        snap,
        company_name=fields["company_name"],
        details=fields["details"],
        infotags=tuple(fields["infotags"]),
        # Sealed before the catalogue: derived from the keys when shown.
        infotag_ids=tuple((t, UUID(i)) for t, i in fields.get("infotag_ids", [])),
    )


def _link(row: dict[str, Any]) -> domain.Link:
    return domain.Link(**{name: row[name] for name in _LINK_FIELDS})


class SyncStore:
    """The sync service's tables in PostgreSQL."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]],
        keys: PersonKeys | None = None,
    ) -> None:
        self.pool = pool
        self._person_keys = keys

    @property
    def keys(self) -> PersonKeys:
        """The persons' sync keys (a store opened for inspection only has none)."""
        if self._person_keys is None:
            raise RuntimeError("this store was opened without sync keys")
        return self._person_keys

    @classmethod
    async def open(cls, dsn: str, max_size: int = 8, keys: PersonKeys | None = None) -> SyncStore:
        """Open a pool on the database, migrating it first.

        `keys` is needed to apply events and claim links (the personal fields are
        sealed under each person's sync key); inspection and resync do without.
        """
        pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row},
        )
        try:
            await pool.open(wait=True)
            store = cls(pool, keys)
            await migrate_async(dsn)
        except BaseException:
            await pool.close()  # a caller that tries again (PostgreSQL not up) leaks nothing
            raise
        return store

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    # ------------------------------------------------------------------ events

    async def apply(self, event: ContactEvent, *, repairing: bool = False) -> bool:
        """Apply one contact event (snapshot and links) in one transaction; False if seen.

        Raises OutOfOrderEventError or VersionGapError when earlier events of the
        contact are missing, unless `repairing` (applying the store's own history).
        """
        # A contact's person never changes: its key is the event's person's.
        key = await self.keys.get(event.person_id)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT * FROM sync_contacts WHERE contact_id = %s FOR UPDATE",
                (event.contact_id,),
            )
            row = await cur.fetchone()
            before = _snapshot(row, key) if row else None
            if before is not None and event.aggregate_version <= before.version:
                return False  # a re-delivery: its effects are already recorded
            domain.check_continuous(before, event, repairing=repairing)
            snap, intents = domain.apply_event(before, event)
            if before is None:
                cur = await conn.execute(_INSERT_SNAPSHOT, self._snapshot_values(snap, key))
                if await cur.fetchone() is None:
                    return False  # another worker applied it meanwhile (rebalance)
            else:
                await conn.execute(
                    _UPDATE_SNAPSHOT, (*self._snapshot_values(snap, key)[1:], snap.contact_id)
                )
            for intent in intents:
                await self._apply_intent(conn, intent)
            return True

    async def apply_together(self, events: list[ContactEvent]) -> None:
        """Apply a partition's run of contact events in one transaction, as apply() would each.

        Each contact's snapshot is read once, the events folded onto it in order, and
        written once; the links' intents follow in order (re-checks last, each once).
        Raises on anything apply() would treat specially (a gap, an event before its
        contact's creation, a concurrent writer): nothing is then applied, and the
        caller applies the events one by one.
        """
        keys = await self.keys.get_many({e.person_id for e in events})
        ids = sorted({e.contact_id for e in events})
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT * FROM sync_contacts WHERE contact_id = ANY(%s)"
                " ORDER BY contact_id FOR UPDATE",
                (ids,),
            )
            stored = {
                r["contact_id"]: _snapshot(r, keys[r["person_id"]]) for r in await cur.fetchall()
            }
            snaps: dict[UUID, domain.Snapshot] = dict(stored)
            intents: list[domain.LinkIntent] = []
            for event in events:
                before = snaps.get(event.contact_id)
                if before is not None and event.aggregate_version <= before.version:
                    continue  # a re-delivery
                domain.check_continuous(before, event, repairing=False)
                snaps[event.contact_id], asked = domain.apply_event(before, event)
                intents.extend(asked)
            changed = [s for cid, s in snaps.items() if stored.get(cid) is not s]
            async with conn.pipeline():
                for snap in changed:
                    values = self._snapshot_values(snap, keys[snap.person_id])
                    if snap.contact_id not in stored:
                        cur = await conn.execute(_INSERT_SNAPSHOT, values)
                        if await cur.fetchone() is None:
                            raise ConcurrentApplyError(
                                f"contact {snap.contact_id} applied meanwhile"
                            )
                    else:
                        await conn.execute(_UPDATE_SNAPSHOT, (*values[1:], snap.contact_id))
                touched = dict.fromkeys(
                    (i.person_id, i.contact_id) for i in intents if i.kind == "touch"
                )
                for intent in intents:
                    if intent.kind != "touch":
                        await self._apply_intent(conn, intent)
                if touched:
                    # A re-check only makes the link due: once is enough, and after the
                    # switches and moves, which make theirs due themselves.
                    await conn.execute(
                        "UPDATE sync_links SET generation = generation + 1,"
                        " next_attempt_at = now(), attempts = 0"
                        " FROM unnest(%s::uuid[], %s::uuid[]) AS t(person_id, contact_id)"
                        " WHERE sync_links.person_id = t.person_id"
                        " AND sync_links.contact_id = t.contact_id",
                        ([p for p, _ in touched], [c for _, c in touched]),
                    )

    @staticmethod
    def _snapshot_values(snap: domain.Snapshot, key: bytes | None) -> tuple[Any, ...]:
        """Column values of a snapshot: personal fields sealed, placeholders in plain columns."""
        sealed = None
        status = snap.status
        if key is None:
            status = "erased"  # the person is gone: nothing of theirs is written
        elif status != "erased":
            sealed = seal(
                key,
                snap.contact_id,
                {
                    "company_name": snap.company_name,
                    "details": snap.details,
                    "infotags": list(snap.infotags),
                    "infotag_ids": [[t, str(i)] for t, i in snap.infotag_ids],
                },
            )
        return (
            snap.contact_id,
            snap.person_id,
            snap.version,
            status,
            "",
            Jsonb({}),
            Jsonb([]),
            snap.photo_hash if sealed is not None else None,
            snap.successor_id,
            sealed,
            sorted({i for _, i in snap.infotag_ids}) if sealed is not None else [],
        )

    async def _apply_intent(self, conn: AsyncConnection[Any], intent: domain.LinkIntent) -> None:
        if intent.kind == "touch":
            await conn.execute(
                "UPDATE sync_links SET generation = generation + 1, next_attempt_at = now(),"
                " attempts = 0 WHERE person_id = %s AND contact_id = %s",
                (intent.person_id, intent.contact_id),
            )
            return
        if intent.kind == "move":
            cur = await conn.execute(
                "SELECT * FROM sync_links WHERE person_id = %s AND contact_id = %s FOR UPDATE",
                (intent.person_id, intent.from_contact_id),
            )
            for row in await cur.fetchall():
                moved = domain.apply_move(_link(row), intent.contact_id, intent.users_on)
                await self._write_switch(conn, moved)
            return
        if intent.user_id is None:
            raise domain.PlanError(f"{intent.kind} intent for no user")
        await conn.execute(
            "INSERT INTO sync_links (user_id, person_id, contact_id) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (intent.user_id, intent.person_id, intent.contact_id),
        )
        cur = await conn.execute(
            "SELECT * FROM sync_links WHERE user_id = %s AND person_id = %s FOR UPDATE",
            (intent.user_id, intent.person_id),
        )
        row = await cur.fetchone()
        if row is None:  # inserted or kept just above, and locked since
            raise domain.PlanError(f"link of {intent.user_id} vanished")
        switched = domain.apply_switch(
            _link(row), intent.contact_id, intent.enabled, intent.version
        )
        await self._write_switch(conn, switched)

    @staticmethod
    async def _write_switch(conn: AsyncConnection[Any], link: domain.Link) -> None:
        await conn.execute(
            "UPDATE sync_links SET contact_id = %s, wanted = %s, suppressed = %s,"
            " generation = generation + 1, next_attempt_at = now(), attempts = 0,"
            " updated_at = now() WHERE user_id = %s AND person_id = %s",
            (link.contact_id, link.wanted, link.suppressed, link.user_id, link.person_id),
        )

    # ------------------------------------------------------------------ catalogue

    async def apply_catalogue(self, event: InfotagEvent) -> bool:
        """Apply a catalogue event once (by version); the items showing the tag or one below
        it are reconciled again. False for a re-delivery."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT version FROM sync_infotags WHERE tag_id = %s FOR UPDATE", (event.tag_id,)
            )
            row = await cur.fetchone()
            if row is not None and event.catalogue_version <= row["version"]:
                return False
            if isinstance(event, InfotagDefined):
                await conn.execute(
                    "INSERT INTO sync_infotags (tag_id, parent_id, name, version)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (tag_id) DO UPDATE SET"
                    " parent_id = excluded.parent_id, name = excluded.name,"
                    " version = excluded.version",
                    (event.tag_id, event.data.parent_id, event.data.name, event.catalogue_version),
                )
            elif row is None:
                raise UnknownInfotagError(
                    f"{event.type} of infotag {event.tag_id}, which was never defined here"
                )
            elif isinstance(event, InfotagRenamed | InfotagMoved):
                column, value = (
                    ("name", event.data.name)
                    if isinstance(event, InfotagRenamed)
                    else ("parent_id", event.data.parent_id)
                )
                await conn.execute(
                    f"UPDATE sync_infotags SET {column} = %s, version = %s WHERE tag_id = %s",
                    (value, event.catalogue_version, event.tag_id),
                )
            else:  # (de)activation does not show in Outlook
                await conn.execute(
                    "UPDATE sync_infotags SET version = %s WHERE tag_id = %s",
                    (event.catalogue_version, event.tag_id),
                )
                return True
            tags = await self._tree(conn)
            await conn.execute(
                "UPDATE sync_links l SET generation = generation + 1, next_attempt_at = now(),"
                " attempts = 0 FROM sync_contacts c WHERE c.tag_ids && %s::uuid[]"
                " AND l.person_id = c.person_id AND l.contact_id = c.contact_id",
                (sorted(subtree(tags, event.tag_id)),),
            )
            return True

    async def infotag_tree(self) -> dict[UUID, TagNode]:
        """Every catalogue tag's name and parent."""
        async with self.pool.connection() as conn:
            return await self._tree(conn)

    @staticmethod
    async def _tree(conn: AsyncConnection[Any]) -> dict[UUID, TagNode]:
        cur = await conn.execute("SELECT tag_id, parent_id, name FROM sync_infotags")
        return {r["tag_id"]: TagNode(r["name"], r["parent_id"]) for r in await cur.fetchall()}

    # ------------------------------------------------------------------ reconciling

    async def claim(self, limit: int, lease_seconds: float) -> list[Claimed]:
        """Claim due links (changed since last reconciled, not leased by a live worker)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE sync_links l SET lease_until = now() + make_interval(secs => %s)"
                " FROM (SELECT user_id, person_id FROM sync_links"
                "       WHERE generation > synced_generation AND next_attempt_at <= now()"
                "         AND (lease_until IS NULL OR lease_until < now())"
                "       ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) due"
                " WHERE l.user_id = due.user_id AND l.person_id = due.person_id"
                " RETURNING l.*",
                (lease_seconds, limit),
            )
            rows = await cur.fetchall()
            if not rows:
                return []
            cur = await conn.execute(
                "SELECT * FROM sync_contacts WHERE person_id = ANY(%s)",
                (list({r["person_id"] for r in rows}),),
            )
            contact_rows = await cur.fetchall()
        # Keys are fetched outside the transaction: the contacts API may be slow.
        try:
            keys = await self.keys.get_many({r["person_id"] for r in contact_rows})
        except Exception:
            # Not reconciled: give the links back at once rather than at lease expiry.
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE sync_links SET lease_until = NULL"
                    " WHERE (user_id, person_id) IN (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
                    ([r["user_id"] for r in rows], [r["person_id"] for r in rows]),
                )
            raise
        tags = await self.infotag_tree()
        snaps = [
            domain.with_current_paths(_snapshot(r, keys[r["person_id"]]), tags)
            for r in contact_rows
        ]
        by_id = {s.contact_id: s for s in snaps}
        claimed = []
        for row in rows:
            link = _link(row)
            ids = sorted((s.contact_id for s in snaps if s.person_id == link.person_id), key=str)
            claimed.append(Claimed(link, by_id[link.contact_id], ids))
        return claimed

    async def save(self, steps: list[Reconciled]) -> list[domain.Link]:
        """Record the links' new states and their outcome events, all in one transaction.

        Only the fields the reconciler changed since the claim are written: the switch
        may have moved meanwhile. done: the claimed generation is reconciled (success or
        parked); otherwise it is retried after retry_in seconds. The leases are released.
        The statements go pipelined: one round trip for the batch, not four per link.
        """
        saved_links = []
        async with self.pool.connection() as conn, conn.transaction(), conn.pipeline():
            for step in steps:
                claimed, link = step.claimed, step.link
                sequence = await self._write_outcomes(conn, link, step.outcomes)
                saved = replace(link, sequence=sequence)
                changed = [
                    n for n in _RECONCILER_FIELDS if getattr(saved, n) != getattr(claimed, n)
                ]
                assignments = "".join(f"{name} = %s, " for name in changed)
                values: list[Any] = [getattr(saved, name) for name in changed]
                if step.done:
                    tail = "synced_generation = %s, next_attempt_at = now()"
                    values.append(link.generation)
                else:
                    tail = (
                        "attempts = attempts + 1,"
                        " next_attempt_at = now() + make_interval(secs => %s)"
                    )
                    values.append(step.retry_in)
                await conn.execute(
                    f"UPDATE sync_links SET {assignments}{tail}, lease_until = NULL,"
                    " updated_at = now() WHERE user_id = %s AND person_id = %s",
                    (*values, link.user_id, link.person_id),
                )
                saved_links.append(saved)
        return saved_links

    async def linked_items(self) -> dict[str, dict[str, tuple[UUID, str]]]:
        """Per user, the Graph ids of linked items (leased or not): {graph_id: (person, id)}."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, person_id, graph_id FROM sync_links"
                " WHERE state = 'linked' AND graph_id IS NOT NULL"
            )
            out: dict[str, dict[str, tuple[UUID, str]]] = {}
            for r in await cur.fetchall():
                out.setdefault(r["user_id"], {})[r["graph_id"]] = (r["person_id"], r["graph_id"])
            return out

    async def mark_deleted_by_user(self, user_id: str, person_id: UUID, graph_id: str) -> bool:
        """The user deleted our item in Outlook: suppress it and have the switch turned off.

        Only a link still linked to that very item and not leased changes (our own
        deletes and re-creations race with the folder listing).
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT * FROM sync_links WHERE user_id = %s AND person_id = %s"
                " AND state = 'linked' AND graph_id = %s"
                " AND (lease_until IS NULL OR lease_until < now()) FOR UPDATE",
                (user_id, person_id, graph_id),
            )
            row = await cur.fetchone()
            if row is None:
                return False
            link = _link(row)
            gone = domain.deleted_by_user(link)
            sequence = await self._write_outcomes(
                conn, gone, [("unlinked", domain.DELETED_IN_OUTLOOK)]
            )
            await conn.execute(
                "UPDATE sync_links SET state = %s, graph_id = NULL, pushed_hash = NULL,"
                " pushed_photo = NULL, pushed_categories = NULL, reason = %s, suppressed = true,"
                " suppressed_contact_id = %s, suppressed_through_version = NULL,"
                " sequence = %s, generation = generation + 1, next_attempt_at = now(),"
                " attempts = 0, updated_at = now() WHERE user_id = %s AND person_id = %s",
                (
                    gone.state,
                    gone.reason,
                    gone.suppressed_contact_id,
                    sequence,
                    user_id,
                    person_id,
                ),
            )
            return True

    async def delta_link(self, mailbox: str, folder_id: str) -> str | None:
        """The deltaLink the folder was last read with, if any."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT delta_link FROM sync_delta_links WHERE mailbox = %s AND folder_id = %s",
                (mailbox, folder_id),
            )
            row = await cur.fetchone()
            return None if row is None else str(row["delta_link"])

    async def save_delta_link(self, mailbox: str, folder_id: str, link: str | None) -> None:
        """Keep the deltaLink to read the folder's next changes with (None: forget it)."""
        async with self.pool.connection() as conn:
            if link is None:
                await conn.execute(
                    "DELETE FROM sync_delta_links WHERE mailbox = %s AND folder_id = %s",
                    (mailbox, folder_id),
                )
                return
            await conn.execute(
                "INSERT INTO sync_delta_links (mailbox, folder_id, delta_link)"
                " VALUES (%s, %s, %s) ON CONFLICT (mailbox, folder_id)"
                " DO UPDATE SET delta_link = EXCLUDED.delta_link, updated_at = now()",
                (mailbox, folder_id, link),
            )

    async def users(self) -> list[str]:
        """Every user with a link."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT DISTINCT user_id FROM sync_links ORDER BY 1")
            return [r["user_id"] for r in await cur.fetchall()]

    async def persons_of(self, contact_ids: list[UUID]) -> dict[UUID, UUID]:
        """The person of each known contact id."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT contact_id, person_id FROM sync_contacts WHERE contact_id = ANY(%s)",
                (contact_ids,),
            )
            return {r["contact_id"]: r["person_id"] for r in await cur.fetchall()}

    async def delete_if_stray(
        self, user_id: str, person_id: UUID, graph_id: str, delete: Callable[[], Awaitable[Any]]
    ) -> bool:
        """Delete an item of ours that is no link's (domain.is_stray), holding the link's lock.

        The lock keeps the reconciler (SKIP LOCKED) from adopting the item meanwhile.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT * FROM sync_links WHERE user_id = %s AND person_id = %s"
                " AND (lease_until IS NULL OR lease_until < now()) FOR UPDATE SKIP LOCKED",
                (user_id, person_id),
            )
            row = await cur.fetchone()
            if row is None or not domain.is_stray(_link(row), graph_id):
                return False
            await delete()
            return True

    @staticmethod
    async def _write_outcomes(
        conn: AsyncConnection[Any],
        link: domain.Link,
        outcomes: list[tuple[SyncStatus, str | None]],
    ) -> int:
        """Add outcome events to the outbox; the link's sequence after them."""
        sequence = link.sequence
        for status, reason in outcomes:
            sequence += 1
            event = OutlookSyncStatusChanged(
                event_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC),
                user_id=link.user_id,
                person_id=link.person_id,
                contact_id=link.contact_id,
                status=status,
                reason=reason,
                sequence=sequence,
            )
            await conn.execute(
                "INSERT INTO sync_outbox (person_id, payload) VALUES (%s, %s)",
                (link.person_id, Jsonb(json.loads(event.model_dump_json()))),
            )
        return sequence

    async def progress(self, link: domain.Link) -> None:
        """Record the intermediate state (linking) before the Graph call."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE sync_links SET state = %s, updated_at = now()"
                " WHERE user_id = %s AND person_id = %s",
                (link.state, link.user_id, link.person_id),
            )

    async def mark_all_dirty(self, user_id: str | None = None) -> int:
        """Reconcile every link again (e.g. after Graph was restored); returns how many."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE sync_links SET generation = generation + 1, next_attempt_at = now(),"
                " attempts = 0 WHERE %s::text IS NULL OR user_id = %s",
                (user_id, user_id),
            )
            return cur.rowcount

    async def pending(self) -> int:
        """How many links wait to be reconciled."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM sync_links WHERE generation > synced_generation"
            )
            row = await cur.fetchone()
            return int(row["n"]) if row else 0

    async def counts(self) -> dict[str, int | None]:
        """Links waiting, links failed, outcomes not yet published (the worker's /status)."""
        async with self.pool.connection() as conn:
            return await _counts(conn)

    async def links(self, person_ids: list[UUID] | None = None) -> list[domain.Link]:
        """Links, for inspection and tests."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM sync_links WHERE %s::uuid[] IS NULL OR person_id = ANY(%s)"
                " ORDER BY user_id, person_id",
                (person_ids, person_ids),
            )
            return [_link(r) for r in await cur.fetchall()]

    # ------------------------------------------------------------------ erasure

    async def unerased_persons(self) -> list[UUID]:
        """Persons whose copy here is not erased yet (their keys are checked now and then)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT person_id FROM sync_contacts WHERE status <> 'erased'"
            )
            return [r["person_id"] for r in await cur.fetchall()]

    async def purge_erased(self, person_id: UUID) -> int:
        """Drop an erased person's sealed copy and Graph error texts; reconcile their links.

        Their links then plan deletions of their Outlook items, whatever the consumer
        has applied. Returns how many contact rows were purged.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE sync_contacts SET status = 'erased', company_name = '',"
                " details = '{}'::jsonb, infotags = '[]'::jsonb, photo_hash = NULL,"
                " sealed = NULL, tag_ids = '{}' WHERE person_id = %s AND status <> 'erased'",
                (person_id,),
            )
            purged = cur.rowcount
            # Error texts from Graph may quote the values that were pushed.
            await conn.execute(
                "UPDATE sync_links SET reason = NULL WHERE person_id = %s"
                " AND reason LIKE 'Graph refused:%%'",
                (person_id,),
            )
            await conn.execute(
                "UPDATE sync_outbox SET payload = jsonb_set(payload, '{reason}', 'null')"
                " WHERE person_id = %s AND payload->>'reason' LIKE 'Graph refused:%%'",
                (person_id,),
            )
            await conn.execute(
                "UPDATE sync_links SET generation = generation + 1, next_attempt_at = now(),"
                " attempts = 0 WHERE person_id = %s",
                (person_id,),
            )
            return purged

    # ------------------------------------------------------------------ outbox

    async def drain_outbox(self, publish: Any, limit: int = 200) -> int:
        """Publish outbox rows in order and delete them once Kafka acknowledged; returns count.

        `publish(rows)` gets [(person_id, payload)] and returns after every ack. One
        publisher at a time (advisory lock), so each person's outcomes stay in order.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT pg_try_advisory_xact_lock(%s) AS ok", (locks.SYNC_OUTBOX_PUBLISHER,)
            )
            row = await cur.fetchone()
            if not row or not row["ok"]:
                return 0
            cur = await conn.execute(
                "SELECT id, person_id, payload FROM sync_outbox ORDER BY id LIMIT %s", (limit,)
            )
            rows = await cur.fetchall()
            if not rows:
                return 0
            await publish([(r["person_id"], r["payload"]) for r in rows])
            await conn.execute(
                "DELETE FROM sync_outbox WHERE id = ANY(%s)", ([r["id"] for r in rows],)
            )
            return len(rows)


_COUNTS = """
SELECT (SELECT count(*) FROM sync_links WHERE generation > synced_generation) AS pending_links,
       (SELECT count(*) FROM sync_links WHERE state = 'failed') AS failed_links,
       (SELECT count(*) FROM sync_outbox) AS unpublished_outcomes
"""


async def _counts(conn: AsyncConnection[dict[str, Any]]) -> dict[str, int | None]:
    cur = await conn.execute("SELECT to_regclass('sync_outbox') IS NOT NULL AS made")
    made = await cur.fetchone()
    if not (made and made["made"]):  # the worker has not run yet
        return dict.fromkeys(("pending_links", "failed_links", "unpublished_outcomes"))
    cur = await conn.execute(_COUNTS)
    row = await cur.fetchone()
    return {k: int(v) for k, v in (row or {}).items()}


async def sync_counts(dsn: str) -> dict[str, int | None]:
    """SyncStore.counts without a store (and without creating its tables)."""
    async with await AsyncConnection.connect(
        dsn, connect_timeout=5, autocommit=True, row_factory=dict_row
    ) as conn:
        return await _counts(conn)


async def resync_links(dsn: str, user_id: str | None = None) -> int:
    """Mark every link (of one user, if named) to be reconciled again; how many."""
    store = await SyncStore.open(dsn, max_size=1)
    try:
        return await store.mark_all_dirty(user_id)
    finally:
        await store.close()
