"""The contacts command API on the real PostgreSQL: statuses, conflicts, reads."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import psycopg
from fastapi.testclient import TestClient

from shared.settings import KontaktSettings
from tests.images import image_bytes


def new_contact(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {
        "company_id": str(uuid4()),
        "company_name": "Acme A/S",
        "first_names": "Karen",
        "last_names": "Jensen",
        **fields,
    }
    response = client.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return {**response.json(), "company_id": body["company_id"]}


def count_stored_events(settings: KontaktSettings) -> int:
    with psycopg.connect(settings.pg_dsn()) as conn:
        row = conn.execute("SELECT count(*) FROM contacts_events").fetchone()
    assert row is not None
    return int(row[0])


def test_create_returns_id_version_and_the_state_reads_back(client: TestClient) -> None:
    created = new_contact(client, job_title="Buyer", work_email="karen@acme.dk")
    assert created["version"] == 1
    response = client.get(f"/contacts/{created['contact_id']}")
    assert response.status_code == 200 and response.headers["etag"] == '"1"'
    state = response.json()
    assert state["first_names"] == "Karen" and state["job_title"] == "Buyer"
    assert state["status"] == "current" and state["person_id"] == created["person_id"]


def test_missing_or_invalid_token_is_401(client: TestClient, token_for) -> None:
    contact_id = uuid4()
    assert client.get(f"/contacts/{contact_id}", headers={"Authorization": ""}).status_code == 401
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert client.get(f"/contacts/{contact_id}", headers=bad).status_code == 401
    assert client.post("/contacts", json={}, headers=bad).status_code == 401
    assert client.get("/health/live", headers={"Authorization": ""}).status_code == 200


def test_bad_input_is_422_with_field_level_messages(client: TestClient) -> None:
    response = client.post(
        "/contacts",
        json={
            "company_id": "nope",
            "company_name": "",
            "first_names": "A",
            "last_names": "B",
            "work_email": "not-an-email",
            "surprise": 1,
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert isinstance(body["detail"], str)
    fields = {e["field"] for e in body["errors"]}
    assert {"body.company_id", "body.company_name", "body.work_email", "body.surprise"} <= fields
    created = new_contact(client)
    response = client.patch(f"/contacts/{created['contact_id']}", json={"first_names": None})
    assert response.status_code == 422
    assert client.patch(f"/contacts/{created['contact_id']}", json={}).status_code == 422
    bad_match = client.patch(
        f"/contacts/{created['contact_id']}", json={"job_title": "x"}, headers={"If-Match": "abc"}
    )
    assert bad_match.status_code == 422
    assert client.get("/contacts/not-a-uuid").status_code == 422


def test_unknown_contact_is_404_for_every_endpoint(client: TestClient) -> None:
    unknown = uuid4()
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("get", f"/contacts/{unknown}", {}),
        ("get", f"/contacts/{unknown}/history", {}),
        ("get", f"/contacts/{unknown}/employments", {}),
        ("get", f"/contacts/{unknown}/as-of?version=1", {}),
        ("patch", f"/contacts/{unknown}", {"json": {"job_title": "x"}}),
        ("post", f"/contacts/{unknown}/infotags", {"json": {"tag": "x"}}),
        ("post", f"/contacts/{unknown}/archive", {}),
        ("put", f"/contacts/{unknown}/outlook-sync/me", {"json": {"enabled": True}}),
        ("put", f"/contacts/{unknown}/photo", {"content": image_bytes()}),
    ]
    for method, path, kwargs in requests:
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)


def test_duplicate_name_at_a_company_is_409_naming_field_and_existing_id(
    client: TestClient, settings: KontaktSettings
) -> None:
    first = new_contact(client)
    before = count_stored_events(settings)
    response = client.post(
        "/contacts",
        json={
            "company_id": first["company_id"],
            "company_name": "Acme A/S",
            "first_names": " KAREN ",
            "last_names": "jensen",
        },
    )
    assert response.status_code == 409
    assert response.json()["field"] == "name"
    assert response.json()["existing_contact_id"] == first["contact_id"]
    assert count_stored_events(settings) == before  # nothing half-written


def test_duplicate_email_is_409(client: TestClient) -> None:
    email = f"{uuid4().hex}@example.com"
    first = new_contact(client, work_email=email)
    response = client.post(
        "/contacts",
        json={
            "company_id": str(uuid4()),
            "company_name": "Other",
            "first_names": "P",
            "last_names": "Q",
            "private_email": email.upper(),
        },
    )
    assert response.status_code == 409
    assert response.json() | {"detail": ""} == {
        "detail": "",
        "field": "private_email",
        "existing_contact_id": first["contact_id"],
    }


def test_stale_if_match_is_409_and_writes_nothing(client: TestClient) -> None:
    created = new_contact(client)
    cid = created["contact_id"]
    ok = client.patch(f"/contacts/{cid}", json={"job_title": "A"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = client.patch(f"/contacts/{cid}", json={"job_title": "B"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    assert client.get(f"/contacts/{cid}").json()["job_title"] == "A"
    by_query = client.post(f"/contacts/{cid}/infotags?expected_version=1", json={"tag": "x"})
    assert by_query.status_code == 409


def test_archived_contact_refuses_edits_until_restored(client: TestClient) -> None:
    cid = new_contact(client)["contact_id"]
    assert client.post(f"/contacts/{cid}/archive", json={"reason": "gone"}).status_code == 200
    assert client.get(f"/contacts/{cid}").json()["status"] == "archived"
    assert client.patch(f"/contacts/{cid}", json={"job_title": "x"}).status_code == 409
    assert client.post(f"/contacts/{cid}/restore").status_code == 200
    assert client.post(f"/contacts/{cid}/restore").status_code == 409
    assert client.patch(f"/contacts/{cid}", json={"job_title": "x"}).status_code == 200


def test_photo_upload_sniffs_type_and_limits_size(client: TestClient) -> None:
    cid = new_contact(client)["contact_id"]
    png = image_bytes("PNG", (7, 4))
    response = client.put(
        f"/contacts/{cid}/photo", content=png, headers={"Content-Type": "image/jpeg"}
    )  # the bytes decide, not the header
    assert response.status_code == 200
    photo = client.get(f"/contacts/{cid}").json()["photo"]
    assert (photo["media_type"], photo["width"], photo["height"], photo["byte_size"]) == (
        "image/png",
        7,
        4,
        len(png),
    )
    fetched = client.get(f"/contacts/{cid}/photo")
    assert fetched.content == png and fetched.headers["content-type"] == "image/png"
    gif = client.put(f"/contacts/{cid}/photo", content=image_bytes("GIF"))
    assert gif.status_code == 415
    big = client.put(f"/contacts/{cid}/photo", content=b"\xff\xd8" + b"0" * (4 * 1024 * 1024))
    assert big.status_code == 413
    assert client.get(f"/contacts/{cid}").json()["version"] == 2
    assert client.delete(f"/contacts/{cid}/photo").status_code == 200
    assert client.delete(f"/contacts/{cid}/photo").status_code == 404
    assert client.get(f"/contacts/{cid}/photo").status_code == 404


def test_an_earlier_photo_is_fetched_by_its_hash_after_being_replaced(
    client: TestClient,
) -> None:
    cid = new_contact(client)["contact_id"]
    first, second = image_bytes("PNG", (5, 5), "red"), image_bytes("PNG", (5, 5), "green")
    assert client.put(f"/contacts/{cid}/photo", content=first).status_code == 200
    first_hash = client.get(f"/contacts/{cid}").json()["photo"]["content_hash"]
    assert client.put(f"/contacts/{cid}/photo", content=second).status_code == 200
    earlier = client.get(f"/contacts/{cid}/photos/{first_hash}")
    assert earlier.status_code == 200 and earlier.content == first
    assert earlier.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/contacts/{cid}/photo").content == second
    other = new_contact(client)["contact_id"]
    assert client.get(f"/contacts/{other}/photos/{first_hash}").status_code == 404
    assert client.get(f"/contacts/{cid}/photos/{'0' * 64}").status_code == 404
    assert client.get(f"/contacts/{cid}/photos/not-a-hash").status_code == 422


def test_outlook_switch_changes_only_the_callers_own_switch(
    client: TestClient,
    token_for,
) -> None:
    cid = new_contact(client)["contact_id"]
    assert client.put(f"/contacts/{cid}/outlook-sync/me", json={"enabled": True}).status_code == 200
    bob = {"Authorization": f"Bearer {token_for('bob')}"}
    client.put(f"/contacts/{cid}/outlook-sync/me", json={"enabled": True}, headers=bob)
    client.put(f"/contacts/{cid}/outlook-sync/me", json={"enabled": False}, headers=bob)
    assert client.get(f"/contacts/{cid}").json()["outlook_sync_users"] == ["alice"]
    history = client.get(f"/contacts/{cid}/history").json()
    toggles = [h for h in history if h["type"] == "OutlookSyncToggled"]
    assert [h["actor"] for h in toggles] == ["alice", "bob", "bob"]


def test_job_change_keeps_the_old_version_and_lists_employments(client: TestClient) -> None:
    created = new_contact(
        client,
        job_title="Buyer",
        work_email=f"{uuid4().hex}@acme.dk",
        private_email=f"{uuid4().hex}@home.dk",
    )
    cid = created["contact_id"]
    client.post(f"/contacts/{cid}/infotags", json={"tag": "VIP"})
    new_company = str(uuid4())
    response = client.post(
        f"/contacts/{cid}/job-changes",
        json={
            "company_id": new_company,
            "company_name": "Beta ApS",
            "job_title": "CFO",
            "effective_on": "2026-01-01",
        },
        headers={"X-Correlation-ID": "job-move-1"},
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["person_id"] == created["person_id"] and new["predecessor"]["contact_id"] == cid
    new_state = client.get(f"/contacts/{new['contact_id']}").json()
    assert new_state["company_name"] == "Beta ApS" and new_state["work_email"] is None
    assert new_state["private_email"] is not None and new_state["infotags"][0]["tag"] == "VIP"
    old_state = client.get(f"/contacts/{cid}").json()
    assert old_state["status"] == "former" and old_state["ended_on"] == "2026-01-01"
    assert client.patch(f"/contacts/{cid}", json={"job_title": "x"}).status_code == 409
    again = client.post(
        f"/contacts/{cid}/job-changes", json={"company_id": new_company, "company_name": "Beta ApS"}
    )
    assert again.status_code == 409
    employments = client.get(f"/contacts/{new['contact_id']}/employments").json()
    assert [(e["company_name"], e["status"], e["ended_on"]) for e in employments] == [
        ("Acme A/S", "former", "2026-01-01"),
        ("Beta ApS", "current", None),
    ]
    history = client.get(f"/contacts/{cid}/history").json()
    assert history[-1]["type"] == "JobChanged" and history[-1]["correlation_id"] == "job-move-1"


def test_time_travel_by_version_and_date(client: TestClient) -> None:
    cid = new_contact(client, job_title="Buyer")["contact_id"]
    client.patch(f"/contacts/{cid}", json={"job_title": "CFO"})
    assert client.get(f"/contacts/{cid}/as-of?version=1").json()["job_title"] == "Buyer"
    assert client.get(f"/contacts/{cid}/as-of?version=9").status_code == 404
    assert client.get(f"/contacts/{cid}/as-of?at=2000-01-01").status_code == 404
    assert client.get(f"/contacts/{cid}/as-of?at=2999-01-01").json()["job_title"] == "CFO"
    assert client.get(f"/contacts/{cid}/as-of").status_code == 422
    assert client.get(f"/contacts/{cid}/as-of?at=yesterday").status_code == 422


def test_only_the_sync_service_may_switch_another_users_sync_off_with_a_reason(
    client: TestClient,
    token_for,
) -> None:
    cid = new_contact(client)["contact_id"]
    client.put(f"/contacts/{cid}/outlook-sync/me", json={"enabled": True})
    body = {"enabled": False, "reason": "deleted in Outlook by the user"}
    path = f"/contacts/{cid}/outlook-sync/users/alice"
    bob = {"Authorization": f"Bearer {token_for('bob')}"}
    assert client.put(path, json=body, headers=bob).status_code == 403
    sync = {"Authorization": f"Bearer {token_for('svc-outlook-sync', ['outlook-sync'])}"}
    assert client.put(path, json={"enabled": True, "reason": "x"}, headers=sync).status_code == 422
    assert client.put(path, json={"enabled": False}, headers=sync).status_code == 422
    assert client.put(path, json=body, headers=sync).status_code == 200
    state = client.get(f"/contacts/{cid}").json()
    assert state["outlook_sync_users"] == []
    last = client.get(f"/contacts/{cid}/history").json()[-1]
    assert last["type"] == "OutlookSyncToggled" and last["actor"] == "svc-outlook-sync"
    assert last["data"] == {"user_id": "alice", "enabled": False, "reason": body["reason"]}
