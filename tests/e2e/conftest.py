"""End-to-end fixtures: Kontakt processes started as a user would start them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import kontakt_server


@pytest.fixture(scope="session")
def contacts_api(
    settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The contacts API as its own process (`kontakt serve contacts`); yields its base URL."""
    log = tmp_path_factory.mktemp("logs") / "contacts-api.log"
    with kontakt_server(["serve", "contacts"], settings_env, log, "/health/ready") as base:
        yield base
