"""The read models' database: one asyncpg pool for every projections process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.projections.availability import DatabaseUnavailableError
from services.projections.sql import contacts as contacts_sql
from shared.settings import KontaktSettings


async def create_pool(settings: KontaktSettings, size: int = 4) -> asyncpg.Pool:
    """An asyncpg pool; no statement cache, so a rebuild's schema swap is seen at once."""
    pool = await asyncpg.create_pool(
        settings.pg_dsn(), min_size=1, max_size=size, statement_cache_size=0
    )
    if pool is None:  # asyncpg returns None only when told not to connect
        raise DatabaseUnavailableError("asyncpg made no pool")
    return pool


@asynccontextmanager
async def pool_for(settings: KontaktSettings, size: int = 1) -> AsyncIterator[asyncpg.Pool]:
    """A pool for one command's work, closed when the block ends."""
    pool = await create_pool(settings, size)
    try:
        yield pool
    finally:
        await pool.close()


async def read_models_status(pool: asyncpg.Pool) -> dict[str, object]:
    """How far each read model that follows the store has got."""
    async with pool.acquire() as conn:
        return {"contacts": {"position": await contacts_sql.position(conn)}}
