"""Reading a whole topic back, for tests on the real Kafka."""

from __future__ import annotations

import asyncio

from shared.kafka import Record, read_topic, topic_partitions

__all__ = ["Record", "read_topic", "read_topic_sync", "topic_partitions"]


def read_topic_sync(bootstrap: str, topic: str) -> list[Record]:
    """read_topic for synchronous tests."""
    return asyncio.run(read_topic(bootstrap, topic))
