"""Undoing a mistaken job change through the contacts API, seen on the query API's tabs."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from fastapi.testclient import TestClient

from shared.settings import KontaktSettings
from tests.integration.test_employment_corrections import create
from tests.pipeline import Pipeline, pipeline


async def move(p: Pipeline, contact_id: str, **fields: Any) -> str:
    """The new version's id after a job change to Beta ApS."""
    moved = await p.command.post(
        f"/contacts/{contact_id}/job-changes",
        json={"company_id": str(uuid4()), "company_name": "Beta ApS",
              "effective_on": "2026-11-15", **fields},
    )  # fmt: skip
    assert moved.status_code == 201, moved.text
    return str(moved.json()["contact_id"])


async def test_the_former_version_is_current_again_on_every_tab_with_history_kept(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        karen = await create(p, job_title="Buyer", work_email="karen@acme.example",
                             private_email="karen@home.example")  # fmt: skip
        kid = karen["contact_id"]
        await p.command.post(f"/contacts/{kid}/infotags", json={"tag": "golf"})
        new_id = await move(p, kid, job_title="CFO")
        await p.command.post(f"/contacts/{new_id}/infotags", json={"tag": "wine"})
        switched = await p.command.put(
            f"/contacts/{new_id}/outlook-sync/me", json={"enabled": True}
        )
        assert switched.status_code == 200, switched.text

        undone = await p.command.post(
            f"/contacts/{new_id}/job-change-undo", headers={"If-Match": '"3"'}
        )
        assert undone.status_code == 200, undone.text
        body = undone.json()
        assert body["contact_id"] == kid and body["withdrawn"]["contact_id"] == new_id
        assert undone.headers["Location"] == f"/contacts/{kid}"
        await p.settle()

        tab = (await p.query.get(f"/contacts/{kid}/employments")).json()
        assert [(e["contact_id"], e["company_name"], e["ended_on"], e["status"]) for e in tab] == [
            (kid, "Acme A/S", None, "current"),
            (new_id, "Beta ApS", None, "withdrawn"),
        ]
        assert [(e["contact_id"], e["status"]) for e in
                (await p.command.get(f"/contacts/{new_id}/employments")).json()] == [
            (kid, "current"), (new_id, "withdrawn"),
        ]  # fmt: skip
        details = (await p.query.get(f"/contacts/{kid}")).json()
        assert details["status"] == "current" and details["job_title"] == "Buyer"
        tags = (await p.query.get(f"/contacts/{kid}/infotags")).json()
        assert sorted(t["tag"] for t in tags) == ["golf", "wine"]
        state = (await p.command.get(f"/contacts/{kid}")).json()
        assert state["outlook_sync_users"] == ["alice"] and state["successor_id"] is None
        assert (await p.query.get(f"/contacts/{new_id}")).json()["status"] == "withdrawn"

        old_history = (await p.command.get(f"/contacts/{kid}/history")).json()
        assert [h["type"] for h in old_history] == [
            "ContactCreated", "InfotagAdded", "JobChanged", "JobChangeUndone",
        ]  # fmt: skip
        assert old_history[-1]["changes"]["status"] == {"old": "former", "new": "current"}
        new_history = (await p.command.get(f"/contacts/{new_id}/history")).json()
        assert [h["type"] for h in new_history][-1] == "JobChangeWithdrawn"
        assert new_history[-1]["changes"]["status"] == {"old": "current", "new": "withdrawn"}

        # The keys are the former's again: the name is taken at Acme, free at Beta.
        clash = await p.command.post(
            "/contacts",
            json={"company_id": karen["company_id"], "company_name": "Acme A/S",
                  "first_names": "Karen", "last_names": "Jensen"},
        )  # fmt: skip
        assert clash.status_code == 409 and clash.json()["existing_contact_id"] == kid
        email = await p.command.post(
            "/contacts",
            json={"company_id": str(uuid4()), "company_name": "Gamma",
                  "first_names": "Other", "last_names": "Person",
                  "work_email": "karen@acme.example"},
        )  # fmt: skip
        assert email.status_code == 409 and email.json()["existing_contact_id"] == kid

        # The person can change job again, from the version that is current.
        again = await move(p, kid)
        await p.settle()
        tab = (await p.query.get(f"/contacts/{again}/employments")).json()
        assert [e["status"] for e in tab] == ["former", "withdrawn", "current"]


async def test_a_key_taken_meanwhile_refuses_the_undo_and_changes_nothing(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        karen = await create(p, first_names="Ida", last_names="Lind")
        kid = karen["contact_id"]
        new_id = await move(p, kid)
        # Someone else of that name joined Acme after she left.
        other = await create(p, company_id=karen["company_id"], first_names="Ida",
                             last_names="Lind")  # fmt: skip
        refused = await p.command.post(f"/contacts/{new_id}/job-change-undo")
        assert refused.status_code == 409, refused.text
        assert refused.json()["field"] == "name"
        assert refused.json()["existing_contact_id"] == other["contact_id"]
        assert (await p.command.get(f"/contacts/{new_id}")).json()["status"] == "current"
        assert (await p.command.get(f"/contacts/{kid}")).json()["status"] == "former"
        # Her name at Beta is still hers.
        clash = await p.command.post(
            "/contacts",
            json={"company_id": (await p.command.get(f"/contacts/{new_id}")).json()["company_id"],
                  "company_name": "Beta ApS", "first_names": "Ida", "last_names": "Lind"},
        )  # fmt: skip
        assert clash.status_code == 409 and clash.json()["existing_contact_id"] == new_id


def test_undo_refusals_have_the_documented_statuses(client: TestClient, token_for: Any) -> None:
    body = {"company_id": str(uuid4()), "company_name": "Acme A/S",
            "first_names": "Per", "last_names": "Mark", "started_on": "2024-01-01"}  # fmt: skip
    cid = client.post("/contacts", json=body).json()["contact_id"]

    assert client.post(f"/contacts/{uuid4()}/job-change-undo").status_code == 404
    first = client.post(f"/contacts/{cid}/job-change-undo")
    assert first.status_code == 409 and "not created by a job change" in first.json()["detail"]
    moved = client.post(f"/contacts/{cid}/job-changes",
                        json={"company_id": str(uuid4()), "company_name": "B",
                              "effective_on": "2025-06-01"}).json()  # fmt: skip
    new_id = moved["contact_id"]
    assert client.post(f"/contacts/{cid}/job-change-undo").status_code == 409  # former
    stale = client.post(f"/contacts/{new_id}/job-change-undo", headers={"If-Match": '"7"'})
    assert stale.status_code == 409 and stale.json()["current_version"] == 1
    client.post(f"/contacts/{new_id}/archive", json={})
    assert client.post(f"/contacts/{new_id}/job-change-undo").status_code == 409  # archived
    client.post(f"/contacts/{new_id}/restore", json={})
    assert client.post(f"/contacts/{new_id}/job-change-undo").status_code == 200
    again = client.post(f"/contacts/{new_id}/job-change-undo")
    assert again.status_code == 409 and "withdrawn" in again.json()["detail"]
    assert client.patch(f"/contacts/{new_id}", json={"job_title": "X"}).status_code == 409
    # Erasing the person erases the withdrawn version too; an undo is then 410.
    moved = client.post(f"/contacts/{cid}/job-changes",
                        json={"company_id": str(uuid4()), "company_name": "C",
                              "effective_on": "2025-07-01"}).json()  # fmt: skip
    admin = {"Authorization": f"Bearer {token_for('dpo', ['admin'])}"}
    erased = client.post(f"/contacts/{cid}/erase", json={"reason": "request"}, headers=admin)
    assert erased.status_code == 200, erased.text
    assert client.get(f"/contacts/{new_id}").json()["status"] == "erased"
    assert client.post(f"/contacts/{moved['contact_id']}/job-change-undo").status_code == 410
