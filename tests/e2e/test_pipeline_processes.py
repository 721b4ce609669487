"""The pipeline as separate processes: contacts API -> relay -> worker -> query API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, free_port, start_kontakt, stop_processes, wait_ready


@pytest.fixture
def processes(isolated_settings: KontaktSettings, tmp_path: Path) -> Iterator[KontaktSettings]:
    api, query = free_port(), free_port()
    settings = isolated_settings.model_copy(
        update={"api_port": api, "query_port": query, "contacts_api_url": f"http://127.0.0.1:{api}"}
    )
    env = env_of(settings)
    commands = {
        "api": ["serve", "contacts"],
        "relay": ["relay"],
        "worker": ["projections", "worker"],
        "query": ["projections", "query"],
    }
    procs = {}
    for name, args in commands.items():
        procs[name] = start_kontakt(args, env, tmp_path / f"{name}.log")
    try:
        wait_ready(f"http://127.0.0.1:{api}/health/ready", procs["api"])
        wait_ready(f"http://127.0.0.1:{query}/health/ready", procs["query"])
        yield settings
    finally:
        codes = stop_processes(procs, timeout=30)
        assert codes == dict.fromkeys(procs, 0), codes


def test_a_command_shows_on_the_query_api_through_every_process(processes: KontaktSettings) -> None:
    s = processes
    auth = {"Authorization": f"Bearer {mint_token(s, 'alice')}"}
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", headers=auth, timeout=30) as cmd,
        httpx.Client(base_url=f"http://127.0.0.1:{s.query_port}", headers=auth, timeout=30) as q,
    ):
        created = cmd.post(
            "/contacts",
            json={
                "company_id": str(uuid4()),
                "company_name": "Proc A/S",
                "first_names": "Per",
                "last_names": "Proces",
                "job_title": "Buyer",
            },
        ).json()
        moved = cmd.post(
            f"/contacts/{created['contact_id']}/job-changes",
            json={"company_id": str(uuid4()), "company_name": "Proc B", "job_title": "CTO"},
        ).json()
        # Read-your-writes: wait (bounded) for the version the command returned.
        for _ in range(20):
            response = q.get(
                f"/contacts/{moved['contact_id']}/employments",
                params={"min_version": moved["version"]},
            )
            if response.status_code == 200:
                break
            assert response.status_code == 412, response.text
        employments = response.json()
        assert [(e["company_name"], e["status"]) for e in employments] == [
            ("Proc A/S", "former"),
            ("Proc B", "current"),
        ]
        found = q.get("/contacts", params={"name": "proc"}).json()
        assert [c["contact_id"] for c in found["items"]] == [moved["contact_id"]]
