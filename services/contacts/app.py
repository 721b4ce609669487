"""Composition root of the contacts service: builds settings, persistence and the HTTP app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from psycopg_pool import ConnectionPool

from services.contacts.api import install_error_handlers, install_observability, router
from services.contacts.application import ContactsApp
from services.contacts.personal_data import (
    MasterKeys,
    PersonCipher,
    PostgresPersonKeyStore,
    parse_master_key,
)
from services.contacts.photos import PostgresPhotoStore
from services.contacts.sync_keys import router as sync_keys_router
from shared import locks
from shared.contract.spec import asyncapi_document, asyncapi_html
from shared.http import METRICS_RESPONSES, BodyLimitMiddleware, error_responses
from shared.migrations import migrate
from shared.observability import metrics_response
from shared.settings import KontaktSettings

log = logging.getLogger(__name__)


def build_master_keys(settings: KontaktSettings) -> MasterKeys:
    """The master keys from settings."""
    return MasterKeys(
        parse_master_key(settings.master_key.get_secret_value()),
        [parse_master_key(k) for k in settings.previous_master_keys()],
    )


def build_contacts_app(settings: KontaktSettings) -> ContactsApp:
    """Build the application on PostgreSQL, migrating the database first."""
    key_secret = settings.key_secret.get_secret_value().encode()
    pool = ConnectionPool(
        settings.pg_dsn(), min_size=1, max_size=4, open=True, kwargs={"autocommit": True}
    )
    keys = PostgresPersonKeyStore(build_master_keys(settings), pool)
    cipher = PersonCipher(keys, ttl_seconds=settings.key_cache_ttl_seconds)
    photos = PostgresPhotoStore(pool, cipher, key_secret, settings.photo_max_bytes)
    try:
        migrate(settings.pg_dsn())
        # Processes starting together on a new database (API, relay) would race to create
        # the event store's tables, and the library's "if not exists" is not safe against that.
        with pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (locks.EVENT_STORE_SCHEMA,))
            try:
                return ContactsApp(
                    settings.eventsourcing_env(),
                    key_secret=key_secret,
                    photos=photos,
                    cipher=cipher,
                )
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (locks.EVENT_STORE_SCHEMA,))
    except BaseException:
        pool.close()  # a caller that tries again (PostgreSQL not up yet) leaks nothing
        raise


def close_contacts_app(contacts: ContactsApp) -> None:
    """Close the application's connection pools."""
    contacts.photos.close()
    contacts.close()


def create_app(settings: KontaktSettings | None = None) -> FastAPI:
    """The contacts HTTP service; settings come from the environment unless given."""
    settings = settings or KontaktSettings()
    if settings.uses_dev_secrets():
        log.warning("development secrets in use: set KONTAKT_JWT_SECRET and KONTAKT_KEY_SECRET")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.contacts = await run_in_threadpool(build_contacts_app, settings)
        try:
            yield
        finally:
            await run_in_threadpool(close_contacts_app, app.state.contacts)

    app = FastAPI(
        title="Kontakt contacts API",
        description="Commands and event-store reads of contacts. Bearer JWT required.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(router)
    app.include_router(sync_keys_router)
    install_error_handlers(app)
    install_observability(app)
    # Outermost, so an oversized body is refused before any other work.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        overrides=[("PUT", r"/contacts/[^/]+/photo", settings.photo_max_bytes)],
    )

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses=METRICS_RESPONSES,
    )
    def prometheus() -> Response:
        """Prometheus metrics: commands and errors by type, latency."""
        return metrics_response()

    @app.get("/asyncapi.json", tags=["contract"])
    def asyncapi_json() -> dict[str, Any]:
        """The AsyncAPI document of every topic Kontakt publishes and consumes."""
        return asyncapi_document(settings)

    @app.get("/asyncapi", tags=["contract"], response_class=HTMLResponse)
    def asyncapi_page() -> str:
        """The AsyncAPI document as a page."""
        return asyncapi_html(settings)

    @app.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], response_model=None, responses=error_responses(503))
    def ready() -> dict[str, str] | JSONResponse:
        """Readiness: the event store answers."""
        try:
            app.state.contacts.photos.ping()
        except Exception as exc:  # any failure means not ready
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return {"status": "ok"}

    return app
