"""End-to-end fixtures: Kontakt processes started as a user would start them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import free_port, kontakt_process


@pytest.fixture(scope="session")
def contacts_api(
    settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The contacts API as its own process (`kontakt serve contacts`); yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "contacts-api.log"
    base = f"http://127.0.0.1:{port}"
    args = ["serve", "contacts", "--port", str(port)]
    with kontakt_process(args, settings_env, log, f"{base}/health/ready"):
        yield base
