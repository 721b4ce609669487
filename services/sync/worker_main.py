"""Composition root of the sync worker: settings, clients, store, health, signals, run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from services.sync.contacts_api import ContactsClient
from services.sync.graph import GraphClient
from services.sync.sealing import PersonKeys
from services.sync.store import SyncStore
from services.sync.worker import SyncWorker
from shared.lag import ConsumerMonitor
from shared.lifecycle import HttpServer, stop_on_signals
from shared.observability import configure_logging, health_app
from shared.settings import KontaktSettings
from shared.waiting import until_it_answers

log = logging.getLogger("kontakt.sync.worker")


def is_store_outage(exc: BaseException) -> bool:
    """True when opening the sync store failed because PostgreSQL is not there (yet)."""
    return isinstance(exc, psycopg.OperationalError | PoolTimeout | OSError)


async def run(settings: KontaktSettings, stop: asyncio.Event) -> None:
    """Build the worker from settings and run it until stop is set."""
    graph = GraphClient(settings)
    contacts = ContactsClient(settings)
    keys = PersonKeys(contacts.sync_key, settings.sync_key_cache_ttl_seconds)
    # Started while PostgreSQL is down (a restart, a deploy), the worker waits for it.
    opened = await until_it_answers(
        "opening the sync store",
        lambda: SyncStore.open(settings.pg_dsn(), keys=keys),
        is_store_outage,
        stop,
        log,
    )
    if opened is None:
        await graph.aclose()
        await contacts.aclose()
        return
    store = opened

    monitor = ConsumerMonitor(
        settings.kafka_bootstrap,
        {settings.sync_consumer_group: [settings.contacts_topic]},
        settings.consumer_stall_seconds,
    )

    async def ready() -> None:
        await store.ping()
        monitor.check()  # lag with no committed progress is not ready

    async def status() -> dict[str, Any]:
        return {
            "database": settings.pg_address(),
            "sync": await store.counts(),
            "stalled": [s.as_dict() for s in monitor.detector.stalls],
        }

    health = HttpServer(
        health_app("sync", ready, {"/lag": monitor.lag}, status),
        settings.health_host,
        settings.sync_http_port,
    )
    await health.start()
    # Samples the group's committed offsets for the lag gauges and stall verdict.
    sampling = asyncio.create_task(monitor.run(stop))
    try:
        await SyncWorker(settings, store, graph, contacts).run(stop)
    finally:
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        await health.stop()
        await graph.aclose()
        await contacts.aclose()
        await store.close()


def main() -> None:
    """Run the sync worker in the foreground until SIGTERM or SIGINT."""
    settings = KontaktSettings()
    configure_logging("sync", settings.log_level, settings.log_json)

    async def until_stopped() -> None:
        await run(settings, stop_on_signals())

    asyncio.run(until_stopped())
