"""schemathesis against both APIs, served for real on the test PostgreSQL: every generated
request (valid and invalid, from the APIs' own OpenAPI documents) gets a documented status,
a body of the documented schema, and never a server error."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from services.contacts.api_main import create_app
from services.projections.query_main import create_query_app
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.conftest import MEASURED
from tests.support import eventually_sync, free_port

CONFIG = Path(__file__).with_name("schemathesis.toml")

#: Examples per operation and phase: bounds the whole run (both APIs) to a few minutes.
EXAMPLES = 8


class ThreadServer:
    """A uvicorn server for an ASGI app in a thread of its own."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()

        def started() -> bool:
            assert self.thread.is_alive(), "the server stopped while starting"
            return self.server.started

        eventually_sync(started, "the server did not start", every=0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def auth(settings: KontaktSettings) -> dict[str, str]:
    """A token with every role, so generated requests reach the handlers."""
    token = mint_token(settings, "fuzzer", ["admin", "outlook-sync"])
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def contacts_url(settings: KontaktSettings) -> Iterator[str]:
    """The contacts API, served by uvicorn on the test database."""
    with ThreadServer(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def query_url(settings: KontaktSettings, contacts_url: str) -> Iterator[str]:
    """The query API, served by uvicorn on the test database."""
    # A generated min_version is rarely reached: waiting the default 2 s for each would
    # spend the run's budget on waiting.
    fast = {"contacts_api_url": contacts_url, "read_your_writes_timeout_seconds": 0.1}
    app = create_query_app(settings.model_copy(update=fast))
    with ThreadServer(app) as url:
        yield url


def schemathesis_run(url: str, auth: dict[str, str], report: Path) -> None:
    """Run schemathesis (its CLI, every check) against a served API; fail with its report."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{url}/openapi.json",
        "--checks", "all",
        # A new contact has no photo yet (GET …/photo is 404 until one is uploaded), which
        # the created-resource check cannot know; with --checks all it ignores the
        # config's per-operation exemptions. That a created contact is readable at once is
        # what the read-your-writes tests prove.
        "--exclude-checks", "ensure_resource_availability",
        "--max-examples", str(EXAMPLES),
        "--seed", "11",
        "--workers", "1",
        "--header", f"Authorization: {auth['Authorization']}",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report)
    summary = [line for line in done.stdout.splitlines() if "passed" in line or "failed" in line]
    MEASURED.append(f"schemathesis {url}: {summary[-1] if summary else done.stdout[-200:]}")
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]


def test_contacts_api_answers_every_generated_request_as_documented(
    contacts_url: str, auth: dict[str, str], tmp_path: Path
) -> None:
    schemathesis_run(contacts_url, auth, tmp_path)


def test_query_api_answers_every_generated_request_as_documented(
    query_url: str, auth: dict[str, str], tmp_path: Path
) -> None:
    schemathesis_run(query_url, auth, tmp_path)
