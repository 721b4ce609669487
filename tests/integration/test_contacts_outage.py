"""The contacts API answers 503 (try again), not 500, when the person-key store's database
connections break (a PostgreSQL restart) or none can be had."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout

from services.contacts.application import ContactsApp


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.OperationalError("connection refused"),
        PoolTimeout("couldn't get a connection after 30.00 sec"),
    ],
    ids=["admin-shutdown", "refused", "pool-timeout"],
)
def test_a_key_store_outage_is_a_503_with_the_error_body(
    client: TestClient, error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    contacts: ContactsApp = client.app.state.contacts  # type: ignore[attr-defined]

    def refuse(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(contacts.cipher.keys, "get_or_create", refuse)
    monkeypatch.setattr(contacts.cipher.keys, "get", refuse)
    created = client.post(
        "/contacts",
        json={
            "company_id": str(uuid4()),
            "company_name": "Acme",
            "first_names": "Outage",
            "last_names": uuid4().hex,
        },
    )
    assert created.status_code == 503
    assert created.json() == {"detail": "database unavailable, try again"}
