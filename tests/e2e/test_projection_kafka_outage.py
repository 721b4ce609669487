"""The projection worker when Kafka goes down while a dead letter is being written."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

from devstack import stack as launcher
from shared.kafka import read_topic
from shared.settings import KontaktSettings
from tests.conftest import MEASURED
from tests.pipeline import pipeline, wait_no_lag
from tests.support import eventually


async def test_a_dead_letter_kafka_cannot_take_is_not_committed_and_comes_again(
    isolated_settings: KontaktSettings,
) -> None:
    # Enough attempts (about 20 s of retries) for Kafka to be down before they end.
    own = isolated_settings.model_copy(update={"projection_max_attempts": 15})
    async with pipeline(own) as p:
        assert p.worker is not None
        s = p.settings
        worker = p.worker
        async with p.pool.acquire() as conn:
            await conn.execute(
                "ALTER TABLE ledger.items ADD CONSTRAINT refused_title"
                " CHECK (title IS NULL OR title <> 'Refused')"
            )
        refused = {
            "event_id": str(uuid4()),
            "type": "Created",
            "occurred_at": "2026-01-01T00:00:00Z",
            "item_id": str(uuid4()),
            "title": "Refused",
            "status": "open",
        }
        meta = await p.producer.send_and_wait(
            s.projects_topic, json.dumps(refused).encode(), key=b"r"
        )

        async def retrying() -> bool:
            return worker.stats.retries >= 1

        await eventually(retrying, "the refused message to be retried")
        # Kafka goes down while the message is being retried: its dead letter fails.
        cfg = launcher.StackConfig.from_env()
        await asyncio.to_thread(launcher.stop_kafka, cfg)
        try:

            async def failed() -> bool:
                return worker.stats.outages >= 1

            await eventually(failed, "the dead letter to fail", timeout=180)
            assert worker.stats.dead_lettered == 0
        finally:
            await asyncio.to_thread(launcher.start_kafka, cfg)
        # Not committed: once Kafka is back the message comes again and is dead-lettered.
        await wait_no_lag(s, ["items"], timeout=180)
        letters = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
        origins = {
            (r.header("x-original-partition"), r.header("x-original-offset")) for r in letters
        }
        assert origins == {(str(meta.partition), str(meta.offset))}
        assert worker.stats.dead_lettered >= 1
        MEASURED.append(
            f"dead letter during a Kafka outage: {len(letters)} letter(s) for 1 message,"
            f" {worker.stats.outages} outage waits"
        )
