"""Integration fixtures: the contacts application and HTTP app on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.contacts.api_main import create_app
from shared.auth import mint_token
from shared.settings import KontaktSettings


@pytest.fixture(scope="session")
def client(settings: KontaktSettings) -> Iterator[TestClient]:
    """The contacts HTTP app (in process) on the real PostgreSQL, authenticated as alice."""
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {mint_token(settings, 'alice')}"
        yield c


@pytest.fixture
def token_for(settings: KontaktSettings):
    """Mint a token for another user."""
    return lambda sub, roles=None: mint_token(settings, sub, roles or [])
