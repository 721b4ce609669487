"""The contacts service as a real process over HTTP, with a token minted by the CLI."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx

from tests.support import run_kontakt


def cli_token(env: dict[str, str], sub: str) -> str:
    out = run_kontakt(env, "token", "--sub", sub)
    out.check_returncode()
    return out.stdout.strip()


def test_token_from_the_cli_is_accepted_and_a_forged_one_refused(
    contacts_api: str, settings_env: dict[str, str]
) -> None:
    token = cli_token(settings_env, "alice")
    ok = httpx.get(
        f"{contacts_api}/contacts/{uuid4()}", headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status_code == 404
    forged_env = {**settings_env, "KONTAKT_JWT_SECRET": "another-secret-0123456789-0123456789"}
    forged = cli_token(forged_env, "alice")
    bad = httpx.get(
        f"{contacts_api}/contacts/{uuid4()}", headers={"Authorization": f"Bearer {forged}"}
    )
    assert bad.status_code == 401


def test_parallel_http_creates_of_one_name_give_exactly_one_201(
    contacts_api: str, settings_env: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {cli_token(settings_env, 'alice')}"}
    body = {
        "company_id": str(uuid4()),
        "company_name": "Acme",
        "first_names": "Sofie",
        "last_names": "Lund",
    }

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=contacts_api, headers=headers, timeout=30) as c:
            return list(await asyncio.gather(*(c.post("/contacts", json=body) for _ in range(16))))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 15, statuses
    winner = next(r for r in responses if r.status_code == 201).json()["contact_id"]
    assert {r.json()["existing_contact_id"] for r in responses if r.status_code == 409} == {winner}


def test_the_readme_story_create_change_job_read_employments(
    contacts_api: str, settings_env: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {cli_token(settings_env, 'alice')}"}
    with httpx.Client(base_url=contacts_api, headers=headers) as c:
        created = c.post(
            "/contacts",
            json={
                "company_id": str(uuid4()),
                "company_name": "Acme A/S",
                "first_names": "Karen",
                "last_names": "Jensen",
                "job_title": "Buyer",
            },
        ).json()
        moved = c.post(
            f"/contacts/{created['contact_id']}/job-changes",
            json={"company_id": str(uuid4()), "company_name": "Beta ApS", "job_title": "CFO"},
        )
        assert moved.status_code == 201
        employments = c.get(f"/contacts/{moved.json()['contact_id']}/employments").json()
    assert [(e["company_name"], e["job_title"], e["status"]) for e in employments] == [
        ("Acme A/S", "Buyer", "former"),
        ("Beta ApS", "CFO", "current"),
    ]
    assert httpx.get(f"{contacts_api}/docs").status_code == 200
    assert (
        "/contacts/{contact_id}/job-changes"
        in httpx.get(f"{contacts_api}/openapi.json").json()["paths"]
    )


def test_the_running_service_serves_the_asyncapi_document(contacts_api: str) -> None:
    document = httpx.get(f"{contacts_api}/asyncapi.json").json()
    assert document["asyncapi"].startswith("3.")
    channels = str(document["channels"])
    for topic in ("contacts.events", "activities.events", "projects.events"):
        assert topic in channels
    assert "AsyncApiStandalone" in httpx.get(f"{contacts_api}/asyncapi").text
