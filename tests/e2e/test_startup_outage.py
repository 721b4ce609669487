"""A worker started while PostgreSQL or Kafka is down waits for it: it neither exits nor
crashes, says what it waits for, and stops cleanly when asked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.settings import KontaktSettings
from tests.support import env_of, eventually_sync, free_port, start_kontakt, stop_process

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
    proc = start_kontakt(args, env, log)
    try:

        def waiting() -> bool:
            assert proc.poll() is None, f"exited with {proc.returncode}: {log.read_text()}"
            return "unreachable" in log.read_text(errors="replace")

        eventually_sync(waiting, lambda: f"no word of waiting: {log.read_text()}")
        time.sleep(1.0)  # still there after the first retry
        assert proc.poll() is None, f"exited with {proc.returncode}: {log.read_text()}"
    finally:
        code = stop_process(proc, timeout=30)
    assert code == 0, log.read_text()
