"""Composition root of the projection worker: settings, pool, consumers, health, signals, run."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from services.projections.db import create_pool, read_models_status
from services.projections.worker import Worker, consumer_monitor, group_id, is_startup_outage
from shared.lifecycle import HttpServer, stop_on_signals
from shared.observability import configure_logging, health_app
from shared.settings import KontaktSettings
from shared.waiting import until_it_answers

log = logging.getLogger("kontakt.projections")


async def run(settings: KontaktSettings, families: Sequence[str]) -> None:
    """Run a worker process until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    # Started while PostgreSQL or Kafka is down (a restart, a deploy), the worker waits.
    pool = await until_it_answers(
        "opening the read models' pool", lambda: create_pool(settings), is_startup_outage, stop, log
    )
    if pool is None:
        return
    worker = Worker(settings, pool, families)
    monitor = consumer_monitor(settings, worker.families)

    async def ready() -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        monitor.check()  # a group with lag and no committed progress is not ready

    async def status() -> dict[str, Any]:
        return {
            "database": settings.pg_address(),
            "read_models": await read_models_status(pool),
            "families": {f: group_id(f) for f in worker.families},
            "handled": dataclasses.asdict(worker.stats),
            "stalled": [s.as_dict() for s in monitor.detector.stalls],
        }

    health = HttpServer(
        health_app("projections", ready, {"/lag": monitor.lag}, status),
        settings.health_host,
        settings.worker_http_port,
    )
    sampling: asyncio.Task[None] | None = None
    try:

        async def start() -> bool:
            await worker.start()
            return True

        if not await until_it_answers("starting", start, is_startup_outage, stop, log):
            return
        await health.start()
        log.info("consuming %s", ", ".join(f"{f} ({group_id(f)})" for f in worker.families))
        # Samples the groups' committed offsets for the lag gauges and stall verdict.
        sampling = asyncio.create_task(monitor.run(stop))
        await stop.wait()
    finally:
        if sampling is not None:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        await health.stop()
        await worker.stop()  # the in-flight message finishes and is committed
        await pool.close()
    log.info("stopped")


def main(families: Sequence[str]) -> None:
    """Run a projection worker of these read-model families in the foreground."""
    settings = KontaktSettings()
    configure_logging("projections", settings.log_level, settings.log_json)
    asyncio.run(run(settings, families))
