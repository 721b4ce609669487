"""What the integration and end-to-end tests (and the benchmarks) share: waiting for a
condition, relaying until caught up, Kontakt processes, and settings on the real servers."""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psycopg
from pydantic import SecretStr
from yoyo import read_migrations

from services.contacts.application import ContactsApp
from services.contacts.relay import Relay
from shared.migrations import sources
from shared.settings import KontaktSettings
from tests.kafka_helpers import topic_suffix

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")

# ---------------------------------------------------------------------------- waiting


class NotWithinError(AssertionError):
    """What was waited for did not happen within the time allowed."""


def _pauses(what: str | Callable[[], str], timeout: float, every: float) -> Iterator[float]:
    """The pause before each next try; fails once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() >= deadline:
            raise NotWithinError(f"not within {timeout}s: {what() if callable(what) else what}")
        yield every


async def eventually(
    check: Callable[[], Any],
    what: str | Callable[[], str],
    timeout: float = 60,
    every: float = 0.1,
) -> Any:
    """check()'s first truthy answer (awaited when it is awaitable), polled until `timeout`."""
    pauses = _pauses(what, timeout, every)
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer
        await asyncio.sleep(next(pauses))


def eventually_sync(
    check: Callable[[], Any], what: str | Callable[[], str], timeout: float = 60, every: float = 0.2
) -> Any:
    """eventually() for synchronous tests and threads."""
    pauses = _pauses(what, timeout, every)
    while not (answer := check()):
        time.sleep(next(pauses))
    return answer


def within(check: Callable[[], T], timeout: float, every: float = 0.5) -> T:
    """check()'s first truthy answer, or its last one once `timeout` passed: for waits whose
    outcome is reported, not asserted."""
    last: list[T] = []

    def tried() -> T:
        last[:] = [check()]
        return last[0]

    with suppress(NotWithinError):
        return eventually_sync(tried, "", timeout, every)
    return last[0]


# ---------------------------------------------------------------------------- relaying


async def relay_until_caught_up(relay: Relay, contacts: ContactsApp, timeout: float = 60) -> int:
    """Run the relay until it published everything stored so far; its position then."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    target = contacts.recorder.max_notification_id() or 0

    def caught_up() -> bool:
        if task.done():
            raise AssertionError(f"the relay ended at {relay.position} of {target}: {task!r}")
        return relay.position >= target

    try:
        await eventually(
            caught_up, lambda: f"relay stuck at {relay.position} of {target}", timeout, 0.05
        )
    except BaseException:
        task.cancel()
        with suppress(asyncio.CancelledError, Exception):  # the failure above says enough
            await task
        raise
    stop.set()
    await asyncio.wait_for(task, 60)
    return relay.position


# ---------------------------------------------------------------------------- processes


#: Where free_port looks: below the kernel's ephemeral range (32768+ on Linux) and the
#: stack's own ports (25432, 29092-29093).
_TEST_PORTS = range(10_000, 25_000)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) is from the ephemeral range, which outgoing
    connections draw from too: one of them took such a port between this check and the
    server's bind ("address already in use"). Below that range only servers bind.
    """
    for _ in range(200):
        port = random.choice(_TEST_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_TEST_PORTS}")


def start_kontakt(
    args: list[str],
    env: dict[str, str],
    log: Path,
    module: str = "services.cli",
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """`kontakt ARGS` started as a user starts it (`python -m services.cli`), output appended
    to `log`; `cwd` another source tree to run its code instead."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def run_kontakt(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `kontakt ARGS` to its end; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def log_tail(log: Path | None, size: int = 3000) -> str:
    """The end of a process's log (empty when there is none)."""
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-size:]


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 60, log: Path | None = None
) -> None:
    """Wait until url answers 200, failing early if the process died."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited with {proc.returncode} before {url} was ready\n{log_tail(log)}"
            )
        with suppress(httpx.HTTPError):
            return httpx.get(url, timeout=1).status_code == 200
        return False

    eventually_sync(ready, lambda: f"{url} not ready\n{log_tail(log)}", timeout)


def stop_processes(
    procs: Mapping[str, subprocess.Popen[bytes]], timeout: float = 20
) -> dict[str, int | None]:
    """SIGTERM every process at once (once: a second SIGTERM may cut a graceful stop short),
    then wait for each, SIGKILL if stuck; the exit codes (None: had to be killed)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes: dict[str, int | None] = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            codes[name] = None
    return codes


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    """SIGTERM, then SIGKILL if it is stuck; its exit code (None when it had to be killed)."""
    return stop_processes({"": proc}, timeout)[""]


def kill_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL (a crash); its exit code."""
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=30)


@contextmanager
def kontakt_process(
    args: list[str], env: dict[str, str], log: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`kontakt ARGS` running until the block ends (stopped with SIGTERM, killed if stuck)."""
    proc = start_kontakt(args, env, log)
    try:
        wait_ready(ready_url, proc, log=log)
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def kontakt_server(
    args: list[str], env: dict[str, str], log: Path, ready_path: str
) -> Iterator[str]:
    """`kontakt ARGS --port P` on a free port until the block ends; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with kontakt_process([*args, "--port", str(port)], env, log, f"{base}{ready_path}"):
        yield base


# ---------------------------------------------------------------------------- settings


class Servers(Protocol):
    """Where the real PostgreSQL and Kafka listen (the stack's description of itself)."""

    @property
    def pg_host(self) -> str: ...
    @property
    def pg_port(self) -> int: ...
    @property
    def pg_user(self) -> str: ...
    @property
    def pg_password(self) -> str: ...
    @property
    def kafka_bootstrap(self) -> str: ...


def stack_settings(
    servers: Servers, database: str, secrets: str = "test", **update: Any
) -> KontaktSettings:
    """Settings on the real servers and `database`, with secrets of a run's own."""
    return KontaktSettings(
        pg_host=servers.pg_host,
        pg_port=servers.pg_port,
        pg_user=servers.pg_user,
        pg_password=SecretStr(servers.pg_password),
        pg_database=database,
        kafka_bootstrap=servers.kafka_bootstrap,
        jwt_secret=SecretStr(f"{secrets}-jwt-secret-0123456789-0123456789"),
        key_secret=SecretStr(f"{secrets}-key-secret-0123456789-0123456789"),
        **update,
    )


def own_topics(suffix: str) -> dict[str, str]:
    """Topic settings of a run's own: every topic Kontakt uses, named with `suffix`."""
    return {
        "contacts_topic": f"contacts.events.{suffix}",
        "infotags_topic": f"infotags.events.{suffix}",
        "activities_topic": f"activities.events.{suffix}",
        "opportunities_topic": f"opportunities.events.{suffix}",
        "campaigns_topic": f"campaigns.events.{suffix}",
        "projects_topic": f"projects.events.{suffix}",
        "dead_letter_topic": f"kontakt.dead-letters.{suffix}",
        "sync_events_topic": f"outlook-sync.events.{suffix}",
    }


@contextmanager
def isolated(
    settings: KontaktSettings, database_prefix: str = "kontakt_t", topic_label: str = ""
) -> Iterator[KontaktSettings]:
    """The settings with a database and topics of their own; the database is dropped after,
    the topics when the session ends."""
    database = f"{database_prefix}_{uuid.uuid4().hex[:10]}"
    admin = settings.model_copy(update={"pg_database": "postgres"}).pg_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{settings.pg_user}"')
    try:
        yield settings.model_copy(
            update={"pg_database": database, **own_topics(topic_suffix(topic_label))}
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def env_of(
    settings: KontaktSettings, base: dict[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """Settings as KONTAKT_* environment variables (over `base`, or this process's), for
    subprocesses."""
    env = dict(base if base is not None else os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"KONTAKT_{name.upper()}"] = str(value)
    env.update(extra)
    return env


def save_as_before_near_keys(
    contacts: ContactsApp, company_id: uuid.UUID, first: str, last: str
) -> uuid.UUID:
    """A contact saved as the store held them before near-duplicate keys: none claimed."""
    from services.contacts.domain import Actor, Contact

    contact = Contact.create(
        contact_id=uuid.uuid4(),
        person_id=uuid.uuid4(),
        actor=Actor("alice", "before-near-keys"),
        company_id=company_id,
        company_name="Acme",
        details={"first_names": first, "last_names": last},
    )
    contacts.save(contact)
    return contact.id


def migration_ids(extra: list[str] | None = None) -> list[str]:
    """Every migration's id (the services', then `extra` folders'), in the order they apply."""
    return [m.id for m in read_migrations(*sources(extra or []))]
