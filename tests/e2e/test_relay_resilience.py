"""The relay as a real process under crashes, failover and a Kafka outage."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from devstack import stack as launcher
from services.contacts.application import ContactsApp
from services.contacts.domain import Actor
from shared.settings import KontaktSettings
from tests.conftest import MEASURED
from tests.kafka_helpers import read_topic_sync, topic_suffix
from tests.relay_checks import check_complete_and_ordered, contact_positions
from tests.support import eventually_sync, kill_process, start_kontakt, stop_process


class RelayProcess:
    """A `kontakt relay` process with its log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        self._actives_before = self.text().count("active:") if self.log.exists() else 0
        self.proc = start_kontakt(["relay"], self.env, self.log)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        kill_process(self.proc)

    def stop(self) -> int | None:
        assert self.proc is not None
        return stop_process(self.proc, timeout=30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_active(self) -> None:
        """Wait until the process started last says it is the active relay."""
        self.wait_for("active:", times=self._actives_before + 1)

    def wait_for(self, needle: str, timeout: float = 30, times: int = 1) -> None:
        def logged() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.text()[-3000:]
            return self.text().count(needle) >= times

        eventually_sync(
            logged, lambda: f"{needle!r} not logged:\n{self.text()[-3000:]}", timeout, 0.1
        )


@pytest.fixture
def topic_env(
    settings: KontaktSettings, settings_env: dict[str, str]
) -> Iterator[tuple[KontaktSettings, dict[str, str]]]:
    topic = f"contacts.events.{topic_suffix('r')}"
    yield (
        settings.model_copy(update={"contacts_topic": topic}),
        {
            **settings_env,
            "KONTAKT_CONTACTS_TOPIC": topic,
            "KONTAKT_RELAY_POLL_SECONDS": "0.5",
            "KONTAKT_RELAY_BATCH_SIZE": "100",
        },
    )


def burst(contacts: ContactsApp, commands: int, pause: float, threads: int = 2) -> threading.Thread:
    """Run `commands` commands over many persons in the background."""
    actor = Actor("burst", "burst")

    def work(n: int) -> None:
        ids: list[UUID] = []
        rng = random.Random(n)
        for i in range(n):
            if not ids or rng.random() < 0.15:
                ids.append(
                    contacts.create_contact(
                        actor,
                        company_id=uuid4(),
                        company_name="Burst",
                        details={"first_names": f"B{i}", "last_names": uuid4().hex[:10]},
                    ).contact_id
                )
            else:
                cid = rng.choice(ids)
                if rng.random() < 0.5:
                    contacts.change_details(actor, cid, {"job_title": f"t{i}"})
                else:
                    contacts.add_infotag(actor, cid, f"tag{i}")
            time.sleep(pause)

    workers = [threading.Thread(target=work, args=(commands // threads,)) for _ in range(threads)]

    def run_all() -> None:
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    runner = threading.Thread(target=run_all)
    runner.start()
    return runner


def wait_caught_up(settings: KontaktSettings, contacts: ContactsApp, timeout: float = 120) -> None:
    target = contacts.recorder.max_notification_id() or 0
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:

        def position() -> tuple[Any, ...] | None:
            return conn.execute(
                "SELECT position FROM relay_positions WHERE name = %s", (settings.contacts_topic,)
            ).fetchone()

        eventually_sync(
            lambda: (row := position()) is not None and row[0] >= target,
            lambda: f"relay at {position()} of {target}",
            timeout,
        )


def verify_topic(settings: KontaktSettings, contacts: ContactsApp, label: str) -> None:
    """The topic holds every contact event, in order per key; record the duplicates."""
    report = check_complete_and_ordered(
        read_topic_sync(settings.kafka_bootstrap, settings.contacts_topic),
        contact_positions(contacts),
    )
    MEASURED.append(f"{label}: {report.expected} events delivered, {report.duplicates} duplicates")


def test_relay_killed_9_times_mid_burst_loses_nothing_and_keeps_order(
    contacts: ContactsApp, topic_env: tuple[KontaktSettings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = topic_env
    relay = RelayProcess(env, tmp_path / "relay.log").start()
    runner = burst(contacts, 2000, pause=0.008)
    kills = 0
    rng = random.Random(7)
    while runner.is_alive() or kills < 5:
        time.sleep(rng.uniform(0.4, 1.6))
        relay.kill9()
        kills += 1
        relay.start()
    runner.join()
    relay.wait_active()  # the last one is up, its signal handlers too
    wait_caught_up(settings, contacts)
    assert relay.stop() == 0
    verify_topic(settings, contacts, f"relay killed {kills} times during 2,000 commands")
    assert kills >= 5


def test_standby_relay_takes_over_when_the_active_one_dies(
    contacts: ContactsApp, topic_env: tuple[KontaktSettings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = topic_env
    first = RelayProcess(env, tmp_path / "first.log").start()
    first.wait_for("active:")
    second = RelayProcess(env, tmp_path / "second.log").start()
    second.wait_for("standby:")
    runner = burst(contacts, 300, pause=0.01)
    time.sleep(1.0)
    first.kill9()
    second.wait_for("active:")
    runner.join()
    wait_caught_up(settings, contacts)
    assert second.stop() == 0
    verify_topic(settings, contacts, "relay failover")


def test_kafka_down_for_seconds_mid_burst_then_topic_is_complete(
    contacts: ContactsApp, topic_env: tuple[KontaktSettings, dict[str, str]], tmp_path: Path
) -> None:
    settings, env = topic_env
    relay = RelayProcess(env, tmp_path / "relay.log").start()
    relay.wait_for("active:")
    runner = burst(contacts, 400, pause=0.01)
    time.sleep(1.0)
    cfg = launcher.StackConfig.from_env()
    launcher.stop_kafka(cfg)
    try:
        time.sleep(4.0)
        runner.join()  # commands keep working while Kafka is down: no dual writes
    finally:
        launcher.start_kafka(cfg)
    wait_caught_up(settings, contacts)
    assert relay.stop() == 0
    assert "waiting for Kafka" in relay.text()
    verify_topic(settings, contacts, "Kafka stopped for 4 s mid-burst")
