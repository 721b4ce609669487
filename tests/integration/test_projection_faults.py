"""The projection worker under bad input and faults, on the real servers.

Values the edge refuses today but the store may hold are applied cleaned; a
lost or skipped contact event is repaired from the store; an outage of the
contacts API or of PostgreSQL is waited out; poison on every consumed topic costs that message
alone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from devstack import stack as launcher
from services.contacts.api_main import create_app
from services.contacts.domain import Actor
from services.contacts.export import StoreReader
from services.projections.rebuild import rebuild_contacts
from services.projections.sql import contacts as contacts_sql
from shared.kafka import read_topic
from shared.settings import KontaktSettings
from tests.integration.test_projection_rebuild import dump
from tests.pipeline import Pipeline, Server, pipeline, wait_no_lag
from tests.support import eventually

ALICE = Actor("alice", "faults")
FAMILIES = ["contacts", "activities", "items", "sync-status"]


def create(p: Pipeline, last_names: str, **details: str) -> Any:
    """Create a contact through the application layer (not the HTTP edge)."""
    assert p.contacts is not None
    return p.contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name="Faults A/S",
        details={"first_names": "Nora", "last_names": last_names, **details},
    )


def email(message_id: str, sender: str, to: list[str], subject: str) -> bytes:
    """An EmailLogged message of the activities service."""
    at = "2026-11-01T09:00:00Z"
    return json.dumps(
        {
            "event_id": str(uuid4()),
            "type": "EmailLogged",
            "occurred_at": at,
            "message_id": message_id,
            "from": sender,
            "to": to,
            "cc": [],
            "subject": subject,
            "sent_at": at,
        }
    ).encode()


async def tags_of(p: Pipeline, cid: UUID) -> list[str]:
    """The infotags the query API shows for a contact."""
    response = await p.query.get(f"/contacts/{cid}/infotags")
    return [t["tag"] for t in response.json()] if response.status_code == 200 else []


async def contract_event(p: Pipeline, cid: UUID, version: int) -> dict[str, Any]:
    """A contact's event at a version, in contract form, from the contacts API."""
    response = await p.command.get(f"/contacts/{cid}/events", params={"after_version": version - 1})
    assert response.status_code == 200, response.text
    (event,) = [e for e in response.json() if e["aggregate_version"] == version]
    return dict(event)


async def test_a_contact_stored_with_a_nul_in_its_work_email_shows_on_every_tab_cleaned(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        s = p.settings
        tag = uuid4().hex[:6]
        created = await asyncio.to_thread(
            create, p, f"Nulsen{tag}", work_email=f"nora.\x00{tag}@acme.example"
        )
        assert p.contacts is not None
        await asyncio.to_thread(p.contacts.add_infotag, ALICE, created.contact_id, "Nul/Tagged")
        clean_address = f"nora.{tag}@acme.example"
        # Other services' text with refused characters too: a NUL and a lone surrogate.
        raw = email(f"<{tag}@x>", "boss@us.example", [clean_address], "Re: \x00 møde")
        raw = raw.replace(b"m\\u00f8de", b"m\\u00f8de \\ud800")
        await p.produce(s.activities_topic, raw)
        await p.settle()
        assert p.worker is not None and p.worker.stats.dead_lettered == 0

        cid = created.contact_id
        details = (await p.query.get(f"/contacts/{cid}")).json()
        assert details["work_email"] == clean_address
        listed = (await p.query.get("/contacts", params={"name": f"nulsen{tag}"})).json()
        assert [c["contact_id"] for c in listed["items"]] == [str(cid)]
        tagged = (await p.query.get("/contacts", params={"infotag": "Nul/Tagged"})).json()
        assert str(cid) in [c["contact_id"] for c in tagged["items"]]
        activities = (await p.query.get(f"/contacts/{cid}/activities")).json()
        assert [a["subject"] for a in activities["items"]] == ["Re:  møde "]
        assert await tags_of(p, cid) == ["Nul/Tagged"]
        employments = (await p.query.get(f"/contacts/{cid}/employments")).json()
        assert [e["contact_id"] for e in employments] == [str(cid)]
        for tab in ("opportunities", "campaigns", "projects"):
            assert (await p.query.get(f"/contacts/{cid}/{tab}")).status_code == 200
        # The rebuild cleans the same way: it equals the incremental model row for row.
        incremental = await dump(s)
        await rebuild_contacts(s, p.pool, StoreReader(p.contacts))
        assert await dump(s) == incremental


async def test_a_contact_whose_created_event_was_lost_is_repaired_from_the_store(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        assert p.contacts is not None and p.worker is not None
        tag = uuid4().hex[:6]
        created = await asyncio.to_thread(create, p, f"Lost{tag}", job_title="Buyer")
        cid = created.contact_id
        await p.settle()
        # The read model lost the contact (as if its ContactCreated had been dead-lettered).
        async with p.pool.acquire() as conn:
            for table in ("infotags", "contact_addresses", "contacts"):
                await conn.execute(
                    f"DELETE FROM {contacts_sql.LIVE}.{table} WHERE contact_id = $1", cid
                )
        assert (await p.query.get(f"/contacts/{cid}")).status_code == 404
        # Only later events come: the worker fetches what it lacks from the store first.
        await asyncio.to_thread(p.contacts.add_infotag, ALICE, cid, "After/Loss")
        await asyncio.to_thread(p.contacts.change_details, ALICE, cid, {"job_title": "CFO"})
        await p.settle()
        assert p.worker.stats.dead_lettered == 0 and p.worker.stats.repairs >= 1
        details = (await p.query.get(f"/contacts/{cid}")).json()
        assert details["last_names"] == f"Lost{tag}" and details["job_title"] == "CFO"
        assert details["version"] == 3
        assert await tags_of(p, cid) == ["After/Loss"]
        listed = (await p.query.get("/contacts", params={"name": f"lost{tag}"})).json()
        assert [c["contact_id"] for c in listed["items"]] == [str(cid)]
        incremental = await dump(p.settings)
        await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
        assert await dump(p.settings) == incremental


async def test_a_version_gap_is_filled_from_the_store_before_the_event_applies(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        assert p.contacts is not None and p.worker is not None
        created = await asyncio.to_thread(create, p, "Gap")
        cid = created.contact_id
        await p.settle()
        await asyncio.to_thread(p.contacts.add_infotag, ALICE, cid, "Second")
        await asyncio.to_thread(p.contacts.add_infotag, ALICE, cid, "Third")
        # Version 3 arrives, version 2 never does (nothing is relayed).
        third = await contract_event(p, cid, 3)
        await p.produce(
            p.settings.contacts_topic, json.dumps(third).encode(), str(created.person_id).encode()
        )

        async def both() -> bool:
            return await tags_of(p, cid) == ["Second", "Third"]

        await eventually(both, "the gap to be filled")
        assert p.worker.stats.dead_lettered == 0 and p.worker.stats.repairs >= 1
        assert (await p.query.get(f"/contacts/{cid}")).json()["version"] == 3


async def test_an_outage_of_the_contacts_api_during_a_repair_dead_letters_nothing(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        assert p.contacts is not None and p.worker is not None
        s = p.settings
        created = await asyncio.to_thread(create, p, "Outage")
        cid = created.contact_id
        await p.settle()
        await asyncio.to_thread(p.contacts.add_infotag, ALICE, cid, "Second")
        await asyncio.to_thread(p.contacts.add_infotag, ALICE, cid, "Third")
        third = await contract_event(p, cid, 3)
        await p.contacts_api.stop()
        await p.produce(
            s.contacts_topic, json.dumps(third).encode(), str(created.person_id).encode()
        )
        worker = p.worker

        async def waited() -> bool:
            return worker.stats.outages >= 3

        await eventually(waited, "the worker to meet the outage")
        assert worker.stats.dead_lettered == 0
        assert await tags_of(p, cid) == []
        # The API comes back: the repair goes through, the event applies, no dead letter.
        p.contacts_api = Server(create_app(s), s.api_port)
        await p.contacts_api.start()
        await wait_no_lag(s, ["contacts"], timeout=120)
        assert await tags_of(p, cid) == ["Second", "Third"]
        assert worker.stats.dead_lettered == 0
        assert await read_topic(s.kafka_bootstrap, s.dead_letter_topic) == []


async def test_poison_on_every_consumed_topic_costs_that_message_alone(
    isolated_settings: KontaktSettings,
) -> None:
    own = isolated_settings.model_copy(update={"projection_max_attempts": 3})
    async with pipeline(own) as p:
        assert p.contacts is not None and p.worker is not None
        s = p.settings
        created = await asyncio.to_thread(create, p, "Poison")
        key = str(created.person_id).encode()
        at = "2026-11-01T09:00:00Z"
        refused_contact = {  # a known shape, with a position PostgreSQL's bigint refuses
            "event_id": str(uuid4()),
            "type": "ContactCreated",
            "schema_version": 1,
            "occurred_at": at,
            "actor": "a",
            "correlation_id": "c",
            "contact_id": str(uuid4()),
            "person_id": str(uuid4()),
            "aggregate_version": 1,
            "global_position": 2**63,
            "data": {
                "company_id": str(uuid4()),
                "company_name": "X",
                "first_names": "X",
                "last_names": "X",
                "job_title": None,
                "department": None,
                "work_email": None,
                "private_email": None,
                "work_phone": None,
                "private_phone": None,
                "started_on": None,
                "predecessor_id": None,
                "infotags": [],
                "outlook_sync_users": [],
                "photo": None,
            },
        }
        refused_outcome = {  # a sequence beyond bigint
            "event_id": str(uuid4()),
            "type": "OutlookSyncStatusChanged",
            "occurred_at": at,
            "user_id": "u",
            "person_id": str(uuid4()),
            "contact_id": str(uuid4()),
            "status": "failed",
            "reason": "x",
            "sequence": 2**63,
        }
        poison: dict[str, list[bytes]] = {
            t: [b"\xff\x00 not json", json.dumps({"type": "Nonsense", "x": 1}).encode()]
            for t in (
                s.contacts_topic,
                s.activities_topic,
                s.opportunities_topic,
                s.campaigns_topic,
                s.projects_topic,
                s.sync_events_topic,
            )
        }
        poison[s.contacts_topic].append(json.dumps(refused_contact).encode())
        poison[s.sync_events_topic].append(json.dumps(refused_outcome).encode())
        sent: dict[tuple[str, int, int], bytes] = {}
        for topic, values in poison.items():
            for value in values:
                meta = await p.producer.send_and_wait(topic, value, key=key)
                sent[(topic, meta.partition, meta.offset)] = value

        # After the poison, good messages on the same partitions (same key).
        item_ids = {
            t: uuid4() for t in (s.opportunities_topic, s.campaigns_topic, s.projects_topic)
        }
        for topic, item_id in item_ids.items():
            good_item = {
                "event_id": str(uuid4()),
                "type": "Created",
                "occurred_at": at,
                "item_id": str(item_id),
                "title": "After poison",
                "status": "open",
            }
            await p.produce(topic, json.dumps(good_item).encode(), key)
        await p.produce(s.activities_topic, email("<after@x>", "a@us.example", [], "ok"), key)
        outcome = {**refused_outcome, "person_id": str(created.person_id), "sequence": 1}
        await p.produce(s.sync_events_topic, json.dumps(outcome).encode(), key)
        await p.settle(FAMILIES)  # the relay publishes the contact, keyed by its person

        letters = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
        found = {
            (
                r.header("x-original-topic") or "",
                int(r.header("x-original-partition") or -1),
                int(r.header("x-original-offset") or -1),
            ): r
            for r in letters
        }
        assert set(found) == set(sent), (sorted(found), sorted(sent))
        assert len(letters) == len(sent)
        for where, record in found.items():
            assert record.value == sent[where]
            assert record.header("x-error") and record.header("x-failed-at")
        refusals = [r for r in letters if "out of int64 range" in (r.header("x-error") or "")]
        assert len(refusals) == 2
        # Each refusal was tried the bounded number of times (here 3), then set aside.
        assert p.worker.stats.retries >= 2 * (3 - 1)

        assert (await p.query.get(f"/contacts/{created.contact_id}")).status_code == 200
        async with p.pool.acquire() as conn:
            for item_id in item_ids.values():
                title = await conn.fetchval(
                    "SELECT title FROM ledger.items WHERE item_id = $1", item_id
                )
                assert title == "After poison"
            assert await conn.fetchval(
                "SELECT count(*) FROM ledger.emails WHERE message_id = '<after@x>'"
            )
            assert await conn.fetchval(
                "SELECT status FROM ledger.outlook_sync_status WHERE person_id = $1",
                created.person_id,
            )


async def test_postgresql_refusing_connections_is_waited_out_and_nothing_dead_lettered(
    isolated_settings: KontaktSettings, stack: launcher.StackInfo
) -> None:
    async with pipeline(isolated_settings) as p:
        assert p.worker is not None
        s = p.settings
        worker = p.worker
        await p.settle()
        admin = await asyncpg.connect(stack.pg_dsn("postgres"))
        database = s.pg_database
        try:
            # The database goes away under the worker: its connections are cut and new
            # ones refused.
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            await p.produce(
                s.activities_topic, email("<outage@x>", "a@us.example", [], "During"), b"k"
            )

            async def waited() -> bool:
                return worker.stats.outages >= 3

            await eventually(waited, "the worker to meet the outage")
            assert worker.stats.dead_lettered == 0
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await admin.close()
        await wait_no_lag(s, ["activities"], timeout=120)
        async with p.pool.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT subject FROM ledger.emails WHERE message_id = '<outage@x>'"
                )
                == "During"
            )
        assert worker.stats.dead_lettered == 0
        assert await read_topic(s.kafka_bootstrap, s.dead_letter_topic) == []


async def test_a_header_that_is_not_utf8_neither_stalls_the_worker_nor_loses_the_message(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        s = p.settings
        key = uuid4().bytes
        # FastStream decodes header values as UTF-8 before any handler runs.
        headers = [("x-producer", b"\xff\x00 not utf-8"), ("x-null", None)]
        await p.producer.send_and_wait(
            s.activities_topic,
            email("<odd-headers@x>", "a@us.example", [], "odd"),
            key=key,
            headers=headers,
        )
        await p.produce(s.activities_topic, email("<after-odd@x>", "a@us.example", [], "ok"), key)
        await p.settle(["activities"])
        async with p.pool.acquire() as conn:
            stored = await conn.fetch(
                "SELECT message_id FROM ledger.emails WHERE message_id LIKE '<%odd%@x>'"
            )
        assert sorted(r["message_id"] for r in stored) == ["<after-odd@x>", "<odd-headers@x>"]
        assert await read_topic(s.kafka_bootstrap, s.dead_letter_topic) == []


async def test_json_nested_beyond_the_recursion_limit_is_dead_lettered_and_the_next_applies(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        s = p.settings
        key = uuid4().bytes
        deep = {
            "array": b"[" * 200_000 + b"]" * 200_000,
            "escaped": b'["\\u0041",' * 5_000 + b"1" + b"]" * 5_000,  # the standard parser
        }
        sent = {}
        for kind, value in deep.items():
            meta = await p.producer.send_and_wait(s.activities_topic, value, key=key)
            sent[(meta.partition, meta.offset)] = kind
        await p.produce(s.activities_topic, email("<after-deep@x>", "a@us.example", [], "ok"), key)
        await p.settle(["activities"])
        async with p.pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM ledger.emails WHERE message_id = '<after-deep@x>'"
            )
        letters = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
        where = {
            (int(r.header("x-original-partition") or -1), int(r.header("x-original-offset") or -1))
            for r in letters
        }
        assert where == set(sent) and len(letters) == len(sent)
