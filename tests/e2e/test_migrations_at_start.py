"""Migrations as processes run them: `kontakt migrate` side by side, each service at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared import locks
from shared.settings import KontaktSettings
from tests.support import (
    env_of,
    eventually_sync,
    free_port,
    kontakt_process,
    migration_ids,
    start_kontakt,
)

#: Every migration Kontakt has, in the order they apply.
MIGRATIONS = migration_ids()

#: Each service: its command, the setting of the port it serves on, and its readiness path.
SERVICES = {
    "contacts API": (["serve", "contacts"], "api_port"),
    "relay": (["relay"], "relay_http_port"),
    "projection worker": (["projections", "worker"], "worker_http_port"),
    "query API": (["projections", "query"], "query_port"),
    "sync worker": (["sync", "worker"], "sync_http_port"),
}


def _log_of(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT migration_id, operation FROM _yoyo_log ORDER BY created_at_utc"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _waiting_for_the_lock(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return int(row[0]) if row else 0


def test_processes_migrating_at_once_apply_each_migration_exactly_once(
    isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    env = env_of(isolated_settings)
    procs = []
    # Held here until all six wait for it, so they contend for real, not one after another.
    with psycopg.connect(isolated_settings.pg_dsn(), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (locks.MIGRATIONS,))
        for n in range(6):
            procs.append(start_kontakt(["migrate"], env, tmp_path / f"migrate-{n}.log"))

        def all_waiting() -> bool:
            assert all(p.poll() is None for p in procs), "a process exited before migrating"
            return _waiting_for_the_lock(holder) >= 6

        eventually_sync(all_waiting, "the processes never waited for the lock", every=0.1)
    codes = [p.wait(timeout=120) for p in procs]
    outputs = [(tmp_path / f"migrate-{n}.log").read_text() for n in range(6)]

    assert codes == [0] * 6, outputs
    applied = [
        name
        for text in outputs
        for line in text.splitlines()
        if line.startswith("applied: ") and "none" not in line
        for name in line.removeprefix("applied: ").split(", ")
    ]
    assert sorted(applied) == sorted(MIGRATIONS)
    assert _log_of(isolated_settings.pg_dsn()) == [(m, "apply") for m in MIGRATIONS]


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_service_started_on_an_unmigrated_database_migrates_it_before_it_serves(
    service: str, isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    args, port_setting = SERVICES[service]
    port = free_port()
    settings = isolated_settings.model_copy(
        update={
            port_setting: port,
            # Neither is called here: nothing is stored, so there is nothing to sync or repair.
            "contacts_api_url": f"http://127.0.0.1:{free_port()}",
            "sync_graph_base_url": f"http://127.0.0.1:{free_port()}",
        }
    )
    ready = f"http://127.0.0.1:{port}/health/ready"

    with kontakt_process(args, env_of(settings), tmp_path / "service.log", ready) as proc:
        assert _log_of(settings.pg_dsn()) == [(m, "apply") for m in MIGRATIONS]
    assert proc.returncode == 0, (tmp_path / "service.log").read_text()
