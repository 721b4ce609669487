"""Composition root of the contacts API: settings, the event store, the HTTP app, health, run."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from services.contacts.api import (
    companies,
    infotags,
    install_error_handlers,
    install_observability,
    router,
)
from services.contacts.application import ContactsApp
from services.contacts.store import (
    backfill_infotags_once,
    backfill_near_keys_once,
    build_contacts_app,
    close_contacts_app,
    store_status,
)
from services.contacts.sync_keys import router as sync_keys_router
from shared.contract.spec import asyncapi_document, asyncapi_html
from shared.http import BodyLimitMiddleware, api_app
from shared.observability import configure_logging, install_health
from shared.settings import KontaktSettings

log = logging.getLogger(__name__)


def create_app(settings: KontaktSettings | None = None) -> FastAPI:
    """The contacts HTTP service; settings come from the environment unless given."""
    settings = settings or KontaktSettings()
    if settings.uses_dev_secrets():
        log.warning("development secrets in use: set KONTAKT_JWT_SECRET and KONTAKT_KEY_SECRET")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.contacts = await run_in_threadpool(build_contacts_app, settings)
        stopping = threading.Event()
        # Beside serving: contacts created meanwhile join their keys themselves.
        backfill = threading.Thread(
            target=_backfill, args=(app.state.contacts, settings, stopping), daemon=True
        )
        backfill.start()
        try:
            yield
        finally:
            stopping.set()
            await run_in_threadpool(backfill.join)
            await run_in_threadpool(close_contacts_app, app.state.contacts)

    app = api_app(
        "Kontakt contacts API",
        "Commands and event-store reads of contacts. Bearer JWT required.",
        settings,
        lifespan,
    )
    app.include_router(router)
    app.include_router(companies)
    app.include_router(infotags)
    app.include_router(sync_keys_router)
    install_error_handlers(app)
    install_observability(app)
    # Outermost, so an oversized body is refused before any other work.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        overrides=[("PUT", r"/contacts/[^/]+/photo", settings.photo_max_bytes)],
    )

    async def ready() -> None:
        await run_in_threadpool(app.state.contacts.photos.ping)

    async def status() -> dict[str, Any]:
        return {"database": settings.pg_address(), "store": await store_status(settings)}

    install_health(app, "contacts-api", ready, status=status)

    @app.get("/asyncapi.json", tags=["contract"])
    def asyncapi_json() -> dict[str, Any]:
        """The AsyncAPI document of every topic Kontakt publishes and consumes."""
        return asyncapi_document(settings)

    @app.get("/asyncapi", tags=["contract"], response_class=HTMLResponse)
    def asyncapi_page() -> str:
        """The AsyncAPI document as a page."""
        return asyncapi_html(settings)

    return app


def _backfill(contacts: ContactsApp, settings: KontaktSettings, stopping: threading.Event) -> None:
    for once, what in (
        (backfill_near_keys_once, "near-duplicate keys joined for %d contacts stored before them"),
        (backfill_infotags_once, "infotag catalogue: %d names placed before it defined"),
    ):
        try:
            done = once(contacts, settings, stopping.is_set)
        except Exception:
            # Not fatal to serving: the next start tries again (each backfill is idempotent).
            log.exception("backfill failed: %s", once.__name__)
            return
        if done is not None:
            log.info(what, done)


async def run(settings: KontaktSettings, host: str, port: int) -> None:
    """Serve the contacts API until SIGTERM or SIGINT."""
    from shared.lifecycle import serve_app

    await serve_app(create_app(settings), host, port)


def main(host: str | None = None, port: int | None = None) -> None:
    """Run the contacts API in the foreground (host and port default to settings)."""
    import asyncio

    settings = KontaktSettings()
    configure_logging("contacts-api", settings.log_level, settings.log_json)
    asyncio.run(run(settings, host or settings.api_host, port or settings.api_port))
