"""Erasure on the real PostgreSQL: nothing of the person left readable in any table."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from services.contacts.application import ContactsApp
from services.contacts.domain import ERASED
from shared.settings import KontaktSettings
from tests import rawscan
from tests.images import image_bytes


def person(tag: str) -> dict[str, str]:
    """Distinctive personal values (non-ASCII, so JSON escaping is exercised)."""
    digits = str(int(uuid4()))[:6]
    return {
        "first_names": f"Åse-{tag} Øllegård",
        "last_names": f"Kærsgaard{tag}",
        "job_title": f"Indkøbschef {tag}",
        "work_email": f"aase.{tag}@acme-{tag}.example",
        "private_email": f"aase{tag}@privat.example",
        "work_phone": f"+45 7{digits[:3]} {digits[3:]}1",
        "private_phone": f"+45 2{digits[3:]} {digits[:3]}4",
    }


def personal_values(p: dict[str, str]) -> list[str]:
    return [
        p["first_names"],
        p["last_names"],
        p["job_title"],
        p["work_email"],
        p["private_email"],
        p["work_phone"],
        p["private_phone"],
    ]


def create_person(client: TestClient, p: dict[str, str], photo: bytes) -> dict[str, Any]:
    body = {"company_id": str(uuid4()), "company_name": "Scan Industries", **p}
    response = client.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    cid = created["contact_id"]
    assert client.put(f"/contacts/{cid}/photo", content=photo).status_code == 200
    client.post(f"/contacts/{cid}/infotags", json={"tag": "Scan/Tagged"})
    client.put(f"/contacts/{cid}/outlook-sync/me", json={"enabled": True, "reason": "mine"})
    moved = client.post(
        f"/contacts/{cid}/job-changes",
        json={
            "company_id": str(uuid4()),
            "company_name": "Scan Two",
            "job_title": p["job_title"] + " II",
            "work_email": "second." + p["work_email"],
        },
    )
    assert moved.status_code == 201, moved.text
    new_id = moved.json()["contact_id"]
    client.patch(f"/contacts/{new_id}", json={"private_phone": p["private_phone"] + "9"})
    return {"first": cid, "current": new_id, "person_id": created["person_id"]}


@pytest.fixture
def admin(client: TestClient, token_for) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for('dpo', ['admin'])}"}


def test_erasure_needs_the_admin_role(client: TestClient) -> None:
    cid = client.post(
        "/contacts",
        json={
            "company_id": str(uuid4()),
            "company_name": "A",
            "first_names": "N",
            "last_names": "A",
        },
    ).json()["contact_id"]
    response = client.post(f"/contacts/{cid}/erase", json={"reason": "request"})
    assert response.status_code == 403
    assert client.get(f"/contacts/{cid}").json()["status"] == "current"


def test_erased_person_reads_as_erased_and_refuses_commands_with_410(
    client: TestClient, admin: dict[str, str]
) -> None:
    ids = create_person(client, person(uuid4().hex[:6]), image_bytes("PNG", (3, 3), "blue"))
    photo_hash = client.get(f"/contacts/{ids['first']}").json()["photo"]["content_hash"]
    assert client.get(f"/contacts/{ids['first']}/photos/{photo_hash}").status_code == 200
    response = client.post(
        f"/contacts/{ids['first']}/erase", json={"reason": "ticket 42"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert {e["contact_id"] for e in response.json()["erased"]} == {ids["first"], ids["current"]}
    for cid in (ids["first"], ids["current"]):
        state = client.get(f"/contacts/{cid}").json()
        assert state["status"] == "erased" and state["first_names"] == ERASED
        assert client.get(f"/contacts/{cid}/as-of?version=1").json()["last_names"] == ERASED
        history = client.get(f"/contacts/{cid}/history").json()
        assert history[-1]["type"] == "ContactErased" and history[-1]["actor"] == "dpo"
        assert all(ERASED in str(h["changes"]) for h in history if h["type"] == "ContactCreated")
    assert client.get(f"/contacts/{ids['current']}/photo").status_code == 404
    earlier = client.get(f"/contacts/{ids['first']}/photos/{photo_hash}")
    assert earlier.status_code in (404, 410)
    employments = client.get(f"/contacts/{ids['current']}/employments").json()
    assert [e["status"] for e in employments] == ["erased", "erased"]
    cid = ids["current"]
    assert client.patch(f"/contacts/{cid}", json={"job_title": "x"}).status_code == 410
    assert client.post(f"/contacts/{cid}/infotags", json={"tag": "x"}).status_code == 410
    assert client.put(f"/contacts/{cid}/photo", content=image_bytes()).status_code == 410
    assert client.post(f"/contacts/{cid}/archive").status_code == 410
    again = client.post(f"/contacts/{cid}/erase", json={"reason": "again"}, headers=admin)
    assert again.status_code == 410


def test_raw_scan_of_every_table_finds_nothing_of_the_erased_person(
    client: TestClient, admin: dict[str, str], settings: KontaktSettings, contacts: ContactsApp
) -> None:
    erased_p, kept_p = person("e" + uuid4().hex[:5]), person("k" + uuid4().hex[:5])
    erased_photo = image_bytes("PNG", (41, 17), "purple")
    erased = create_person(client, erased_p, erased_photo)
    kept = create_person(client, kept_p, image_bytes("PNG", (13, 11), "orange"))
    # The scan sees what it should: readable, non-personal values are found.
    found = rawscan.find(settings.pg_dsn(), ["Scan Industries", "Scan/Tagged"])
    assert "public.contacts_events" in found.get("Scan Industries", []), found

    response = client.post(
        f"/contacts/{erased['current']}/erase", json={"reason": "ticket 7"}, headers=admin
    )
    assert response.status_code == 200

    leaks = rawscan.find(settings.pg_dsn(), personal_values(erased_p))
    assert leaks == {}, f"erased person's data still readable: {leaks}"
    contents = rawscan.table_contents(settings.pg_dsn())
    assert not any(erased_photo[8:40] in data for data in contents.values())
    # The kept person's data is stored, but only encrypted: no plain form anywhere.
    assert rawscan.find(settings.pg_dsn(), personal_values(kept_p)) == {}
    state = client.get(f"/contacts/{kept['current']}").json()
    assert state["last_names"] == kept_p["last_names"]
    assert client.get(f"/contacts/{kept['current']}/photo").status_code == 200


def test_replaying_the_whole_store_after_an_erasure_yields_placeholders(
    client: TestClient, admin: dict[str, str], contacts: ContactsApp
) -> None:
    p = person("r" + uuid4().hex[:5])
    ids = create_person(client, p, image_bytes("PNG", (5, 5), "green"))
    client.post(f"/contacts/{ids['first']}/erase", json={"reason": "replay"}, headers=admin)
    seen_erased = 0
    start = 1
    while True:
        notifications = contacts.recorder.select_notifications(start=start, limit=500)
        if not notifications:
            break
        for n in notifications:
            event = contacts.mapper.to_domain_event(n)
            if getattr(event, "person_id", None) == ids["person_id"] or (
                str(getattr(event, "person_id", "")) == ids["person_id"]
            ):
                state = vars(event)
                assert p["first_names"] not in str(state)
                if type(event).__name__ == "Created":
                    assert state["first_names"] == ERASED
                    seen_erased += 1
        start = notifications[-1].id + 1
    assert seen_erased == 2
