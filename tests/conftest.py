"""Fixtures shared by the integration and end-to-end tests: the real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack import stack as launcher
from devstack.config import Paths
from services.contacts.application import ContactsApp
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.settings import KontaktSettings
from tests.kafka_helpers import registered_session, running_sessions, sweep_test_topics
from tests.support import env_of, isolated, stack_settings

#: The tiers, each a folder of tests/ and a marker of the same name (`pytest -m unit`).
TIERS = ("unit", "integration", "e2e")

#: A database of this test session's own: sessions sharing one stack never drop each other's.
TEST_DATABASE = os.environ.get("KONTAKT_TEST_DATABASE") or f"kontakt_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def stack() -> Iterator[launcher.StackInfo]:
    """The launcher's real PostgreSQL and Kafka; tests fail (never skip) if they can't start.

    Servers this session started are stopped at its end; servers already running are left be.
    The topics this session's tests made are deleted at its end, and those finished sessions
    left behind at its start: a broker keeping every run's topics starts slower each time.
    """
    cfg = launcher.StackConfig.from_env()
    run_dir = Paths.of(cfg).run
    before = launcher.status(cfg)
    was_running = before["postgres"]["running"] and before["kafka"]["running"]
    try:
        info = launcher.up(cfg, progress=lambda _: None)
    except launcher.StackError as exc:
        pytest.fail(f"the real PostgreSQL/Kafka servers could not be started: {exc}", pytrace=False)
    with registered_session(run_dir):
        sweep_test_topics(info.kafka_bootstrap, running_sessions(run_dir))
        yield info
    sweep_test_topics(info.kafka_bootstrap, running_sessions(run_dir))
    if not was_running:
        launcher.down(cfg)


@pytest.fixture(scope="session")
def test_database(stack: launcher.StackInfo) -> Iterator[str]:
    """A fresh database for this test session, dropped at its end."""
    admin = stack.pg_dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEST_DATABASE}" OWNER "{stack.pg_user}"')
    yield TEST_DATABASE
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(stack: launcher.StackInfo, test_database: str) -> KontaktSettings:
    """Settings pointing every service at the real servers and the test database."""
    return stack_settings(stack, test_database)


@pytest.fixture(scope="session")
def settings_env(settings: KontaktSettings) -> dict[str, str]:
    """The same settings as KONTAKT_* environment variables, for subprocesses."""
    return env_of(settings)


#: Facts tests measured (e.g. duplicates after relay crashes), printed after the run.
MEASURED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the tests measured."""
    if MEASURED:
        terminalreporter.section("measured")
        for line in MEASURED:
            terminalreporter.write_line(line)


@pytest.fixture
def isolated_settings(settings: KontaktSettings) -> Iterator[KontaktSettings]:
    """Settings with a database and topics of this test's own (dropped afterwards)."""
    with isolated(settings) as own:
        yield own


@pytest.fixture(scope="session")
def contacts(settings: KontaktSettings) -> Iterator[ContactsApp]:
    """The contacts application on the real PostgreSQL."""
    app = build_contacts_app(settings)
    yield app
    close_contacts_app(app)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier: the folder of tests/ it lives in."""
    here = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(here).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])
