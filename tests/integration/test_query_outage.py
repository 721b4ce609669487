"""The query API answers 503 (try again), not 500, while PostgreSQL shuts down or starts up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from fastapi.testclient import TestClient

from services.projections.query_main import create_query_app
from shared.auth import mint_token
from shared.settings import KontaktSettings


class RefusingPool:
    """A pool whose every acquire fails as PostgreSQL would."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def acquire(self, *_: Any, **__: Any) -> Any:
        raise self.error


@pytest.fixture
def query(settings: KontaktSettings) -> Iterator[TestClient]:
    """The query API on the real database, authenticated (its real pool closed at the end)."""
    with TestClient(create_query_app(settings)) as client:
        state: Any = client.app.state  # type: ignore[attr-defined]
        pool = state.pool
        client.headers["Authorization"] = f"Bearer {mint_token(settings, 'alice')}"
        try:
            yield client
        finally:
            state.pool = pool


def refuse_connections(query: TestClient, error: Exception) -> None:
    """Make every connection the query API asks for fail with error."""
    state: Any = query.app.state  # type: ignore[attr-defined]
    state.pool = RefusingPool(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    ],
    ids=["starting-up", "shutting-down", "too-many-clients"],
)
def test_a_database_going_away_is_a_503_with_the_error_body(
    query: TestClient, error: Exception
) -> None:
    refuse_connections(query, error)
    answer = query.get(f"/contacts/{uuid4()}")
    assert answer.status_code == 503
    assert answer.json() == {"detail": "read models unavailable, try again"}


def test_any_other_database_error_is_a_500_with_the_error_body(query: TestClient) -> None:
    error = asyncpg.exceptions.UndefinedTableError('relation "rm.contacts" does not exist')
    refuse_connections(query, error)
    answer = TestClient(query.app, raise_server_exceptions=False).get(
        f"/contacts/{uuid4()}", headers=dict(query.headers)
    )
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error"}
