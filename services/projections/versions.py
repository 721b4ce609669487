"""Read-your-writes: wait, without polling, until the read model reflects a contact version.

The worker notifies a channel on commit ("contact_id:version"); one LISTEN
connection per query process wakes the requests waiting for that contact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from uuid import UUID

import asyncpg

from services.projections.sql import contacts as contacts_sql
from shared.settings import KontaktSettings

log = logging.getLogger("kontakt.query")


class VersionWaiter:
    """Waits for contact versions announced by the projection worker."""

    def __init__(self, settings: KontaktSettings, pool: asyncpg.Pool, timeout: float) -> None:
        self.settings = settings
        self.pool = pool
        self.timeout = timeout
        self._waiting: dict[UUID, set[asyncio.Event]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the LISTEN connection (and keep it open)."""
        self._keeper = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        """Close the LISTEN connection."""
        if self._keeper:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def _keep_listening(self) -> None:
        while True:
            try:
                self._conn = await asyncpg.connect(self.settings.pg_dsn())
                await self._conn.add_listener(contacts_sql.CHANNEL, self._notified)
                closed = asyncio.Event()
                self._conn.add_termination_listener(lambda _, done=closed: done.set())
                await closed.wait()
                log.warning("LISTEN connection closed; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN connection failed (%s); retrying", exc)
            # Waiters still time out meanwhile; reconnect without hammering the database.
            await asyncio.sleep(1.0)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        contact, _, _version = payload.partition(":")
        with contextlib.suppress(ValueError):
            for event in self._waiting.get(UUID(contact), ()):
                event.set()

    async def _version(self, contact_id: UUID) -> int | None:
        async with self.pool.acquire() as conn:
            return await contacts_sql.version_of(conn, contact_id)

    async def wait_for(self, contact_id: UUID, version: int) -> int | None:
        """The contact's read-model version once >= version, or the last seen at the timeout."""
        current = await self._version(contact_id)
        if current is not None and current >= version:
            return current
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        event = asyncio.Event()
        self._waiting[contact_id].add(event)
        try:
            while True:
                # Clear, then check: a commit announced after the check wakes the wait.
                event.clear()
                current = await self._version(contact_id)
                if current is not None and current >= version:
                    return current
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return current
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=remaining)
        finally:
            self._waiting[contact_id].discard(event)
            if not self._waiting[contact_id]:
                del self._waiting[contact_id]
