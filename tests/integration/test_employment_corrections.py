"""Correcting an employment through the contacts API, seen on the query API's tabs."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from fastapi.testclient import TestClient

from shared.settings import KontaktSettings
from tests.integration.test_contact_page import create as create_contact
from tests.pipeline import Pipeline, pipeline


async def create(p: Pipeline, **fields: Any) -> dict[str, Any]:
    """A contact that started at its company on 2020-01-01 (unless told otherwise)."""
    return await create_contact(p, **{"started_on": "2020-01-01", **fields})


async def test_corrections_show_on_the_employments_tab_and_in_history(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        karen = await create(p, job_title="Buyer")
        kid = karen["contact_id"]
        beta = str(uuid4())
        moved = await p.command.post(
            f"/contacts/{kid}/job-changes",
            json={"company_id": beta, "company_name": "Betta ApS",
                  "job_title": "CFO", "effective_on": "2026-11-15"},
        )  # fmt: skip
        new_id = moved.json()["contact_id"]
        right_acme = str(uuid4())
        # The former employment: its company's id and name were typed wrong.
        fixed_old = await p.command.post(
            f"/contacts/{kid}/employment-corrections",
            json={"company_id": right_acme, "company_name": "ACME A/S"},
            headers={"If-Match": '"2"'},
        )
        assert fixed_old.status_code == 200, fixed_old.text
        assert fixed_old.json()["version"] == 3
        # The current one: the name, and the job change's date, which was a month early.
        fixed_new = await p.command.post(
            f"/contacts/{new_id}/employment-corrections",
            json={"company_name": "Beta ApS", "started_on": "2026-10-15"},
            params={"expected_version": 1},
        )
        assert fixed_new.status_code == 200, fixed_new.text
        await p.settle()

        tab = (await p.query.get(f"/contacts/{new_id}/employments")).json()
        assert [
            (e["company_id"], e["company_name"], e["started_on"], e["ended_on"], e["status"])
            for e in tab
        ] == [
            (right_acme, "ACME A/S", "2020-01-01", "2026-10-15", "former"),
            (beta, "Beta ApS", "2026-10-15", None, "current"),
        ]  # fmt: skip
        details = (await p.query.get(f"/contacts/{new_id}")).json()
        assert details["company_name"] == "Beta ApS" and details["started_on"] == "2026-10-15"
        old_details = (await p.query.get(f"/contacts/{kid}")).json()
        assert old_details["company_id"] == right_acme and old_details["status"] == "former"

        history = (await p.command.get(f"/contacts/{kid}/history")).json()
        assert [h["type"] for h in history] == [
            "ContactCreated",
            "JobChanged",
            "EmploymentCorrected",
            "EmploymentCorrected",
        ]
        assert history[2]["changes"]["company_name"] == {"old": "Acme A/S", "new": "ACME A/S"}
        assert history[3]["changes"]["ended_on"] == {"old": "2026-11-15", "new": "2026-10-15"}
        assert history[2]["actor"] == "alice"


async def test_a_company_id_correction_moves_the_name_key(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        karen = await create(p, first_names="Ida", last_names="Lind")
        right = str(uuid4())
        there = await create(p, company_id=right, first_names="Ida", last_names="Lind",
                             company_name="Right A/S")  # fmt: skip
        clash = await p.command.post(
            f"/contacts/{karen['contact_id']}/employment-corrections",
            json={"company_id": right},
        )
        assert clash.status_code == 409, clash.text
        assert clash.json()["field"] == "name"
        assert clash.json()["existing_contact_id"] == there["contact_id"]
        await p.command.post(f"/contacts/{there['contact_id']}/archive", json={})
        moved = await p.command.post(
            f"/contacts/{karen['contact_id']}/employment-corrections",
            json={"company_id": right},
        )
        assert moved.status_code == 200, moved.text
        # The name is free again at the company she never worked for.
        await create(p, company_id=karen["company_id"], first_names="Ida", last_names="Lind")


def test_correction_refusals_have_the_documented_statuses(client: TestClient) -> None:
    body = {"company_id": str(uuid4()), "company_name": "Acme A/S",
            "first_names": "Per", "last_names": "Mark", "started_on": "2024-01-01"}  # fmt: skip
    cid = client.post("/contacts", json=body).json()["contact_id"]
    path = f"/contacts/{cid}/employment-corrections"

    assert client.post(f"/contacts/{uuid4()}/employment-corrections",
                       json={"company_name": "X"}).status_code == 404  # fmt: skip
    stale = client.post(path, json={"company_name": "X"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 409 and stale.json()["current_version"] == 1
    for bad in ({}, {"company_name": ""}, {"company_name": "a\u0000b"}, {"started_on": "soon"},
                {"company_id": "nope"}, {"ended_on": "2025-01-01"}):  # fmt: skip
        refused = client.post(path, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert isinstance(refused.json()["detail"], str)
    moved = client.post(f"/contacts/{cid}/job-changes",
                        json={"company_id": str(uuid4()), "company_name": "B",
                              "effective_on": "2025-06-01"}).json()  # fmt: skip
    # The former employment cannot start after it ended.
    late = client.post(path, json={"started_on": "2025-07-01"})
    assert late.status_code == 422 and "before it started" in late.json()["detail"]
    # Nor can the new one start before the former started: both stay as they were.
    early = client.post(
        f"/contacts/{moved['contact_id']}/employment-corrections",
        json={"started_on": "2023-01-01"},
    )
    assert early.status_code == 422
    assert client.get(f"/contacts/{cid}").json()["ended_on"] == "2025-06-01"
    client.post(f"/contacts/{moved['contact_id']}/archive", json={})
    archived = client.post(
        f"/contacts/{moved['contact_id']}/employment-corrections", json={"company_name": "C"}
    )
    assert archived.status_code == 409


def test_a_job_change_to_the_same_company_is_409_and_changes_nothing(client: TestClient) -> None:
    company = str(uuid4())
    body = {"company_id": company, "company_name": "Acme A/S",
            "first_names": "Bo", "last_names": "Dal", "job_title": "Buyer"}  # fmt: skip
    cid = client.post("/contacts", json=body).json()["contact_id"]
    refused = client.post(
        f"/contacts/{cid}/job-changes",
        json={"company_id": company, "company_name": "Acme A/S", "job_title": "Head buyer"},
    )
    assert refused.status_code == 409
    assert "change the job title" in refused.json()["detail"]
    state = client.get(f"/contacts/{cid}").json()
    assert state["status"] == "current" and state["version"] == 1
