"""Composition root of the query API: settings, pool, migrations, version waiter, HTTP app, run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from services.projections.api import companies_router, install_error_handlers, router
from services.projections.db import create_pool, read_models_status
from services.projections.versions import VersionWaiter
from shared.http import BodyLimitMiddleware, api_app
from shared.lifecycle import serve_app
from shared.migrations import migrate_async
from shared.observability import configure_logging, install_health
from shared.settings import KontaktSettings


def create_query_app(settings: KontaktSettings | None = None) -> FastAPI:
    """The query API; settings come from the environment unless given."""
    settings = settings or KontaktSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings, size=10)
        await migrate_async(settings.pg_dsn())
        app.state.waiter = VersionWaiter(
            settings, app.state.pool, timeout=settings.read_your_writes_timeout_seconds
        )
        await app.state.waiter.start()
        app.state.http = httpx.AsyncClient(base_url=settings.contacts_api_url, timeout=10)
        try:
            yield
        finally:
            await app.state.http.aclose()
            await app.state.waiter.stop()
            await app.state.pool.close()

    app = api_app(
        "Kontakt query API",
        "Every tab of the contact page, from the read models. Bearer JWT required.",
        settings,
        lifespan,
    )
    app.include_router(router)
    app.include_router(companies_router)
    # Queries take no body; the limit only keeps a careless client's upload out of memory.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)

    async def ready() -> None:
        async with app.state.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def status() -> dict[str, Any]:
        return {
            "database": settings.pg_address(),
            "read_models": await read_models_status(app.state.pool),
        }

    install_health(app, "query-api", ready, status=status)
    return app


def main(host: str | None = None, port: int | None = None) -> None:
    """Run the query API in the foreground (host and port default to settings)."""
    settings = KontaktSettings()
    configure_logging("query-api", settings.log_level, settings.log_json)
    app = create_query_app(settings)
    asyncio.run(serve_app(app, host or settings.query_host, port or settings.query_port))
