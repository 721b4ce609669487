"""The contacts API's per-person sync keys, on the real PostgreSQL."""

from __future__ import annotations

import base64
from uuid import uuid4

from fastapi.testclient import TestClient

from shared.auth import ADMIN_ROLE, OUTLOOK_SYNC_ROLE, mint_token
from shared.settings import KontaktSettings


def _create(client: TestClient) -> dict[str, str]:
    response = client.post(
        "/contacts",
        json={
            "company_id": str(uuid4()),
            "company_name": "Keys Ltd",
            "first_names": f"K{uuid4().hex[:6]}",
            "last_names": "Holder",
        },
    )
    assert response.status_code == 201, response.text
    contact = client.get(f"/contacts/{response.json()['contact_id']}").json()
    return {"contact_id": contact["id"], "person_id": contact["person_id"]}


def test_only_the_sync_role_gets_a_persons_sync_key_and_none_after_erasure(
    client: TestClient, settings: KontaktSettings
) -> None:
    ids = _create(client)
    sync = {"Authorization": f"Bearer {mint_token(settings, 'outlook-sync', [OUTLOOK_SYNC_ROLE])}"}
    admin = {"Authorization": f"Bearer {mint_token(settings, 'dpo', [ADMIN_ROLE])}"}
    path = f"/persons/{ids['person_id']}/sync-key"

    assert client.get(path).status_code == 403  # alice, an ordinary user
    first = client.get(path, headers=sync)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    key = base64.b64decode(first.json()["key"])
    assert len(key) == 32
    assert client.get(path, headers=sync).json()["key"] == first.json()["key"]  # stable
    assert client.get(f"/persons/{uuid4()}/sync-key", headers=sync).status_code == 404

    erased = client.post(
        f"/contacts/{ids['contact_id']}/erase", json={"reason": "request"}, headers=admin
    )
    assert erased.status_code == 200, erased.text
    gone = client.get(path, headers=sync)
    assert gone.status_code == 410 and "detail" in gone.json()
