"""Test sessions sharing a broker: a session's topics outlive none of it but are never swept
while it runs, so a long-used stack does not collect every run's topics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from devstack import stack as launcher
from shared.kafka import ensure_topics, topic_names
from shared.settings import KontaktSettings
from tests.kafka_helpers import (
    SESSION,
    registered_session,
    running_sessions,
    stale_test_topics,
    sweep_test_topics,
    topic_suffix,
)


def test_a_topic_is_stale_once_its_session_is_over_and_others_are_never_named() -> None:
    ours, theirs = f"contacts.events.{topic_suffix()}", "contacts.events.ts0a1b2csync1234abcd"
    unmarked = ["contacts.events.0123456789", "a.01234567", "outlook-sync.events.89abcdef"]
    kept = ["contacts.events", "kontakt.dead-letters", "contacts.events.custom", "ts0a1b2c"]
    names = [ours, theirs, *unmarked, *kept]
    assert stale_test_topics(names, running={SESSION}) == sorted([theirs, *unmarked])
    assert stale_test_topics(names, running={SESSION, "0a1b2c"}) == sorted(unmarked)


def test_a_session_runs_while_registered_and_a_killed_one_is_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    (tmp_path / "test-sessions").mkdir()
    (tmp_path / "test-sessions" / "dead00").write_text(dead)
    (tmp_path / "test-sessions" / "alive0").write_text(str(os.getppid()))
    with registered_session(tmp_path):
        assert running_sessions(tmp_path) == {SESSION, "alive0"}
    assert running_sessions(tmp_path) == {"alive0"}
    assert sorted(p.name for p in (tmp_path / "test-sessions").iterdir()) == ["alive0"]


def test_the_sweep_deletes_finished_sessions_topics_on_the_broker_and_keeps_the_rest(
    stack: launcher.StackInfo, settings: KontaktSettings
) -> None:
    finished = f"contacts.events.tsf1f1f1{topic_suffix()[8:]}"
    mine = f"contacts.events.{topic_suffix()}"
    asyncio.run(ensure_topics(settings, [finished, mine]))
    deleted = sweep_test_topics(stack.kafka_bootstrap, running={SESSION})
    assert finished in deleted
    assert mine not in deleted
    topics = asyncio.run(topic_names(stack.kafka_bootstrap))
    assert mine in topics
    assert finished not in topics
