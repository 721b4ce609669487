"""The sync store on the real PostgreSQL: a run of events applied together or one by one."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from services.sync.domain import VersionGapError
from services.sync.sealing import PersonKeys, unseal
from services.sync.store import SyncStore
from shared.contract.contacts import ContactEvent
from shared.settings import KontaktSettings
from tests.support import isolated
from tests.unit.test_sync_domain import created, event

KEY = b"k" * 32


async def _open(settings: KontaktSettings) -> SyncStore:
    async def fetch(person_id: UUID) -> bytes | None:
        return KEY

    return await SyncStore.open(settings.pg_dsn(), max_size=2, keys=PersonKeys(fetch, 60))


async def _state(store: SyncStore) -> tuple[list[Any], list[Any]]:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT contact_id, version, status, sealed FROM sync_contacts ORDER BY contact_id"
        )
        # The sealed blobs differ by their nonces: compare what they hold.
        contacts = [
            {**r, "sealed": unseal(KEY, r["contact_id"], bytes(r["sealed"]))}
            for r in await cur.fetchall()
        ]
        cur = await conn.execute(
            "SELECT user_id, person_id, contact_id, wanted, generation > synced_generation"
            " AS due FROM sync_links ORDER BY user_id, person_id"
        )
        return contacts, await cur.fetchall()


def _run() -> list[ContactEvent]:
    a, pa, b, pb = uuid4(), uuid4(), uuid4(), uuid4()
    changed = event("ContactDetailsChanged", a, pa, 2, changes={"job_title": "CFO"})
    return [
        created(a, pa),
        changed,
        event("OutlookSyncToggled", a, pa, 3, user_id="eve", enabled=True, reason=None),
        created(b, pb, outlook_sync_users=[]),
        event("ContactDetailsChanged", a, pa, 4, changes={"department": "Board"}),
        changed,  # a re-delivery
        event("OutlookSyncToggled", a, pa, 5, user_id="bob", enabled=False, reason=None),
        event("ContactArchived", b, pb, 2, reason=None),
    ]


async def test_a_run_applied_together_leaves_what_applying_each_in_turn_leaves(
    settings: KontaktSettings,
) -> None:
    events = _run()
    with isolated(settings) as one, isolated(settings) as together:
        each, all_at_once = await _open(one), await _open(together)
        try:
            for e in events:
                await each.apply(e)
            await all_at_once.apply_together(events)
            assert await _state(each) == await _state(all_at_once)
            contacts, links = await _state(all_at_once)
            by_id = {c["contact_id"]: c for c in contacts}
            a, b = by_id[events[0].contact_id], by_id[events[3].contact_id]
            assert (a["version"], a["status"], b["version"], b["status"]) == (
                5,
                "current",
                2,
                "archived",
            )
            assert a["sealed"]["details"]["job_title"] == "CFO"
            assert a["sealed"]["details"]["department"] == "Board"
            assert sorted((r["user_id"], r["wanted"], r["due"]) for r in links) == [
                ("bob", False, True),
                ("eve", True, True),
            ]
        finally:
            await each.close()
            await all_at_once.close()


async def test_a_gap_in_a_run_applies_none_of_it(settings: KontaktSettings) -> None:
    a, pa = uuid4(), uuid4()
    with isolated(settings) as own:
        store = await _open(own)
        try:
            await store.apply(created(a, pa))
            before = await _state(store)
            run = [
                event("ContactDetailsChanged", a, pa, 2, changes={"job_title": "CFO"}),
                event("ContactDetailsChanged", a, pa, 4, changes={"job_title": "CEO"}),
            ]
            with pytest.raises(VersionGapError):
                await store.apply_together(run)
            assert await _state(store) == before
        finally:
            await store.close()
