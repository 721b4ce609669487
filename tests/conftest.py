"""Fixtures shared by the integration and end-to-end tests: the real servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from devstack import stack as launcher
from shared.settings import KontaktSettings

#: A database of this test session's own (several sessions may share one stack).
TEST_DATABASE = os.environ.get("KONTAKT_TEST_DATABASE", "kontakt_test")


@pytest.fixture(scope="session")
def stack() -> Iterator[launcher.StackInfo]:
    """The launcher's real PostgreSQL and Kafka; tests fail (never skip) if they can't start.

    Servers this session started are stopped at its end; servers already running are left be.
    """
    cfg = launcher.StackConfig.from_env()
    before = launcher.status(cfg)
    was_running = before["postgres"]["running"] and before["kafka"]["running"]
    try:
        info = launcher.up(cfg, progress=lambda _: None)
    except launcher.StackError as exc:
        pytest.fail(f"the real PostgreSQL/Kafka servers could not be started: {exc}", pytrace=False)
    yield info
    if not was_running:
        launcher.down(cfg)


@pytest.fixture(scope="session")
def test_database(stack: launcher.StackInfo) -> str:
    """A fresh database for this test session."""
    with psycopg.connect(stack.pg_dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (TEST_DATABASE,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}"')
        conn.execute(f'CREATE DATABASE "{TEST_DATABASE}" OWNER "{stack.pg_user}"')
    return TEST_DATABASE


@pytest.fixture(scope="session")
def settings(stack: launcher.StackInfo, test_database: str) -> KontaktSettings:
    """Settings pointing every service at the real servers and the test database."""
    return KontaktSettings(
        pg_host=stack.pg_host,
        pg_port=stack.pg_port,
        pg_user=stack.pg_user,
        pg_password=stack.pg_password,
        pg_database=test_database,
        kafka_bootstrap=stack.kafka_bootstrap,
        jwt_secret="test-jwt-secret-0123456789-0123456789",
        key_secret="test-key-secret-0123456789-0123456789",
    )


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
def isolated_settings(
    stack: launcher.StackInfo, settings: KontaktSettings
) -> Iterator[KontaktSettings]:
    """Settings with a database and topics of this test's own (dropped afterwards)."""
    suffix = uuid.uuid4().hex[:10]
    database = f"kontakt_t_{suffix}"
    launcher.ensure_database(stack, database)
    yield settings.model_copy(
        update={
            "pg_database": database,
            "contacts_topic": f"contacts.events.{suffix}",
            "activities_topic": f"activities.events.{suffix}",
            "opportunities_topic": f"opportunities.events.{suffix}",
            "campaigns_topic": f"campaigns.events.{suffix}",
            "projects_topic": f"projects.events.{suffix}",
            "dead_letter_topic": f"kontakt.dead-letters.{suffix}",
            "sync_events_topic": f"outlook-sync.events.{suffix}",
        }
    )
    with psycopg.connect(stack.pg_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def env_of(settings: KontaktSettings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Settings as KONTAKT_* environment variables, for subprocesses."""
    env = dict(base if base is not None else os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"KONTAKT_{name.upper()}"] = str(value)
    return env
