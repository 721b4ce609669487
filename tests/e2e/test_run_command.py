"""The README's run command: brings the API up on the real servers and stops what it started."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from uuid import uuid4

import httpx

from tests.e2e.conftest import ROOT, free_port, wait_ready


def test_run_serves_the_api_with_the_printed_token_and_stops_on_ctrl_c(
    settings_env: dict[str, str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**settings_env, "KONTAKT_API_PORT": str(port)}
    out = tmp_path / "run.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run"],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health/ready", proc)
        printed = out.read_text()
        assert f"http://127.0.0.1:{port}" in printed
        token = re.search(r"token for user 'demo': (\S+)", printed)
        assert token, printed
        created = httpx.post(
            f"http://127.0.0.1:{port}/contacts",
            headers={"Authorization": f"Bearer {token.group(1)}"},
            json={
                "company_id": str(uuid4()),
                "company_name": "Run Co",
                "first_names": "R",
                "last_names": "Un",
            },
        )
        assert created.status_code == 201, created.text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=0.5)
        except httpx.HTTPError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the API still answers after the run command stopped")
