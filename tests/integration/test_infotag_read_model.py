"""The infotag catalogue on the bus and in the read model, on the real servers: a renamed or
moved tag shows renamed on the Infotags tab and in search, and a rebuild makes the same."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg

from services.contacts.domain import Actor
from services.contacts.export import StoreReader
from services.projections.rebuild import rebuild_contacts
from services.projections.sql import contacts as contacts_sql
from shared.auth import mint_token
from shared.contract.infotags import CATALOGUE_ID, parse_infotag_event, tag_id_for_path
from shared.kafka import read_topic
from shared.settings import KontaktSettings
from tests.pipeline import Pipeline, pipeline


def admin_client(p: Pipeline) -> httpx.AsyncClient:
    token = mint_token(p.settings, "root", ["admin"])
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{p.settings.api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def define(admin: httpx.AsyncClient, name: str, parent_id: str | None = None) -> str:
    response = await admin.post("/infotags", json={"name": name, "parent_id": parent_id})
    assert response.status_code == 201, response.text
    return str(response.json()["tag_id"])


async def create(p: Pipeline, first: str = "Karen") -> str:
    body = {"company_id": str(uuid4()), "company_name": "Acme", "first_names": first}
    response = await p.command.post("/contacts", json={**body, "last_names": "Jensen"})
    assert response.status_code == 201, response.text
    return str(response.json()["contact_id"])


async def place(p: Pipeline, cid: str, **tag: str) -> None:
    response = await p.command.post(f"/contacts/{cid}/infotags", json=tag)
    assert response.status_code == 200, response.text


async def tab(p: Pipeline, cid: str) -> list[dict[str, Any]]:
    response = await p.query.get(f"/contacts/{cid}/infotags")
    assert response.status_code == 200, response.text
    return list(response.json())


async def found(p: Pipeline, infotag: str) -> set[str]:
    response = await p.query.get("/contacts", params={"infotag": infotag, "limit": 200})
    assert response.status_code == 200, response.text
    return {c["contact_id"] for c in response.json()["items"]}


async def test_catalogue_changes_go_on_infotags_events_in_order_under_one_key(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings, worker=False) as p, admin_client(p) as admin:
        root = await define(admin, "Kunde")
        child = await define(admin, "Guld", root)
        assert (await admin.patch(f"/infotags/{child}", json={"name": "Gold"})).status_code == 200
        moved = await admin.patch(f"/infotags/{child}", json={"parent_id": None})
        assert moved.status_code == 200, moved.text
        assert (await admin.post(f"/infotags/{child}/deactivate")).status_code == 200
        assert (await admin.post(f"/infotags/{child}/reactivate")).status_code == 200
        await p.relay()
        records = await read_topic(p.settings.kafka_bootstrap, p.settings.infotags_topic)
        events = [parse_infotag_event(r.value) for r in records]
        assert [e.type for e in events] == [
            "InfotagDefined",
            "InfotagDefined",
            "InfotagRenamed",
            "InfotagMoved",
            "InfotagDeactivated",
            "InfotagReactivated",
        ]
        assert {r.key for r in records} == {str(CATALOGUE_ID).encode()}
        versions = [e.catalogue_version for e in events]
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
        assert len({e.event_id for e in events}) == len(events)
        assert [str(e.tag_id) for e in events] == [root, child, child, child, child, child]
        defined = json.loads(records[1].value)["data"]
        assert defined == {"name": "Guld", "parent_id": root}
        assert json.loads(records[2].value)["data"] == {"name": "Gold"}
        assert json.loads(records[3].value)["data"] == {"parent_id": None}
        assert events[0].actor == "root"
        # Nothing of the catalogue on the contacts topic.
        contacts_records = await read_topic(p.settings.kafka_bootstrap, p.settings.contacts_topic)
        assert all(json.loads(r.value)["type"].startswith("Contact") for r in contacts_records)


async def test_a_renamed_or_moved_tag_shows_renamed_on_the_tab_and_in_search(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p, admin_client(p) as admin:
        kunde = await define(admin, "Kunde")
        guld = await define(admin, "Guld", kunde)
        solv = await define(admin, "Sølv", kunde)
        partner = await define(admin, "Partner")
        karen, ole, else_ = await create(p), await create(p, "Ole"), await create(p, "Eva")
        await place(p, karen, tag_id=guld)
        await place(p, ole, tag="Kunde/Sølv")
        await place(p, else_, tag_id=partner)
        await p.settle()
        assert [t["tag"] for t in await tab(p, karen)] == ["Kunde/Guld"]
        assert await found(p, "Kunde") == {karen, ole}
        assert await found(p, "kunde/guld") == {karen}  # paths compare case-insensitively
        assert await found(p, kunde) == {karen, ole}  # by id: the tag and its descendants
        assert await found(p, "Kund") == set()  # a path, not a prefix of a name

        renamed = await admin.patch(f"/infotags/{kunde}", json={"name": "Kunder"})
        assert renamed.status_code == 200, renamed.text
        moved = await admin.patch(f"/infotags/{solv}", json={"parent_id": partner})
        assert moved.status_code == 200, moved.text
        assert (await admin.post(f"/infotags/{guld}/deactivate")).status_code == 200
        await p.settle()

        [shown] = await tab(p, karen)
        assert shown["tag"] == "Kunder/Guld" and shown["placed_as"] == "Kunde/Guld"
        assert shown["tag_id"] == guld and shown["active"] is False
        assert [t["tag"] for t in await tab(p, ole)] == ["Partner/Sølv"]
        assert await found(p, "Kunder") == {karen}  # an inactive tag is still found
        assert await found(p, "Kunde") == set()
        assert await found(p, "Partner") == {ole, else_}
        assert await found(p, partner) == {ole, else_}
        assert await found(p, solv) == {ole}
        # The write side shows the same current paths.
        contact = (await p.command.get(f"/contacts/{karen}")).json()
        assert [(t["tag"], t["active"]) for t in contact["infotags"]] == [("Kunder/Guld", False)]


async def test_a_name_placed_before_the_catalogue_follows_its_carried_over_tag(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p, admin_client(p) as admin:
        assert p.contacts is not None
        cid = await create(p)
        # A placement by name as stored before the catalogue: no tag id on the event.
        p.contacts.add_infotag(Actor("alice", "old"), UUID(cid), "Kunde/Guld")
        p.contacts.backfill_infotags()
        carried = tag_id_for_path("Kunde/Guld")
        parent = p.contacts.infotag_catalogue().tags[carried]["parent_id"]
        assert (
            await admin.patch(f"/infotags/{parent}", json={"name": "Kunder"})
        ).status_code == 200
        await p.settle()
        [shown] = await tab(p, cid)
        assert (shown["tag"], shown["tag_id"]) == ("Kunder/Guld", str(carried))
        assert await found(p, "Kunder") == {cid}


async def test_a_rebuild_makes_the_same_catalogue_model_as_the_worker(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p, admin_client(p) as admin:
        assert p.contacts is not None
        root = await define(admin, "Branche")
        child = await define(admin, "IT", root)
        await admin.patch(f"/infotags/{child}", json={"name": "Software"})
        await admin.post(f"/infotags/{root}/deactivate")
        cid = await create(p)
        await place(p, cid, tag_id=child)
        await p.settle()
        async with p.pool.acquire() as conn:
            live = await contacts_sql.dump(conn, contacts_sql.LIVE)
        report = await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
        async with p.pool.acquire() as conn:
            rebuilt = await contacts_sql.dump(conn, contacts_sql.LIVE)
        assert report.events >= 5
        assert rebuilt["infotag_catalogue"] == live["infotag_catalogue"]
        assert len(live["infotag_catalogue"]) == 2
        assert [t["tag"] for t in await tab(p, cid)] == ["Branche/Software"]


async def test_a_catalogue_message_it_cannot_apply_is_dead_lettered_and_the_next_applies(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p, admin_client(p) as admin:
        assert p.worker is not None
        stray = {
            "event_id": str(uuid4()),
            "type": "InfotagRenamed",
            "schema_version": 1,
            "occurred_at": "2026-11-01T09:00:00+00:00",
            "actor": "root",
            "correlation_id": "x",
            "tag_id": str(uuid4()),  # never defined
            "catalogue_version": 1,
            "global_position": 1,
            "data": {"name": "Ghost"},
        }
        topic = p.settings.infotags_topic
        await p.produce(topic, json.dumps(stray).encode(), key=str(CATALOGUE_ID).encode())
        await p.produce(topic, b"not json", key=str(CATALOGUE_ID).encode())
        tag = await define(admin, "Efter")
        cid = await create(p)
        await place(p, cid, tag_id=tag)
        await p.settle()
        assert [t["tag"] for t in await tab(p, cid)] == ["Efter"]
        assert p.worker.stats.dead_lettered == 2


async def test_catalogue_events_stored_before_the_relay_published_them_are_published_once(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings, worker=False) as p, admin_client(p) as admin:
        assert p.contacts is not None
        tag = await define(admin, "Før")
        cid = await create(p)
        # A store relayed by a relay that did not publish the catalogue: its position is
        # past the catalogue's events, and it never published them.
        newest = StoreReader(p.contacts).max_position()
        async with await psycopg.AsyncConnection.connect(p.settings.pg_dsn()) as conn:
            await conn.execute(
                "INSERT INTO relay_positions (name, position) VALUES (%s, %s)",
                (p.settings.contacts_topic, newest),
            )
            await conn.commit()
        await place(p, cid, tag_id=tag)
        await p.relay()
        await p.relay()  # a second run publishes them no more
        records = await read_topic(p.settings.kafka_bootstrap, p.settings.infotags_topic)
        assert [
            (parse_infotag_event(r.value).type, str(parse_infotag_event(r.value).tag_id))
            for r in records
        ] == [("InfotagDefined", tag)]
        contacts_records = await read_topic(p.settings.kafka_bootstrap, p.settings.contacts_topic)
        assert [json.loads(r.value)["type"] for r in contacts_records] == ["InfotagAdded"]
