"""A worker started while PostgreSQL or Kafka is down waits for it: it neither exits nor
crashes, says what it waits for, and stops cleanly when asked."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import KontaktSettings
from tests.conftest import env_of
from tests.processes import ROOT, free_port

CASES = {
    "relay, PostgreSQL down": (["relay"], "pg_port"),
    "projection worker, PostgreSQL down": (["projections", "worker"], "pg_port"),
    "projection worker, Kafka down": (["projections", "worker"], "kafka"),
    "sync worker, PostgreSQL down": (["sync", "worker"], "pg_port"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_worker_started_during_an_outage_waits_and_stops_cleanly(
    case: str, isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    args, down = CASES[case]
    closed = free_port()  # nothing listens there
    update = (
        {"pg_port": closed} if down == "pg_port" else {"kafka_bootstrap": f"127.0.0.1:{closed}"}
    )
    env = env_of(isolated_settings.model_copy(update=update))
    log = tmp_path / "process.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "unreachable" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"exited with {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"no word of waiting: {log.read_text()}"
            time.sleep(0.2)
        time.sleep(1.0)  # still there after the first retry
        assert proc.poll() is None, f"exited with {proc.returncode}: {log.read_text()}"
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
