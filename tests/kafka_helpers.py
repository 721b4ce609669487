"""Kafka for tests on the real broker: reading a whole topic back, and the test topics'
names, which say which test session made them so that finished sessions' topics are swept."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Container, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from devstack.processes import pid_alive
from shared.kafka import Record, delete_topics, read_topic, topic_names, topic_partitions

__all__ = [
    "SESSION",
    "Record",
    "read_topic",
    "read_topic_sync",
    "registered_session",
    "running_sessions",
    "stale_test_topics",
    "sweep_test_topics",
    "topic_partitions",
    "topic_suffix",
]

#: This test session's mark, carried by every topic its tests name.
SESSION = uuid.uuid4().hex[:6]

#: A test topic's name ends `.ts<session><anything>`.
SESSION_TOPIC = re.compile(r"\.ts(?P<session>[0-9a-f]{6})[0-9a-z]*$")

#: The names test runs gave their topics before those carried a session: none is running.
UNMARKED_TEST_TOPIC = re.compile(
    r"^(?:(?:contacts|infotags|activities|opportunities|campaigns|projects)\.events\.(?:t|r|sync)?"
    r"|kontakt\.dead-letters\.|outlook-sync\.events\.|[acokp]\.)[0-9a-f]{8,10}$"
)


def topic_suffix(label: str = "") -> str:
    """A topic-name suffix of this session's own (`label` makes the name easier to read)."""
    return f"ts{SESSION}{label}{uuid.uuid4().hex[:8]}"


def read_topic_sync(bootstrap: str, topic: str) -> list[Record]:
    """read_topic for synchronous tests."""
    return asyncio.run(read_topic(bootstrap, topic))


def stale_test_topics(names: Iterable[str], running: Container[str]) -> list[str]:
    """The test topics no running session can still use; other topics are never named."""
    stale = []
    for name in names:
        marked = SESSION_TOPIC.search(name)
        if marked is not None:
            if marked["session"] not in running:
                stale.append(name)
        elif UNMARKED_TEST_TOPIC.match(name):
            stale.append(name)
    return sorted(stale)


def _sessions(run_dir: Path) -> Path:
    return run_dir / "test-sessions"


@contextmanager
def registered_session(run_dir: Path) -> Iterator[None]:
    """Register this session in `run_dir` while it runs, so no other sweeps its topics."""
    sessions = _sessions(run_dir)
    sessions.mkdir(parents=True, exist_ok=True)
    mine = sessions / SESSION
    mine.write_text(str(os.getpid()))
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)


def running_sessions(run_dir: Path) -> set[str]:
    """The sessions registered in `run_dir` whose process still runs.

    A session killed before it could unregister leaves its file behind; its pid, no longer
    alive, tells that it is over, and the file goes.
    """
    running = set()
    with suppress(FileNotFoundError):
        for entry in _sessions(run_dir).iterdir():
            with suppress(OSError, ValueError):
                if pid_alive(int(entry.read_text())):
                    running.add(entry.name)
                    continue
                entry.unlink()
    return running


def sweep_test_topics(bootstrap: str, running: Container[str]) -> list[str]:
    """Delete the test topics of sessions that are over; return their names."""

    async def sweep() -> list[str]:
        names = await topic_names(bootstrap)
        return await delete_topics(bootstrap, stale_test_topics(names, running), names)

    return asyncio.run(sweep())
