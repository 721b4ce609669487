"""Start, stop and inspect the local PostgreSQL + Kafka (KRaft) stack for development and tests.

The on-disk layout is described in devstack/config.py; `kontakt stack up|down|status` is
the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from devstack import kafka, postgres
from devstack.config import HOST, Paths, StackConfig, StackError, StackInfo
from devstack.processes import locked, port_accepts

__all__ = [
    "StackConfig",
    "StackError",
    "StackInfo",
    "down",
    "ensure_database",
    "start_kafka",
    "start_postgres",
    "status",
    "stop_kafka",
    "stop_postgres",
    "up",
]


def up(
    cfg: StackConfig, *, timeout: float = 120.0, progress: Callable[[str], None] = print
) -> StackInfo:
    """Start (or reuse) PostgreSQL and Kafka and return once both accept clients.

    `timeout` bounds the wait for the servers to become ready; a first-time apt-get
    install or Maven download has its own, longer limits.
    """
    paths = Paths.of(cfg)
    t0 = time.monotonic()
    with locked(paths):
        for d in (paths.logs, paths.run):
            d.mkdir(parents=True, exist_ok=True)
        bindir = postgres.install(progress, paths)
        # Launch the JVM first: it boots while PostgreSQL is initialised and started.
        kafka_pid, started = kafka.launch(cfg, paths, progress)
        deadline = time.monotonic() + timeout
        try:
            postgres.start(cfg, paths, bindir, deadline, progress)
            kafka.wait_ready(cfg, paths, kafka_pid, deadline)
        except BaseException:
            # Do not leave a half-started broker behind; a running PostgreSQL is harmless.
            if started:
                kafka.stop(paths)
            raise
        progress(f"kafka: ready at {HOST}:{cfg.kafka_port}")
    progress(f"stack: up in {time.monotonic() - t0:.1f}s (logs in {paths.logs})")
    return StackInfo.of(cfg)


def down(cfg: StackConfig) -> list[str]:
    """Stop the servers this stack started (by pid file); return what was done."""
    paths = Paths.of(cfg)
    if not paths.root.exists():
        return ["nothing running"]
    lines: list[str] = []
    with locked(paths):
        for stop in (kafka.stop, postgres.stop):
            line = stop(paths)
            if line:
                lines.append(line)
    return lines or ["nothing running"]


def stop_kafka(cfg: StackConfig) -> str | None:
    """Stop only the Kafka broker (for outage drills); PostgreSQL keeps running."""
    paths = Paths.of(cfg)
    with locked(paths):
        return kafka.stop(paths)


def start_kafka(cfg: StackConfig, *, timeout: float = 120.0) -> None:
    """Start the Kafka broker again (reusing its storage) and wait until it serves clients."""
    paths = Paths.of(cfg)
    with locked(paths):
        pid, _ = kafka.launch(cfg, paths, lambda _: None)
        kafka.wait_ready(cfg, paths, pid, time.monotonic() + timeout)


def stop_postgres(cfg: StackConfig) -> str | None:
    """Stop only PostgreSQL (for outage drills); Kafka keeps running."""
    paths = Paths.of(cfg)
    with locked(paths):
        return postgres.stop(paths)


def start_postgres(cfg: StackConfig, *, timeout: float = 120.0) -> None:
    """Start PostgreSQL again (reusing its data) and wait until it serves clients."""
    paths = Paths.of(cfg)
    with locked(paths):
        bindir = postgres.install(lambda _: None, paths)
        postgres.start(cfg, paths, bindir, time.monotonic() + timeout, lambda _: None)


def status(cfg: StackConfig) -> dict[str, Any]:
    """Report which servers run and how to connect to them."""
    paths = Paths.of(cfg)
    info = StackInfo.of(cfg)
    pg_pid = postgres.running_pid(paths) if paths.pg_data.exists() else None
    kafka_pid = kafka.running_pid(paths)
    libs = sorted(paths.kafka_root.glob("libs-*")) if paths.kafka_root.exists() else []
    return {
        "postgres": {
            "running": pg_pid is not None and port_accepts(cfg.pg_port),
            "pid": pg_pid,
            "host": HOST,
            "port": cfg.pg_port,
            "user": cfg.pg_user,
            "database": cfg.pg_database,
            "dsn": info.pg_dsn(),
            "data_dir": str(paths.pg_data),
        },
        "kafka": {
            "running": kafka_pid is not None and port_accepts(cfg.kafka_port),
            "pid": kafka_pid,
            "port": cfg.kafka_port,
            "controller_port": cfg.kafka_controller_port,
            "bootstrap": info.kafka_bootstrap,
            "libs": str(libs[-1]) if libs else None,
            "data_dir": str(paths.kafka_data),
        },
        "log_dir": str(paths.logs),
        "state_dir": str(paths.root),
    }


def ensure_database(info: StackInfo, name: str) -> None:
    """CREATE DATABASE name (owner pg_user) if it does not exist yet."""
    postgres.create_database(info, name)
