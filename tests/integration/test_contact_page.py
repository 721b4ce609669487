"""Every tab of the contact page, through the whole pipeline on the real servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.pipeline import Pipeline, pipeline


def email(
    message_id: str,
    sender: str,
    to: list[str],
    cc: list[str] | None = None,
    days_ago: int = 0,
    subject: str = "Tilbud",
    sent: datetime | None = None,
) -> bytes:
    sent = sent or datetime(2026, 11, 1, tzinfo=UTC) - timedelta(days=days_ago)
    return json.dumps(
        {
            "event_id": str(uuid4()),
            "type": "EmailLogged",
            "occurred_at": sent.isoformat(),
            "message_id": message_id,
            "from": sender,
            "to": to,
            "cc": cc or [],
            "subject": subject,
            "sent_at": sent.isoformat(),
        }
    ).encode()


def item_event(kind_type: str, item_id: str, at: datetime, **fields: Any) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid4()),
            "type": kind_type,
            "occurred_at": at.isoformat(),
            "item_id": item_id,
            **fields,
        }
    ).encode()


async def create(p: Pipeline, **fields: Any) -> dict[str, Any]:
    body = {
        "company_id": str(uuid4()),
        "company_name": "Acme A/S",
        "first_names": "Karen",
        "last_names": "Jensen",
        **fields,
    }
    response = await p.command.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return {**response.json(), "company_id": body["company_id"]}


async def test_the_seed_story_on_every_tab(isolated_settings: KontaktSettings) -> None:
    async with pipeline(isolated_settings) as p:
        s = p.settings
        karen = await create(
            p,
            job_title="Indkøber",
            work_email="karen@acme.example",
            private_email="karen@home.example",
            first_names="Kåren",
        )
        kid = karen["contact_id"]
        colleague = await create(
            p, company_id=karen["company_id"], first_names="Ole", last_names="Hansen"
        )
        await p.command.post(f"/contacts/{kid}/infotags", json={"tag": "Kunde/Guld"})
        await p.command.put(f"/contacts/{kid}/outlook-sync/me", json={"enabled": True})
        photo = image_bytes("PNG", (9, 9), "navy")
        await p.command.put(f"/contacts/{kid}/photo", content=photo)
        # Other services' events, some before the contact events reach the worker.
        await p.produce(
            s.activities_topic,
            email("<m1@x>", "karen@acme.example", ["sales@us.example"], days_ago=3),
        )
        await p.produce(
            s.activities_topic,
            email(
                "<m2@x>",
                "sales@us.example",
                ["someone@else.example"],
                ["KAREN@home.example"],
                days_ago=1,
            ),
        )
        await p.produce(
            s.activities_topic, email("<m3@x>", "nobody@x.example", ["other@x.example"])
        )
        opp = str(uuid4())
        t0 = datetime(2026, 10, 1, tzinfo=UTC)
        await p.produce(
            s.opportunities_topic,
            item_event(
                "ContactLinked",
                opp,
                t0 + timedelta(hours=1),
                contact_id=kid,
                role="beslutningstager",
            ),
            key=opp.encode(),
        )
        await p.produce(
            s.opportunities_topic,
            item_event("Created", opp, t0, title="Stort salg", status="open"),
            key=opp.encode(),
        )
        await p.produce(
            s.opportunities_topic,
            item_event("Renamed", opp, t0 + timedelta(hours=2), title="Meget stort salg"),
            key=opp.encode(),
        )
        camp = str(uuid4())
        await p.produce(
            s.campaigns_topic,
            item_event("Created", camp, t0, title="Jul 2026", status="running"),
            key=camp.encode(),
        )
        await p.produce(
            s.campaigns_topic,
            item_event("ContactLinked", camp, t0, contact_id=kid),
            key=camp.encode(),
        )
        proj = str(uuid4())
        await p.produce(
            s.projects_topic,
            item_event("Created", proj, t0, title="Udrulning", status="active"),
            key=proj.encode(),
        )
        await p.produce(
            s.projects_topic,
            item_event("ContactLinked", proj, t0, contact_id=kid, role="sponsor"),
            key=proj.encode(),
        )
        await p.produce(
            s.projects_topic,
            item_event("Closed", proj, t0 + timedelta(days=1), outcome="done"),
            key=proj.encode(),
        )
        await p.produce(
            s.sync_events_topic,
            json.dumps(
                {
                    "event_id": str(uuid4()),
                    "type": "OutlookSyncStatusChanged",
                    "occurred_at": t0.isoformat(),
                    "user_id": "alice",
                    "person_id": karen["person_id"],
                    "contact_id": kid,
                    "status": "linked",
                    "sequence": 2,
                }
            ).encode(),
            karen["person_id"].encode(),
        )
        await p.produce(
            s.sync_events_topic,
            json.dumps(
                {
                    "event_id": str(uuid4()),
                    "type": "OutlookSyncStatusChanged",
                    "occurred_at": t0.isoformat(),
                    "user_id": "alice",
                    "person_id": karen["person_id"],
                    "contact_id": kid,
                    "status": "failed",
                    "reason": "older",
                    "sequence": 1,
                }
            ).encode(),
            karen["person_id"].encode(),
        )
        # The seed's job change: a new version; the old one keeps its history.
        moved = await p.command.post(
            f"/contacts/{kid}/job-changes",
            json={
                "company_id": str(uuid4()),
                "company_name": "Beta ApS",
                "job_title": "CFO",
                "work_email": "karen@beta.example",
                "effective_on": "2026-11-15",
            },
        )
        new_id = moved.json()["contact_id"]
        await p.settle()
        q = p.query

        found = (await q.get("/contacts", params={"name": "kare"})).json()
        assert [c["contact_id"] for c in found["items"]] == [new_id]
        by_status = (
            await q.get(
                "/contacts",
                params=[("name", "KÅREN J"), ("status", "former"), ("status", "current")],
            )
        ).json()
        assert {c["contact_id"] for c in by_status["items"]} == {kid, new_id}
        tagged = (
            await q.get("/contacts", params={"infotag": "Kunde/Guld", "status": "former"})
        ).json()
        assert [c["contact_id"] for c in tagged["items"]] == [kid]

        old = (await q.get(f"/contacts/{kid}")).json()
        assert old["status"] == "former" and old["successor_id"] == new_id
        assert old["company_name"] == "Acme A/S" and old["job_title"] == "Indkøber"
        assert [v["contact_id"] for v in old["other_versions"]] == [new_id]
        assert [c["contact_id"] for c in old["colleagues"]] == [colleague["contact_id"]]
        assert [u["user_id"] for u in old["outlook_sync"]] == ["alice"]
        new = (await q.get(f"/contacts/{new_id}")).json()
        assert new["status"] == "current" and new["work_email"] == "karen@beta.example"
        assert new["private_email"] == "karen@home.example" and new["first_names"] == "Kåren"
        assert [(u["user_id"], u["status"]) for u in new["outlook_sync"]] == [("alice", "linked")]

        old_activities = (await q.get(f"/contacts/{kid}/activities")).json()
        assert [a["message_id"] for a in old_activities["items"]] == ["<m2@x>", "<m1@x>"]
        new_activities = (await q.get(f"/contacts/{new_id}/activities")).json()
        # The private address passed to the new version at the job change, after m2 was sent.
        assert [a["message_id"] for a in new_activities["items"]] == []

        tags = (await q.get(f"/contacts/{new_id}/infotags")).json()
        assert [(t["tag"], t["added_by"]) for t in tags] == [("Kunde/Guld", "alice")]

        got = await q.get(f"/contacts/{new_id}/photo")
        assert got.status_code == 200 and got.content == photo
        assert got.headers["content-type"] == "image/png" and got.headers["etag"]
        assert "max-age" in got.headers["cache-control"]
        again = await q.get(
            f"/contacts/{new_id}/photo", headers={"If-None-Match": got.headers["etag"]}
        )
        assert again.status_code == 304

        opps = (await q.get(f"/contacts/{kid}/opportunities")).json()["items"]
        assert [(o["title"], o["status"], o["role"]) for o in opps] == [
            ("Meget stort salg", "open", "beslutningstager")
        ]
        camps = (await q.get(f"/contacts/{kid}/campaigns")).json()["items"]
        assert [(c["title"], c["role"]) for c in camps] == [("Jul 2026", None)]
        projs = (await q.get(f"/contacts/{kid}/projects")).json()["items"]
        assert [(x["title"], x["closed"], x["outcome"]) for x in projs] == [
            ("Udrulning", True, "done")
        ]
        assert (await q.get(f"/contacts/{new_id}/opportunities")).json()["total"] == 0

        employments = (await q.get(f"/contacts/{new_id}/employments")).json()
        assert [
            (e["company_name"], e["status"], e["ended_on"], e["started_on"]) for e in employments
        ] == [
            ("Acme A/S", "former", "2026-11-15", None),
            ("Beta ApS", "current", None, "2026-11-15"),
        ]


async def test_read_your_writes_waits_for_the_version_or_says_not_yet(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        created = await create(p)
        cid = created["contact_id"]
        await p.settle()
        changed = (await p.command.patch(f"/contacts/{cid}", json={"job_title": "CEO"})).json()
        # Not relayed yet: the read model cannot reach version 2, so "not yet".
        not_yet = await p.query.get(f"/contacts/{cid}", params={"min_version": changed["version"]})
        assert not_yet.status_code == 412
        assert not_yet.json()["wanted_version"] == 2 and not_yet.json()["current_version"] == 1
        unknown = await p.query.get(f"/contacts/{uuid4()}", params={"min_version": 1})
        assert unknown.status_code == 412
        import asyncio

        waiting = asyncio.create_task(
            p.query.get(f"/contacts/{cid}/infotags", params={"min_version": 2})
        )
        await p.relay()
        answered = await waiting
        assert answered.status_code == 200
        fresh = await p.query.get(f"/contacts/{cid}", params={"min_version": 2})
        assert fresh.status_code == 200 and fresh.json()["job_title"] == "CEO"


async def test_bad_input_is_422_unknown_is_404_and_auth_is_required(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings, worker=False) as p:
        q = p.query
        assert (await q.get("/contacts/not-a-uuid")).status_code == 422
        assert (await q.get("/contacts", params={"limit": 0})).status_code == 422
        assert (await q.get("/contacts", params={"status": "nope"})).status_code == 422
        assert (await q.get("/contacts", params={"sort": "x"})).status_code == 422
        assert (await q.get(f"/contacts/{uuid4()}", params={"min_version": -1})).status_code == 422
        for path in ("", "/activities", "/infotags", "/photo", "/projects", "/employments"):
            assert (await q.get(f"/contacts/{uuid4()}{path}")).status_code == 404, path
        assert (await q.get("/contacts", headers={"Authorization": ""})).status_code == 401
        assert (await q.get("/contacts", params={"name": "%_\\'\""})).status_code == 200
