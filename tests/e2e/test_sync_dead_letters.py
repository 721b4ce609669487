"""The sync worker's consumer on the real servers: poison, refusals, outages, repairs, erasure.

The worker runs in this process (so a test can stall its consumer or read its log)
against the real PostgreSQL and Kafka, `kontakt graph-server` and `kontakt serve
contacts` processes. Contact events are taken from the event store in contract form
and produced by the test itself, so a test decides which ones the worker sees, and
on which partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor
from services.contacts.export import StoreReader
from services.sync.contacts_api import ContactsClient
from services.sync.domain import CONTACT_ID_PROPERTY
from services.sync.graph import GraphClient
from services.sync.sealing import PersonKeys
from services.sync.store import SyncStore
from services.sync.worker import DEAD_LETTER_FAMILY, SyncWorker, _forever
from shared.kafka import Record, ensure_topics, read_topic
from shared.lag import group_lag
from shared.settings import KontaktSettings
from tests import rawscan
from tests.conftest import MEASURED
from tests.support import (
    env_of,
    eventually,
    free_port,
    kontakt_process,
    kontakt_server,
    run_kontakt,
)

ALICE = Actor("alice", "sync-dlq-test")
#: A liveness bound, not a timing threshold: failing it means "stuck".
DEADLINE_SECONDS = 180


@dataclass(frozen=True)
class Rig:
    """The Graph-compatible server and the contacts API, shared by the module's tests."""

    graph_url: str
    api_url: str
    env: dict[str, str]
    logs: Path


@pytest.fixture(scope="module")
def rig(settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """`kontakt graph-server` and `kontakt serve contacts` as processes."""
    logs = tmp_path_factory.mktemp("syncdlq")
    graph_args = ["graph-server", "--client-secret", "s3cret"]
    with (
        kontakt_server(graph_args, settings_env, logs / "graph.log", "/_admin/stats") as graph_url,
        kontakt_server(
            ["serve", "contacts"], settings_env, logs / "api.log", "/health/ready"
        ) as api_url,
    ):
        yield Rig(graph_url, api_url, settings_env, logs)


@pytest.fixture
def sync_settings(rig: Rig, isolated_settings: KontaktSettings) -> KontaktSettings:
    """The worker's settings: a database, topics and a consumer group of this test's own."""
    return isolated_settings.model_copy(
        update={
            "sync_graph_base_url": f"{rig.graph_url}/v1.0",
            "sync_graph_authority": rig.graph_url,
            "sync_graph_client_id": "kontakt-tests",
            "sync_graph_client_secret": SecretStr("s3cret"),
            "sync_graph_timeout_seconds": 5.0,
            "sync_graph_backoff_seconds": 0.05,
            "sync_graph_backoff_max_seconds": 1.0,
            "sync_retry_max_seconds": 1.0,
            "sync_poll_seconds": 0.2,
            "sync_verify_seconds": 3600.0,
            "sync_max_attempts": 3,
            "sync_dev_mailbox_fallback": True,
            "sync_consumer_group": f"sync-dlq-{uuid4().hex[:8]}",
            "contacts_api_url": rig.api_url,
        }
    )


@asynccontextmanager
async def running_worker(s: KontaktSettings, *, consume: bool = True) -> AsyncIterator[SyncWorker]:
    """A sync worker in this process; without `consume`, its consumer never runs (stalled)."""
    graph, contacts = GraphClient(s), ContactsClient(s)
    keys = PersonKeys(contacts.sync_key, s.sync_key_cache_ttl_seconds)
    store = await SyncStore.open(s.pg_dsn(), keys=keys)
    worker = SyncWorker(s, store, graph, contacts)
    stop = asyncio.Event()
    if consume:
        tasks = [asyncio.create_task(worker.run(stop))]
    else:
        tasks = [
            asyncio.create_task(_forever("reconciler", lambda: worker.reconcile(stop), stop)),
            asyncio.create_task(_forever("publisher", lambda: worker.publish(stop), stop)),
            asyncio.create_task(_forever("shredder", lambda: worker.shred(stop), stop)),
        ]
    try:
        yield worker
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await graph.aclose()
        await contacts.aclose()
        await store.close()


def new_contact(contacts: ContactsApp, company: str | None = None, **details: Any) -> UUID:
    """A contact created through the application layer (no edge validation)."""
    result = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name=company or f"Co {uuid4().hex[:4]}",
        details={"first_names": f"F{uuid4().hex[:6]}", "last_names": "Dlq", **details},
    )
    return result.contact_id


def users(n: int, graph_url: str) -> list[str]:
    """New users, each with a mailbox provisioned on the Graph server."""
    tag = uuid4().hex[:6]
    out = [f"{name}-{tag}" for name in ("bob", "eve", "kim")[:n]]
    for user in out:
        assert httpx.put(f"{graph_url}/_admin/users/{user}", timeout=30).status_code == 204
    return out


def events_of(contacts: ContactsApp, contact_id: UUID, skip: set[int] | None = None) -> list[bytes]:
    """The contact's events as the relay publishes them, without the versions in `skip`."""
    return [
        e.model_dump_json().encode()
        for e in StoreReader(contacts).contact_events(contact_id)
        if e.aggregate_version not in (skip or set())
    ]


async def produce(s: KontaktSettings, values: list[bytes], partition: int = 0) -> None:
    """Put messages on the contacts topic, all on one partition, in order."""
    await ensure_topics(s, [s.contacts_topic, s.dead_letter_topic])
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(s.contacts_topic, value, partition=partition)
    finally:
        await producer.stop()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a condition, failing after the liveness bound."""
    await eventually(check, what, DEADLINE_SECONDS, every=0.3)


def items(rig: Rig, user: str) -> dict[str, dict[str, Any]]:
    """A user's Outlook items by the CRM contact id they carry."""
    response = httpx.get(f"{rig.graph_url}/_admin/users/{user}/contacts", timeout=30)
    response.raise_for_status()
    out = {}
    for item in response.json()["value"]:
        prop = {p["id"]: p["value"] for p in item["singleValueExtendedProperties"]}
        out[prop[CONTACT_ID_PROPERTY]] = item
    return out


async def dead_letters(s: KontaktSettings) -> list[Record]:
    """Every message on the test's dead-letter topic."""
    return await read_topic(s.kafka_bootstrap, s.dead_letter_topic)


async def caught_up(s: KontaktSettings) -> bool:
    """True when the worker's group committed every partition's end."""
    return all(
        p.lag == 0
        for p in await group_lag(s.kafka_bootstrap, s.sync_consumer_group, [s.contacts_topic])
    )


def kontakt(s: KontaktSettings, *args: str) -> list[str]:
    """Run a `kontakt` command with the test's settings; its output lines."""
    done = run_kontakt(env_of(s), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def in_outlook(rig: Rig, user: str, contact_id: UUID) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return str(contact_id) in items(rig, user)

    return check


# ---------------------------------------------------------------------------- tests


async def test_a_nul_in_a_work_email_reaches_outlook_cleaned_and_other_users_sync_on(
    rig: Rig, sync_settings: KontaktSettings, contacts: ContactsApp
) -> None:
    s = sync_settings
    bob, eve = users(2, rig.graph_url)
    poisoned = new_contact(contacts, work_email="nul\x00l@acme.example", job_title="C\x00TO")
    contacts.toggle_outlook_sync(Actor(bob, "t"), poisoned, user_id=bob, enabled=True)
    other = new_contact(contacts)
    contacts.toggle_outlook_sync(Actor(eve, "t"), other, user_id=eve, enabled=True)
    # The poisoned contact first, on the same partition as the other user's contact.
    await produce(s, events_of(contacts, poisoned) + events_of(contacts, other))
    async with running_worker(s):
        await until(in_outlook(rig, eve, other), "eve's contact in her Outlook")
        await until(in_outlook(rig, bob, poisoned), "the cleaned contact in bob's Outlook")
        await until(lambda: caught_up(s), "the worker's offsets at the end")
    item = items(rig, bob)[str(poisoned)]
    assert [e["address"] for e in item["emailAddresses"]] == ["null@acme.example"]
    assert item["jobTitle"] == "CTO"
    assert await dead_letters(s) == []


async def test_poison_is_dead_lettered_with_its_origin_and_later_messages_applied(
    rig: Rig, sync_settings: KontaktSettings, contacts: ContactsApp
) -> None:
    s = sync_settings
    [bob] = users(1, rig.graph_url)
    cid = new_contact(contacts)
    contacts.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    poison = [b"\xff not json", b'{"type": "SomethingElse", "x": 1}', b"[]"]
    await produce(s, poison + events_of(contacts, cid), partition=2)
    async with running_worker(s):
        await until(in_outlook(rig, bob, cid), "the later contact in bob's Outlook")
        await until(lambda: caught_up(s), "the worker's offsets at the end")
    letters = sorted(await dead_letters(s), key=lambda r: int(r.header("x-original-offset") or -1))
    assert [r.value for r in letters] == poison
    for offset, r in enumerate(letters):
        assert r.header("x-original-topic") == s.contacts_topic
        assert r.header("x-original-partition") == "2"
        assert r.header("x-original-offset") == str(offset)
        assert r.header("x-family") == DEAD_LETTER_FAMILY
        assert r.header("x-group") == s.sync_consumer_group
        assert r.header("x-error")

    # The operator's view: `kontakt sync dlq list`, then `resubmit` of all open ones.
    listed = kontakt(s, "sync", "dlq", "list")
    origins = sorted(line.split("\t")[1] for line in listed[1:])
    assert origins == [f"{s.contacts_topic}[2]@{offset}" for offset in range(3)]
    assert all("\topen\t" in line for line in listed[1:])
    assert kontakt(s, "sync", "dlq", "resubmit") == ["re-submitted 3 dead letters"]
    assert all("\tresubmitted " in line for line in kontakt(s, "sync", "dlq", "list")[1:])
    assert kontakt(s, "sync", "dlq", "resubmit") == ["re-submitted 0 dead letters"]


async def test_a_value_the_database_refuses_is_dead_lettered_after_bounded_attempts(
    rig: Rig,
    sync_settings: KontaktSettings,
    contacts: ContactsApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = sync_settings
    caplog.set_level(logging.INFO, "kontakt.sync.worker")
    [bob] = users(1, rig.graph_url)
    store = await SyncStore.open(s.pg_dsn(), max_size=1)  # creates the tables
    await store.close()
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE sync_links ADD CONSTRAINT refuse_for_test"
            " CHECK (user_id NOT LIKE 'refused-%')"
        )
    refused = new_contact(contacts)
    contacts.toggle_outlook_sync(
        Actor("refused-u", "t"), refused, user_id="refused-u", enabled=True
    )
    later = new_contact(contacts)
    contacts.toggle_outlook_sync(Actor(bob, "t"), later, user_id=bob, enabled=True)
    # The refused contact's switch-on (offset 1) is what the database refuses.
    await produce(s, events_of(contacts, refused) + events_of(contacts, later))
    async with running_worker(s):
        await until(in_outlook(rig, bob, later), "the later contact in bob's Outlook")
        await until(lambda: caught_up(s), "the worker's offsets at the end")
    [letter] = await dead_letters(s)
    assert letter.header("x-original-offset") == "1"
    assert "CheckViolation" in (letter.header("x-error") or "")
    retries = [r for r in caplog.records if r.getMessage().startswith("attempt ")]
    assert len(retries) == s.sync_max_attempts - 1


async def test_an_outage_of_the_contacts_api_dead_letters_nothing_and_is_waited_out(
    rig: Rig,
    sync_settings: KontaktSettings,
    contacts: ContactsApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kontakt.sync.worker")
    api_port = free_port()  # nothing listens here yet: the contacts API is down
    s = sync_settings.model_copy(update={"contacts_api_url": f"http://127.0.0.1:{api_port}"})
    [bob] = users(1, rig.graph_url)
    cid = new_contact(contacts)
    contacts.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    # Its ContactCreated lost: applying the rest needs the event store, through the API.
    await produce(s, events_of(contacts, cid, skip={1}))

    async def outages_seen() -> bool:
        return sum(r.getMessage().startswith("outage ") for r in caplog.records) >= 4

    async with running_worker(s):
        await until(outages_seen, "the worker waiting out the outage")
        assert await dead_letters(s) == []
        with kontakt_process(
            ["serve", "contacts", "--port", str(api_port)],
            rig.env,
            rig.logs / "api-late.log",
            f"http://127.0.0.1:{api_port}/health/ready",
        ):
            await until(in_outlook(rig, bob, cid), "the contact in bob's Outlook")
            await until(lambda: caught_up(s), "the worker's offsets at the end")
    assert await dead_letters(s) == []


async def test_an_outage_of_postgresql_dead_letters_nothing_and_is_waited_out(
    rig: Rig,
    sync_settings: KontaktSettings,
    contacts: ContactsApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = sync_settings
    caplog.set_level(logging.INFO, "kontakt.sync.worker")
    [bob] = users(1, rig.graph_url)
    cid = new_contact(contacts)
    contacts.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    admin = s.model_copy(update={"pg_database": "postgres"}).pg_dsn()

    def database_down(down: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                f'ALTER DATABASE "{s.pg_database}" WITH ALLOW_CONNECTIONS {str(not down).lower()}'
            )
            if down:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (s.pg_database,),
                )

    async def outages_seen() -> bool:
        return sum(r.getMessage().startswith("outage ") for r in caplog.records) >= 1

    async with running_worker(s):
        await until(lambda: caught_up(s), "the worker's group on the topic")
        database_down(True)
        try:
            await produce(s, events_of(contacts, cid))
            await until(outages_seen, "the worker waiting out the outage")
            assert await dead_letters(s) == []
        finally:
            database_down(False)
        await until(in_outlook(rig, bob, cid), "the contact in bob's Outlook")
        await until(lambda: caught_up(s), "the worker's offsets at the end")
    assert await dead_letters(s) == []


async def test_a_lost_contact_created_is_repaired_from_the_event_store(
    rig: Rig, sync_settings: KontaktSettings, contacts: ContactsApp
) -> None:
    s = sync_settings
    bob, eve = users(2, rig.graph_url)
    cid = new_contact(contacts, work_email="repair@acme.example")
    contacts.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    contacts.toggle_outlook_sync(Actor(eve, "t"), cid, user_id=eve, enabled=True)
    contacts.change_details(ALICE, cid, {"job_title": "Repaired"})
    # ContactCreated and bob's switch-on never arrive (dead-lettered elsewhere, say).
    await produce(s, events_of(contacts, cid, skip={1, 2}))
    async with running_worker(s):
        await until(in_outlook(rig, bob, cid), "the contact in bob's Outlook")
        await until(in_outlook(rig, eve, cid), "the contact in eve's Outlook")
        await until(lambda: caught_up(s), "the worker's offsets at the end")
    assert items(rig, bob)[str(cid)]["jobTitle"] == "Repaired"
    assert await dead_letters(s) == []


async def test_an_erased_persons_copy_is_gone_within_the_key_bound_while_the_consumer_stalls(
    rig: Rig, sync_settings: KontaktSettings, contacts: ContactsApp
) -> None:
    s = sync_settings.model_copy(update={"sync_key_cache_ttl_seconds": 3.0})
    [bob] = users(1, rig.graph_url)
    tag = uuid4().hex[:8]
    personal = {
        "first_names": f"Shred{tag}",
        "last_names": f"Person{tag}",
        "work_email": f"shred.{tag}@acme.example",
        "job_title": f"Keeper of {tag}",
    }
    company = f"Shredding {tag} GmbH"
    cid = new_contact(contacts, company=company, **personal)
    contacts.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    person = contacts.get_contact(cid).person_id
    values = [*personal.values(), company]
    await produce(s, events_of(contacts, cid))
    async with running_worker(s):
        await until(in_outlook(rig, bob, cid), "the contact in bob's Outlook")
        await until(lambda: caught_up(s), "the worker's offsets at the end")
    # Held, but sealed: no value of the person readable in the worker's tables.
    assert rawscan.find(s.pg_dsn(), values) == {}
    with psycopg.connect(s.pg_dsn()) as conn:
        sealed = conn.execute(
            "SELECT count(*) FROM sync_contacts WHERE person_id = %s AND sealed IS NOT NULL",
            (person,),
        ).fetchone()
    assert sealed == (1,)

    # The consumer is stalled from here on: the ContactErased event never reaches it.
    async with running_worker(s, consume=False) as worker:
        await until(in_outlook(rig, bob, cid), "the stalled worker up")
        loop = asyncio.get_running_loop()
        contacts.erase_person(Actor("dpo", "t"), cid, "gdpr")
        erased_at = loop.time()

        async def purged() -> bool:
            with psycopg.connect(s.pg_dsn()) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM sync_contacts WHERE person_id = %s"
                    " AND (sealed IS NOT NULL OR status <> 'erased')",
                    (person,),
                ).fetchone()
            return row == (0,)

        await until(purged, "the erased person's sealed copy purged")
        purged_after = loop.time() - erased_at
        await until(
            lambda: asyncio.sleep(0, result=str(cid) not in items(rig, bob)),
            "the erased person's item removed from bob's Outlook",
        )
        removed_after = loop.time() - erased_at
        assert await worker.store.keys.get(person) is None
    assert rawscan.find(s.pg_dsn(), values) == {}
    MEASURED.append(
        f"sync erasure with a stalled consumer (key TTL {s.sync_key_cache_ttl_seconds}s):"
        f" copy purged after {purged_after:.1f}s, Outlook item removed after {removed_after:.1f}s"
    )


async def test_an_explicit_mailbox_map_syncs_its_users_and_reports_the_others_failed(
    rig: Rig, sync_settings: KontaktSettings, contacts: ContactsApp
) -> None:
    bob, eve = users(2, rig.graph_url)
    upn = f"{bob}@contoso.example"
    assert httpx.put(f"{rig.graph_url}/_admin/users/{upn}", timeout=30).status_code == 204
    s = sync_settings.model_copy(update={"sync_mailboxes": {bob: upn}})
    mapped, unmapped = new_contact(contacts), new_contact(contacts)
    contacts.toggle_outlook_sync(Actor(bob, "t"), mapped, user_id=bob, enabled=True)
    contacts.toggle_outlook_sync(Actor(eve, "t"), unmapped, user_id=eve, enabled=True)
    await produce(s, events_of(contacts, mapped) + events_of(contacts, unmapped))
    async with running_worker(s) as worker:
        await until(in_outlook(rig, upn, mapped), "bob's contact in his mapped mailbox")

        async def eve_failed() -> bool:
            links = [link for link in await worker.store.links() if link.user_id == eve]
            return any(link.state == "failed" for link in links)

        await until(eve_failed, "eve's link reported failed")
        [link] = [link for link in await worker.store.links() if link.user_id == eve]
    assert "no mailbox mapped" in (link.reason or "") and link.graph_id is None
    assert items(rig, bob) == {} and items(rig, eve) == {}
