"""The whole pipeline in one test process, on the real servers: commands -> store ->
relay -> Kafka -> projection worker -> read models -> query API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer

from services.contacts.api_main import create_app
from services.contacts.application import ContactsApp
from services.contacts.relay import Relay
from services.contacts.store import build_contacts_app, close_contacts_app
from services.projections.db import create_pool
from services.projections.query_main import create_query_app
from services.projections.worker import FAMILIES, Worker, group_id, topics_of
from shared.auth import mint_token
from shared.lag import group_lag
from shared.settings import KontaktSettings
from shared.stall import PartitionLag
from tests.support import eventually, free_port, relay_until_caught_up


class Server:
    """A uvicorn server for an ASGI app, as a task of the running loop."""

    def __init__(self, app: Any, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = self.task = asyncio.create_task(self.server.serve())

        def started() -> bool:
            assert not task.done(), task.exception()
            return self.server.started

        await eventually(started, "the server did not start", every=0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task


class Pipeline:
    """Every piece of Kontakt, in process, on isolated settings."""

    def __init__(self, settings: KontaktSettings) -> None:
        self.settings = settings.model_copy(
            update={
                "api_port": (port := free_port()),
                "query_port": free_port(),
                "contacts_api_url": f"http://127.0.0.1:{port}",
            }
        )
        self.contacts: ContactsApp | None = None
        self.worker: Worker | None = None
        self.relay_position = 0

    async def start(self, families: Sequence[str] = FAMILIES, worker: bool = True) -> Pipeline:
        s = self.settings
        self.contacts = await asyncio.to_thread(build_contacts_app, s)
        self.pool = await create_pool(s)
        if worker:
            self.worker = Worker(s, self.pool, families)
            await self.worker.start()
        self.contacts_api = Server(create_app(s), s.api_port)
        self.query_api = Server(create_query_app(s), s.query_port)
        await self.contacts_api.start()
        await self.query_api.start()
        token = mint_token(s, "alice")
        auth = {"Authorization": f"Bearer {token}"}
        self.command = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{s.api_port}", headers=auth, timeout=30
        )
        self.query = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{s.query_port}", headers=auth, timeout=30
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
        await self.producer.start()
        return self

    async def stop(self) -> None:
        await self.producer.stop()
        await self.command.aclose()
        await self.query.aclose()
        await self.query_api.stop()
        await self.contacts_api.stop()
        if self.worker:
            await self.worker.stop()
        await self.pool.close()
        if self.contacts:
            await asyncio.to_thread(close_contacts_app, self.contacts)

    async def relay(self) -> None:
        """Publish everything stored so far (a relay run until caught up)."""
        assert self.contacts is not None
        relay = Relay(self.settings, self.contacts)
        self.relay_position = await relay_until_caught_up(relay, self.contacts)

    async def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Publish a raw message (an inbound event, or a malformed one)."""
        await self.producer.send_and_wait(topic, value, key=key)

    async def settle(self, families: Sequence[str] = FAMILIES, timeout: float = 60) -> None:
        """Relay what is stored, then wait until every family's group has no lag."""
        await self.relay()
        await wait_no_lag(self.settings, families, timeout)


async def wait_no_lag(
    settings: KontaktSettings, families: Sequence[str], timeout: float = 60
) -> None:
    """Wait until the families' consumer groups committed everything on their topics."""
    behind: list[PartitionLag] = []

    async def caught_up() -> bool:
        nonlocal behind
        lags = []
        for family in families:
            lags += await group_lag(
                settings.kafka_bootstrap, group_id(family), topics_of(settings, family)
            )
        behind = [p for p in lags if p.lag > 0]
        return not behind

    await eventually(caught_up, lambda: f"workers still behind: {behind[:5]}", timeout)


@contextlib.asynccontextmanager
async def pipeline(settings: KontaktSettings, **kwargs: Any):
    """A started pipeline, stopped afterwards."""
    p = await Pipeline(settings).start(**kwargs)
    try:
        yield p
    finally:
        await p.stop()
