"""The History tab ("Mere..."), field provenance and the photo list, on the real servers."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from services.contacts.export import StoreReader
from services.projections.rebuild import rebuild_contacts
from services.projections.sql import contacts as contacts_sql
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.pipeline import Pipeline, pipeline

#: Every personal value the story gives Karen: none may stay once she is erased.
PERSONAL = (
    "Karen",
    "Jensen",
    "Holm",
    "kj@acme.example",
    "karen@home.example",
    "karen@beta.example",
    "+45 11 22 33 44",
)


def as_user(
    p: Pipeline, user: str, channel: str | None = None, roles: Any = None
) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {mint_token(p.settings, user, roles or [])}"}
    if channel:
        headers["X-Kontakt-Channel"] = channel
    return headers


def changes_of(item: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["old"], c["new"]) for c in item["changes"]}


async def test_each_change_shows_old_new_actor_and_channel_and_provenance_names_who(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        c, q = p.command, p.query
        company = str(uuid4())
        created = await c.post(
            "/contacts",
            json={
                "company_id": company,
                "company_name": "Acme A/S",
                "first_names": "Karen",
                "last_names": "Jensen",
                "job_title": "Buyer",
                "work_email": "kj@acme.example",
                "private_email": "karen@home.example",
                "private_phone": "+45 11 22 33 44",
            },
            headers=as_user(p, "importer", "import"),
        )
        assert created.status_code == 201, created.text
        cid = created.json()["contact_id"]
        renamed = await c.patch(
            f"/contacts/{cid}", json={"last_names": "Holm"}, headers=as_user(p, "bob")
        )
        assert renamed.status_code == 200, renamed.text
        tagged = await c.post(
            f"/contacts/{cid}/infotags",
            json={"tag": "Kunde/Guld"},
            headers=as_user(p, "alice", "outlook-sync"),
        )
        assert tagged.status_code == 200, tagged.text
        first_photo = image_bytes("PNG", (9, 9), "navy")
        second_photo = image_bytes("PNG", (5, 7), "red")
        for photo in (first_photo, second_photo):
            put = await c.put(
                f"/contacts/{cid}/photo", content=photo, headers=as_user(p, "carol", "service")
            )
            assert put.status_code == 200, put.text
        titled = await c.patch(f"/contacts/{cid}", json={"job_title": "Head of buying"})
        assert titled.status_code == 200, titled.text
        moved = await c.post(
            f"/contacts/{cid}/job-changes",
            json={
                "company_id": str(uuid4()),
                "company_name": "Beta ApS",
                "job_title": "CFO",
                "work_email": "karen@beta.example",
                "effective_on": "2026-11-15",
            },
            headers=as_user(p, "dave"),
        )
        assert moved.status_code == 201, moved.text
        new_id = moved.json()["contact_id"]
        await p.settle()

        page = (await q.get(f"/contacts/{cid}/history")).json()
        items = page["items"]
        assert page["next_before_version"] is None
        assert [(i["version"], i["type"], i["actor"], i["channel"]) for i in items] == [
            (7, "JobChanged", "dave", "api"),
            (6, "ContactDetailsChanged", "alice", "api"),
            (5, "PhotoChanged", "carol", "service"),
            (4, "PhotoChanged", "carol", "service"),
            (3, "InfotagAdded", "alice", "outlook-sync"),
            (2, "ContactDetailsChanged", "bob", "api"),
            (1, "ContactCreated", "importer", "import"),
        ]
        job, title, photo2, photo1, tag, rename, create = (changes_of(i) for i in items)
        assert job == {"ended_on": (None, "2026-11-15"), "status": ("current", "former")}
        assert title == {"job_title": ("Buyer", "Head of buying")}
        assert photo1["photo"][0] is None and photo1["photo"][1]
        assert photo2["photo"] == (photo1["photo"][1], photo2["photo"][1])
        assert tag == {"infotags": ([], ["Kunde/Guld"])}
        assert rename == {"last_names": ("Jensen", "Holm")}
        assert create["first_names"] == (None, "Karen")
        assert create["company_name"] == (None, "Acme A/S")
        assert create["status"] == (None, "current")
        assert "department" not in create and "infotags" not in create

        # Paged with a cursor: the next page starts below the last version shown.
        first = (await q.get(f"/contacts/{cid}/history", params={"limit": 3})).json()
        assert [i["version"] for i in first["items"]] == [7, 6, 5]
        assert first["next_before_version"] == 5
        rest = (
            await q.get(f"/contacts/{cid}/history", params={"limit": 3, "before_version": 5})
        ).json()
        assert [i["version"] for i in rest["items"]] == [4, 3, 2]
        last = (
            await q.get(f"/contacts/{cid}/history", params={"limit": 3, "before_version": 2})
        ).json()
        assert [i["version"] for i in last["items"]] == [1] and last["next_before_version"] is None

        # The new version's history starts at the job change, by whoever made it.
        successor = (await q.get(f"/contacts/{new_id}/history")).json()["items"]
        assert [(i["type"], i["actor"]) for i in successor] == [("ContactCreated", "dave")]
        assert changes_of(successor[0])["company_name"] == (None, "Beta ApS")
        assert changes_of(successor[0])["last_names"] == (None, "Holm")

        provenance = {
            f["field"]: (f["set_by"], f["channel"], f["version"])
            for f in (await q.get(f"/contacts/{cid}/provenance")).json()
        }
        assert provenance["first_names"] == ("importer", "import", 1)
        assert provenance["private_email"] == ("importer", "import", 1)
        assert provenance["last_names"] == ("bob", "api", 2)
        assert provenance["infotags"] == ("alice", "outlook-sync", 3)
        assert provenance["photo"] == ("carol", "service", 5)
        assert provenance["job_title"] == ("alice", "api", 6)
        assert provenance["ended_on"] == ("dave", "api", 7)
        assert provenance["status"] == ("dave", "api", 7)
        assert "department" not in provenance

        # The photo list: newest first, the current one marked, each readable at its url.
        photos = (await q.get(f"/contacts/{cid}/photos")).json()
        assert [(x["set_by"], x["current"], x["width"], x["height"]) for x in photos] == [
            ("carol", True, 5, 7),
            ("carol", False, 9, 9),
        ]
        assert photos[0]["content_hash"] == photo2["photo"][1]
        assert all(x["media_type"] == "image/png" and x["byte_size"] > 0 for x in photos)
        for shown, sent in zip(photos, (second_photo, first_photo), strict=True):
            assert shown["url"].endswith(f"/contacts/{cid}/photos/{shown['content_hash']}")
            got = await c.get(shown["url"])
            assert got.status_code == 200 and got.content == sent
        carried = (await q.get(f"/contacts/{new_id}/photos")).json()
        assert [(x["set_by"], x["current"]) for x in carried] == [("dave", True)]

        # Read-your-writes as on the other tabs: a version not projected yet is 412.
        changed = await c.patch(f"/contacts/{new_id}", json={"department": "Finance"})
        wanted = changed.json()["version"]
        for path in ("history", "provenance", "photos"):
            not_yet = await q.get(f"/contacts/{new_id}/{path}", params={"min_version": wanted})
            assert not_yet.status_code == 412, path
        waiting = asyncio.create_task(
            q.get(f"/contacts/{new_id}/history", params={"min_version": wanted})
        )
        await p.relay()
        answered = await waiting
        assert answered.status_code == 200
        assert changes_of(answered.json()["items"][0]) == {"department": (None, "Finance")}

        # Refused input, unknown contacts.
        assert (await q.get(f"/contacts/{cid}/history", params={"limit": 201})).status_code == 422
        assert (await q.get(f"/contacts/{cid}/history", params={"limit": 0})).status_code == 422
        assert (
            await q.get(f"/contacts/{cid}/history", params={"before_version": 0})
        ).status_code == 422
        unknown_param = await q.get(f"/contacts/{cid}/history", params={"offset": 3})
        assert unknown_param.status_code == 422
        assert "query.offset" in unknown_param.text
        for path in ("history", "provenance", "photos"):
            assert (await q.get(f"/contacts/{uuid4()}/{path}")).status_code == 404, path


async def test_a_channel_the_api_does_not_know_is_422(isolated_settings: KontaktSettings) -> None:
    async with pipeline(isolated_settings, worker=False) as p:
        refused = await p.command.post(
            "/contacts",
            json={
                "company_id": str(uuid4()),
                "company_name": "Acme A/S",
                "first_names": "Ole",
                "last_names": "Hansen",
            },
            headers={"X-Kontakt-Channel": "fax"},
        )
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert isinstance(body["detail"], str)
        assert [e["field"] for e in body["errors"]] == ["header.x-kontakt-channel"]


async def test_erasure_leaves_no_personal_value_in_the_history_and_a_rebuild_agrees(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        c, q = p.command, p.query
        created = await c.post(
            "/contacts",
            json={
                "company_id": str(uuid4()),
                "company_name": "Acme A/S",
                "first_names": "Karen",
                "last_names": "Jensen",
                "work_email": "kj@acme.example",
                "private_email": "karen@home.example",
                "private_phone": "+45 11 22 33 44",
            },
        )
        cid = created.json()["contact_id"]
        await c.patch(f"/contacts/{cid}", json={"last_names": "Holm"})
        await c.put(f"/contacts/{cid}/photo", content=image_bytes("PNG", (9, 9), "navy"))
        await c.post(f"/contacts/{cid}/infotags", json={"tag": "VIP"})
        moved = await c.post(
            f"/contacts/{cid}/job-changes",
            json={
                "company_id": str(uuid4()),
                "company_name": "Beta ApS",
                "work_email": "karen@beta.example",
                "effective_on": "2026-11-15",
            },
        )
        new_id = moved.json()["contact_id"]
        await p.settle()
        photo_hash = (await q.get(f"/contacts/{cid}/photos")).json()[0]["content_hash"]
        erased = await c.post(
            f"/contacts/{new_id}/erase",
            json={"reason": "request"},
            headers=as_user(p, "dpo", roles=["admin"], channel="service"),
        )
        assert erased.status_code == 200, erased.text
        await p.settle()

        async with p.pool.acquire() as conn:
            stored = await conn.fetch(
                "SELECT contact_id, changes::text AS changes, photo::text AS photo"
                " FROM rm.contact_history WHERE contact_id = ANY($1::uuid[])",
                [cid, new_id],
            )
        assert len(stored) == 6 + 2  # six events of the first version, two of the second
        text = " ".join(f"{r['changes']} {r['photo']}" for r in stored)
        for value in (*PERSONAL, photo_hash):
            assert value not in text, value
        # What is not the person's stays: the employer, the tags, the statuses.
        assert "Acme A/S" in text and "VIP" in text and "erased" in text

        for contact in (cid, new_id):
            history = (await q.get(f"/contacts/{contact}/history")).json()["items"]
            assert (history[0]["type"], history[0]["actor"], history[0]["channel"]) == (
                "ContactErased",
                "dpo",
                "service",
            )
            assert changes_of(history[0])["status"][1] == "erased"
            assert (await q.get(f"/contacts/{contact}/photos")).json() == []
            provenance = {
                f["field"]: f["set_by"]
                for f in (await q.get(f"/contacts/{contact}/provenance")).json()
            }
            assert provenance["first_names"] == "dpo" and provenance["status"] == "dpo"
        rename = next(
            i
            for i in (await q.get(f"/contacts/{cid}/history")).json()["items"]
            if i["version"] == 2
        )
        # The rename stays an event by its user; what it changed was the person's.
        assert (rename["type"], rename["actor"], rename["changes"]) == (
            "ContactDetailsChanged",
            "alice",
            [],
        )

        # A rebuild from the store makes the same rows, redacted alike.
        async with p.pool.acquire() as conn:
            before = await contacts_sql.dump(conn, contacts_sql.LIVE)
        assert p.contacts is not None
        await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
        async with p.pool.acquire() as conn:
            after = await contacts_sql.dump(conn, contacts_sql.LIVE)
        assert after["contact_history"] == before["contact_history"]
        assert after == before
