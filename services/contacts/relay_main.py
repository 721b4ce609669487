"""Composition root of the relay: settings, the event store, health, signals, run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.contacts.relay import Relay, is_store_outage, recorded_position, relay_until_stopped
from services.contacts.store import close_contacts_app, open_contacts_app
from shared.lifecycle import HttpServer, stop_on_signals
from shared.observability import configure_logging, health_app
from shared.settings import KontaktSettings

log = logging.getLogger("kontakt.relay")


async def run(settings: KontaktSettings) -> None:
    """Run one relay process until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    # Started while PostgreSQL is down (a restart, a deploy), the relay waits for it.
    contacts = await open_contacts_app(settings, is_store_outage, stop, log)
    if contacts is None:
        return
    relay = Relay(settings, contacts)

    async def ready() -> None:
        await asyncio.to_thread(contacts.photos.ping)

    async def status() -> dict[str, Any]:
        # The position in memory is the newest; the recorded one says when it moved.
        recorded = await recorded_position(settings, relay.name)
        return {
            "database": settings.pg_address(),
            "relay": {
                "active": relay.active,
                "position": max(relay.position, recorded["position"]),
                "published": relay.published,
                "updated_at": recorded["updated_at"],
            },
        }

    health = HttpServer(
        health_app("relay", ready, status=status), settings.health_host, settings.relay_http_port
    )
    await health.start()
    try:
        await relay_until_stopped(relay, stop)
    finally:
        await health.stop()
        await asyncio.to_thread(close_contacts_app, contacts)
    log.info("stopped")


def main() -> None:
    """Run the relay in the foreground."""
    settings = KontaktSettings()
    configure_logging("relay", settings.log_level, settings.log_json)
    asyncio.run(run(settings))
