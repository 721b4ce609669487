"""The sync worker as a real process: contacts.events (real Kafka) -> Graph-compatible server.

Commands go through the contacts application on the real PostgreSQL; the relay
publishes them to a topic of this module's own; `kontakt sync worker` (restarted and
killed along the way), `kontakt graph-server` and `kontakt serve contacts` run as
processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor, ContactError
from services.contacts.personal_data import PersonErasedError
from services.contacts.relay import Relay
from services.contacts.store import build_contacts_app, close_contacts_app
from services.sync.domain import CONTACT_ID_PROPERTY, DELETED_IN_OUTLOOK
from services.sync.photos import fit_for_graph
from services.sync.store import SyncStore
from shared.contract.sync import parse_sync_event
from shared.lag import group_lag
from shared.settings import KontaktSettings
from tests.conftest import MEASURED
from tests.images import image_bytes
from tests.kafka_helpers import read_topic, topic_suffix
from tests.support import (
    env_of,
    eventually,
    free_port,
    isolated,
    kill_process,
    relay_until_caught_up,
    start_kontakt,
    stop_process,
    wait_ready,
)

ALICE = Actor("alice", "sync-test")
#: A liveness bound for convergence, not a timing threshold: failing it means "stuck".
CONVERGE_SECONDS = 180


@dataclass
class World:
    """The processes and settings one module's tests share."""

    settings: KontaktSettings
    env: dict[str, str]
    graph_url: str
    logs: Path
    relay: Relay
    contacts: ContactsApp
    worker: subprocess.Popen[bytes] | None = None
    group: str = ""
    restarts: int = 0
    contact_ids: set[UUID] = field(default_factory=set)

    def start_worker(self, group: str | None = None) -> None:
        """Start `kontakt sync worker` (in a consumer group of its own unless given)."""
        assert self.worker is None
        self.group = group or self.group or f"sync-test-{uuid4().hex[:8]}"
        env = {**self.env, "KONTAKT_SYNC_CONSUMER_GROUP": self.group}
        self.worker = start_kontakt(["sync", "worker"], env, self.logs / "worker.log")

    def stop_worker(self, kill: bool = False) -> None:
        """Stop the worker: SIGKILL (a crash) or SIGTERM (a graceful stop)."""
        assert self.worker is not None
        if kill:
            kill_process(self.worker)
        else:
            stop_process(self.worker, timeout=60)
        self.worker = None

    def restart_worker(self, kill: bool) -> None:
        """A crash or a deploy."""
        self.stop_worker(kill)
        self.restarts += 1
        self.start_worker()

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the Graph-compatible server's inspection endpoints."""
        response = httpx.request(method, f"{self.graph_url}/_admin/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def items(self, user: str) -> list[dict[str, Any]]:
        """Every item in a user's mailbox."""
        return list(self.admin("GET", f"users/{user}/contacts")["value"])

    async def publish(self) -> None:
        """Relay the event store to the topic until caught up."""
        await relay_until_caught_up(self.relay, self.contacts, timeout=CONVERGE_SECONDS)


@pytest.fixture(scope="module")
def world(settings: KontaktSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Graph-compatible server, contacts API and worker processes on a database of their own.

    Its own database, because the worker reconciles every waiting link in its store:
    links other modules left behind (their Graph server long gone) would never drain.
    """
    with isolated(settings, "kontakt_sync") as own:
        contacts = build_contacts_app(own)
        try:
            yield from _world(own, contacts, tmp_path_factory)
        finally:
            close_contacts_app(contacts)


def _world(
    settings: KontaktSettings, contacts: ContactsApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The processes of `world`, on `settings`."""
    logs = tmp_path_factory.mktemp("sync")
    suffix = topic_suffix("sync")
    graph_port, api_port = free_port(), free_port()
    graph_url, api_url = f"http://127.0.0.1:{graph_port}", f"http://127.0.0.1:{api_port}"
    topic_settings = settings.model_copy(
        update={
            "contacts_topic": f"contacts.events.{suffix}",
            "infotags_topic": f"infotags.events.{suffix}",
            "sync_events_topic": f"outlook-sync.events.{suffix}",
        }
    )
    env = {
        **env_of(settings),
        "KONTAKT_CONTACTS_TOPIC": topic_settings.contacts_topic,
        "KONTAKT_INFOTAGS_TOPIC": topic_settings.infotags_topic,
        "KONTAKT_SYNC_EVENTS_TOPIC": topic_settings.sync_events_topic,
        "KONTAKT_SYNC_GRAPH_BASE_URL": f"{graph_url}/v1.0",
        "KONTAKT_SYNC_GRAPH_AUTHORITY": graph_url,
        "KONTAKT_SYNC_GRAPH_CLIENT_ID": "kontakt-tests",
        "KONTAKT_SYNC_GRAPH_CLIENT_SECRET": "s3cret",
        "KONTAKT_SYNC_GRAPH_TIMEOUT_SECONDS": "1",
        "KONTAKT_SYNC_GRAPH_BACKOFF_SECONDS": "0.05",
        "KONTAKT_SYNC_GRAPH_BACKOFF_MAX_SECONDS": "1",
        "KONTAKT_SYNC_RETRY_MAX_SECONDS": "1",
        "KONTAKT_SYNC_LEASE_SECONDS": "5",
        "KONTAKT_SYNC_POLL_SECONDS": "0.2",
        "KONTAKT_SYNC_VERIFY_SECONDS": "1",
        "KONTAKT_SYNC_DEV_MAILBOX_FALLBACK": "true",
        "KONTAKT_CONTACTS_API_URL": api_url,
    }
    env.pop("KONTAKT_SYNC_SERVICE_TOKEN", None)
    graph = start_kontakt(
        ["graph-server", "--port", str(graph_port), "--client-secret", "s3cret"],
        env,
        logs / "graph.log",
    )
    api = start_kontakt(["serve", "contacts", "--port", str(api_port)], env, logs / "api.log")
    w = World(topic_settings, env, graph_url, logs, Relay(topic_settings, contacts), contacts)
    try:
        wait_ready(f"{graph_url}/_admin/stats", graph)
        wait_ready(f"{api_url}/health/ready", api)
        w.start_worker()
        yield w
    finally:
        if w.worker is not None:
            w.stop_worker()
        for proc in (graph, api):
            stop_process(proc, timeout=30)
        for name in ("worker.log", "graph.log"):
            text = (logs / name).read_text(errors="replace") if (logs / name).exists() else ""
            if "Traceback" in text and name == "worker.log":
                print(text[-5000:])  # noqa: T201 - shown beside the failing test


@pytest.fixture(scope="module")
async def store(world: World) -> AsyncIterator[SyncStore]:
    """The worker's store, for inspection."""
    s = await SyncStore.open(world.settings.pg_dsn(), max_size=2)
    yield s
    await s.close()


# ---------------------------------------------------------------------------- model


def current_id(contacts: ContactsApp, contact_id: UUID) -> UUID:
    """The person's current contact version, following job changes."""
    contact = contacts.get_contact(contact_id)
    while contact.successor_id is not None:
        contact = contacts.get_contact(contact.successor_id)
    return contact.id


def expected_items(contacts: ContactsApp, starts: list[UUID], users: list[str]) -> dict[str, Any]:
    """Per user, what their folder must hold: {current contact id: visible data}."""
    out: dict[str, Any] = {u: {} for u in users}
    for start in starts:
        c = contacts.get_contact(current_id(contacts, start))
        if c.archived or c.erased:
            continue
        photo = None
        if c.photo:
            stored = contacts.photos.get(c.person_id, c.photo["content_hash"])
            # Outlook gets the photo as a JPEG under Graph's limit.
            sent = fit_for_graph(stored.data, stored.media_type) or b""
            photo = hashlib.sha256(sent).hexdigest()
        for u in users:
            if u in c.outlook_sync_users:
                out[u][str(c.id)] = {
                    "givenName": c.first_names,
                    "surname": c.last_names,
                    "companyName": c.company_name,
                    "jobTitle": c.job_title,
                    # Each tag under its catalogue path now (renamed or moved since placed).
                    "categories": sorted(
                        t["tag"] for t in contacts.infotags_as_now(c.state()["infotags"])
                    ),
                    "photoSha256": photo,
                }
    return out


def actual_items(world: World, users: list[str], person_ids: set[str]) -> dict[str, Any]:
    """Per user, what their folder holds for these people, by the CRM id on each item."""
    out: dict[str, Any] = {}
    for u in users:
        mine: dict[str, Any] = {}
        for item in world.items(u):
            if item["folderName"] is None:
                continue  # moved to the default folder by the user: theirs now
            prop = {p["id"]: p["value"] for p in item["singleValueExtendedProperties"]}
            crm_id = prop[CONTACT_ID_PROPERTY]
            if crm_id in mine:
                crm_id = f"{crm_id} duplicate {item['id']}"
            mine[crm_id] = {
                "givenName": item.get("givenName"),
                "surname": item.get("surname"),
                "companyName": item.get("companyName"),
                "jobTitle": item.get("jobTitle"),
                "categories": sorted(item.get("categories") or []),
                "photoSha256": item.get("photoSha256"),
                "folder": item["folderName"],
            }
        out[u] = {k: v for k, v in mine.items() if k.split(" ")[0] in person_ids}
    return out


async def converge(
    world: World, starts: list[UUID], users: list[str], store: SyncStore
) -> dict[str, Any]:
    """Publish until the worker's switch-offs are published too and every folder matches."""
    person_ids: set[str] = set()
    for s in starts:
        person_ids.update(str(c.id) for c in world.contacts.employments(s))
    expected: dict[str, Any] = {}
    actual: dict[str, Any] = {}

    async def converged() -> bool:
        nonlocal expected, actual
        assert world.worker is None or world.worker.poll() is None, "the worker died"
        await world.publish()
        expected = expected_items(world.contacts, starts, users)
        actual = {
            u: {k: {f: v for f, v in item.items() if f != "folder"} for k, item in items.items()}
            for u, items in actual_items(world, users, person_ids).items()
        }
        return actual == expected and await store.pending() == 0

    await eventually(
        converged,
        lambda: f"no convergence: expected {expected}, actual {actual}",
        CONVERGE_SECONDS,
        0.5,
    )
    return expected


async def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True when the consumer group committed every partition's end offset."""
    return all(p.lag == 0 for p in await group_lag(bootstrap, group, [topic]))


def new_contact(contacts: ContactsApp, **details: Any) -> UUID:
    result = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name=f"Co {uuid4().hex[:4]}",
        details={
            "first_names": details.pop("first_names", f"F{uuid4().hex[:6]}"),
            "last_names": "Lund",
            **details,
        },
    )
    return result.contact_id


def users(n: int, graph_url: str) -> list[str]:
    """New users, each with a mailbox provisioned on the Graph server."""
    tag = uuid4().hex[:6]
    out = [f"{name}-{tag}" for name in ("bob", "eve", "kim")[:n]]
    for user in out:
        assert httpx.put(f"{graph_url}/_admin/users/{user}", timeout=30).status_code == 204
    return out


# ---------------------------------------------------------------------------- flows


async def test_a_synced_contact_follows_edits_jobs_archive_and_erasure(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    bob, eve = users(2, world.graph_url)
    cid = new_contact(
        c, work_email="w@acme.example", private_email="p@home.example", work_phone="+45 1"
    )
    c.change_photo(ALICE, cid, image_bytes(color="blue"))
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await converge(world, [cid], [bob, eve], store)
    [item] = world.items(bob)
    assert item["folderName"] == "Kontakt"
    assert [e["address"] for e in item["emailAddresses"]] == ["w@acme.example", "p@home.example"]
    assert item["businessPhones"] == ["+45 1"]

    # An edit Outlook shows: one PATCH. Another user's switch: nothing for bob's item.
    world.admin("POST", "stats/reset")
    c.change_details(ALICE, cid, {"job_title": "CTO"})
    await converge(world, [cid], [bob, eve], store)
    assert world.admin("GET", "stats").get("writes_PATCH") == 1
    modified = world.items(bob)[0]["lastModifiedDateTime"]
    c.toggle_outlook_sync(Actor(eve, "t"), cid, user_id=eve, enabled=True)
    await converge(world, [cid], [bob, eve], store)
    assert world.items(bob)[0]["lastModifiedDateTime"] == modified

    # A job change: the same item follows the person, for both users.
    _, new = c.change_job(
        ALICE, cid, company_id=uuid4(), company_name="Beta", job={}, effective_on=date(2026, 3, 1)
    )
    await converge(world, [cid], [bob, eve], store)
    [moved] = world.items(bob)
    assert moved["id"] == item["id"] and moved["companyName"] == "Beta"

    c.archive(ALICE, new.contact_id, "left")
    await converge(world, [cid], [bob, eve], store)
    assert world.items(bob) == [] and world.items(eve) == []
    c.restore(ALICE, new.contact_id)
    await converge(world, [cid], [bob, eve], store)
    assert len(world.items(bob)) == 1
    c.erase_person(Actor("dpo", "t"), new.contact_id, "gdpr")
    await converge(world, [cid], [bob, eve], store)
    assert world.items(bob) == [] and world.items(eve) == []

    outcomes = [
        parse_sync_event(r.value)
        for r in await read_topic(world.settings.kafka_bootstrap, world.settings.sync_events_topic)
    ]
    mine = [o for o in outcomes if o.user_id == bob]
    assert [o.status for o in mine] == [
        "linked",
        "updated",
        "updated",
        "unlinked",
        "linked",
        "unlinked",
    ]
    assert [o.sequence for o in mine] == list(range(1, 7))
    assert mine[-1].reason == "the person was erased"


async def test_after_an_undone_job_change_each_outlook_item_renders_the_former_version(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    bob, eve = users(2, world.graph_url)
    cid = new_contact(c, job_title="Buyer")
    former_company = c.get_contact(cid).company_name
    for u in (bob, eve):
        c.toggle_outlook_sync(Actor(u, "t"), cid, user_id=u, enabled=True)
    await converge(world, [cid], [bob, eve], store)
    first = {u: [i["id"] for i in world.items(u)] for u in (bob, eve)}

    def crm_ids(user: str) -> list[str]:
        return [
            {p["id"]: p["value"] for p in i["singleValueExtendedProperties"]}[CONTACT_ID_PROPERTY]
            for i in world.items(user)
        ]

    _, new = c.change_job(
        ALICE,
        cid,
        company_id=uuid4(),
        company_name="Beta",
        job={"job_title": "CFO"},
        effective_on=date(2026, 3, 1),
    )
    c.add_infotag(ALICE, new.contact_id, "VIP")  # on the new version: it goes back too
    await converge(world, [cid], [bob, eve], store)
    for u in (bob, eve):
        assert crm_ids(u) == [str(new.contact_id)]
        assert [i["companyName"] for i in world.items(u)] == ["Beta"]

    c.undo_job_change(ALICE, new.contact_id)
    await converge(world, [cid], [bob, eve], store)
    for u in (bob, eve):
        [item] = world.items(u)
        assert crm_ids(u) == [str(cid)]  # none left for the withdrawn version
        assert item["id"] == first[u][0]  # the same item, not a new one
        assert (item["companyName"], item["jobTitle"]) == (former_company, "Buyer")
        assert item["categories"] == ["VIP"]

    # The former version is current again: its next edit reaches Outlook.
    c.change_details(ALICE, cid, {"job_title": "Head buyer"})
    await converge(world, [cid], [bob, eve], store)
    for u in (bob, eve):
        assert [i["jobTitle"] for i in world.items(u)] == ["Head buyer"]
        assert crm_ids(u) == [str(cid)]


async def test_a_renamed_or_moved_catalogue_tag_renames_the_category_on_every_item(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    bob, eve = users(2, world.graph_url)
    admin, roles = Actor("root", "catalogue"), frozenset({"admin"})
    root_name = f"Kunde {uuid4().hex[:6]}"
    root = c.define_infotag(admin, roles, root_name, None)
    gold = c.define_infotag(admin, roles, "Guld", root)
    other = c.define_infotag(admin, roles, f"Partner {uuid4().hex[:6]}", None)
    tagged, plain = new_contact(c), new_contact(c)
    c.add_catalogue_infotag(ALICE, tagged, gold)
    c.add_infotag(ALICE, tagged, "Golf")  # a name the catalogue does not know: stays as is
    for cid in (tagged, plain):
        c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    c.toggle_outlook_sync(Actor(eve, "t"), tagged, user_id=eve, enabled=True)
    await converge(world, [tagged, plain], [bob, eve], store)
    for u in (bob, eve):
        [item] = [i for i in world.items(u) if i["categories"]]
        assert item["categories"] == sorted([f"{root_name}/Guld", "Golf"])

    # The parent renamed: the child's path changes with it, on every item that has it.
    c.change_infotag(admin, roles, root, name=f"{root_name} Gruppen")
    await converge(world, [tagged, plain], [bob, eve], store)
    for u in (bob, eve):
        [item] = [i for i in world.items(u) if i["categories"]]
        assert item["categories"] == sorted([f"{root_name} Gruppen/Guld", "Golf"])

    # The child moved under another root.
    c.change_infotag(admin, roles, gold, parent_id=other, move=True)
    await converge(world, [tagged, plain], [bob, eve], store)
    partner = c.infotag_catalogue().path(other)
    for u in (bob, eve):
        [item] = [i for i in world.items(u) if i["categories"]]
        assert item["categories"] == sorted([f"{partner}/Guld", "Golf"])
    assert len(world.items(bob)) == 2 and len(world.items(eve)) == 1  # updated, not re-made


async def test_a_removed_photo_replaces_the_item_by_one_without_photo(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    [bob] = users(1, world.graph_url)
    cid = new_contact(c)
    c.change_photo(ALICE, cid, image_bytes("PNG", (64, 48), color="blue"))
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await converge(world, [cid], [bob], store)
    [before] = world.items(bob)
    assert before["photoBytes"] > 0
    c.remove_photo(ALICE, cid)
    await converge(world, [cid], [bob], store)
    [after] = world.items(bob)
    assert after["photoSha256"] is None and after["id"] != before["id"]
    [link] = [row for row in await store.links() if row.user_id == bob]
    assert link.graph_id == after["id"]


def as_the_user(world: World, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A Graph request as Outlook makes it for the user (another app, its own token)."""
    token = httpx.post(
        f"{world.graph_url}/tenant/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "outlook",
            "client_secret": "s3cret",
            "scope": "https://graph.microsoft.com/.default",
        },
        timeout=30,
    ).json()["access_token"]
    return httpx.request(
        method,
        f"{world.graph_url}/v1.0/{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,
    )


async def test_categories_the_user_set_in_outlook_survive_kontakts_updates(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    [bob] = users(1, world.graph_url)
    cid = new_contact(c)
    c.add_infotag(ALICE, cid, "VIP")
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await converge(world, [cid], [bob], store)
    [item] = world.items(bob)
    assert item["categories"] == ["VIP"]
    mine = {"categories": ["VIP", "Golf"]}
    assert as_the_user(world, "PATCH", f"users/{bob}/contacts/{item['id']}", json=mine).is_success
    c.change_details(ALICE, cid, {"job_title": "CFO"})
    c.remove_infotag(ALICE, cid, "VIP")

    async def updated() -> dict[str, Any] | None:
        await world.publish()
        [now] = world.items(bob)
        return now if now.get("jobTitle") == "CFO" and "VIP" not in now["categories"] else None

    shown = await eventually(updated, "the edit reaches Outlook", CONVERGE_SECONDS, 0.5)
    assert shown["categories"] == ["Golf"] and shown["id"] == item["id"]


async def test_an_item_the_user_deleted_switches_their_sync_off_with_a_reason(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    [bob] = users(1, world.graph_url)
    cid = new_contact(c)
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await converge(world, [cid], [bob], store)
    [item] = world.items(bob)
    world.admin("DELETE", f"users/{bob}/contacts/{item['id']}")  # the user, in Outlook
    await converge(world, [cid], [bob], store)
    assert bob not in c.get_contact(cid).outlook_sync_users
    last = c.history(cid)[-1]
    assert last["type"] == "OutlookSyncToggled" and last["actor"] == "outlook-sync"
    assert DELETED_IN_OUTLOOK in json.dumps(last, default=str)
    assert world.items(bob) == []
    # The user may switch it on again: then it is back.
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await converge(world, [cid], [bob], store)
    assert len(world.items(bob)) == 1


async def synced_with_a_delta_link(world: World, store: SyncStore) -> tuple[UUID, str, str]:
    """A contact synced to a new user, their folder read with delta: (contact, user, item)."""
    c = world.contacts
    [bob] = users(1, world.graph_url)
    cid = new_contact(c)
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await converge(world, [cid], [bob], store)

    async def kept() -> bool:
        async with store.pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM sync_delta_links WHERE mailbox = %s", (bob,))
            return await cur.fetchone() is not None

    await eventually(kept, "no deltaLink kept", CONVERGE_SECONDS, 0.2)
    [item] = world.items(bob)
    return cid, bob, str(item["id"])


async def switched_off_by_outlook(world: World, store: SyncStore, cid: UUID, user: str) -> None:
    """The worker noticed the item gone: the user's switch is off, with the reason."""
    await converge(world, [cid], [user], store)
    assert user not in world.contacts.get_contact(cid).outlook_sync_users
    assert DELETED_IN_OUTLOOK in json.dumps(world.contacts.history(cid)[-1], default=str)


async def test_an_item_the_user_moved_out_of_the_folder_is_noticed_through_delta(
    world: World, store: SyncStore
) -> None:
    cid, bob, item = await synced_with_a_delta_link(world, store)
    followed = world.admin("GET", "stats").get("delta_followed", 0)
    world.admin("POST", f"users/{bob}/contacts/{item}/move", json={})  # in Outlook
    await switched_off_by_outlook(world, store, cid, bob)
    # Noticed by following the deltaLink, not by listing the folder again.
    assert world.admin("GET", "stats")["delta_followed"] > followed


async def test_a_refused_delta_link_falls_back_to_listing_the_folder(
    world: World, store: SyncStore
) -> None:
    cid, bob, item = await synced_with_a_delta_link(world, store)
    world.admin("POST", "delta/expire")  # Graph's token cache dropped it: 410 from now on
    world.admin("DELETE", f"users/{bob}/contacts/{item}")
    await switched_off_by_outlook(world, store, cid, bob)


async def test_a_mailbox_the_app_may_not_touch_is_reported_failed_and_parked(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    [bob] = users(1, world.graph_url)
    world.admin("PUT", f"forbidden/{bob}")
    cid = new_contact(c)
    c.toggle_outlook_sync(Actor(bob, "t"), cid, user_id=bob, enabled=True)
    await world.publish()
    person = c.get_contact(cid).person_id

    async def failed() -> bool:
        links = await store.links([person])
        return bool(links) and links[0].state == "failed"

    await eventually(failed, "the link failed", CONVERGE_SECONDS, 0.2)
    [link] = await store.links([person])
    assert link.state == "failed" and "403" in (link.reason or "")
    assert await store.pending() == 0  # parked: not retried until the contact changes
    world.admin("DELETE", f"forbidden/{bob}")
    c.change_details(ALICE, cid, {"job_title": "Now allowed"})
    await converge(world, [cid], [bob], store)


# ---------------------------------------------------------------------------- convergence

OPS = st.one_of(
    st.tuples(st.just("toggle"), st.integers(0, 1), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("edit"), st.integers(0, 1), st.sampled_from(["CTO", "CEO", None])),
    st.tuples(st.just("tag"), st.integers(0, 1), st.sampled_from(["VIP", "Board"])),
    st.tuples(st.just("photo"), st.integers(0, 1), st.sampled_from(["red", "green", None])),
    st.tuples(st.just("job"), st.integers(0, 1)),
    st.tuples(st.just("archive"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("erase"), st.integers(0, 1)),
    st.tuples(st.just("outlook_delete"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("restart"), st.booleans()),
)


async def run_op(
    world: World,
    op: tuple[Any, ...],
    starts: list[UUID],
    us: list[str],
    store: SyncStore,
    deleted: set[tuple[str, str]],
) -> None:
    """Carry out one random step; commands the contact refuses (e.g. archived) are skipped."""
    c = world.contacts
    kind = op[0]
    if kind == "restart":
        world.restart_worker(kill=op[1])
        return
    start = starts[op[2] if kind in ("toggle", "outlook_delete") else op[1]]
    cid = current_id(c, start)
    person = str(start)
    try:
        if kind == "toggle":
            user = us[op[1]]
            before = c.get_contact(cid).version
            result = c.toggle_outlook_sync(Actor(user, "t"), cid, user_id=user, enabled=op[3])
            if op[3] and result.version > before:
                deleted.discard((user, person))
        elif kind == "edit":
            c.change_details(ALICE, cid, {"job_title": op[2]})
        elif kind == "tag":
            contact = c.get_contact(cid)
            if op[2] in contact.infotags:
                c.remove_infotag(ALICE, cid, op[2])
            else:
                c.add_infotag(ALICE, cid, op[2])
        elif kind == "photo":
            if op[2] is None:
                c.remove_photo(ALICE, cid)
            else:
                c.change_photo(ALICE, cid, image_bytes(color=op[2]))
        elif kind == "job":
            c.change_job(
                ALICE,
                cid,
                company_id=uuid4(),
                company_name=f"Co {uuid4().hex[:4]}",
                job={"job_title": "New"},
                effective_on=date(2026, 1, 1),
            )
        elif kind == "archive":
            if op[2]:
                c.archive(ALICE, cid, "test")
            else:
                c.restore(ALICE, cid)
        elif kind == "erase":
            c.erase_person(Actor("dpo", "t"), cid, "gdpr")
        elif kind == "outlook_delete":
            # The user deletes what they see, once the worker caught up with the CRM.
            user = us[op[1]]
            await converge(world, starts, us, store)
            for item in world.items(user):
                prop = {p["id"]: p["value"] for p in item["singleValueExtendedProperties"]}
                if prop[CONTACT_ID_PROPERTY] == str(cid):
                    world.admin("DELETE", f"users/{user}/contacts/{item['id']}")
                    deleted.add((user, person))
    except (ContactError, PersonErasedError):
        pass


@hsettings(
    max_examples=int(os.environ.get("KONTAKT_SYNC_EXAMPLES", "5")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(ops=st.lists(OPS, min_size=4, max_size=10), crash_at=st.integers(0, 10))
async def test_every_folder_converges_to_the_switches_under_faults_and_restarts(
    world: World, store: SyncStore, ops: list[tuple[Any, ...]], crash_at: int
) -> None:
    ops = [*ops[:crash_at], ("restart", True), *ops[crash_at:]]  # at least one crash each
    c = world.contacts
    us = users(2, world.graph_url)
    starts = [new_contact(c, work_email=f"{uuid4().hex[:6]}@x.example") for _ in range(2)]
    for start in starts:
        c.toggle_outlook_sync(Actor(us[0], "t"), start, user_id=us[0], enabled=True)
    world.admin(
        "PUT",
        "faults",
        json={
            "rate": 0.3,  # 30% configured, so at least ~20% of calls fault in practice
            "kinds": ["429", "503", "slow", "drop"],
            "retry_after": 0.2,
            "slow_seconds": 1.5,
        },
    )
    world.admin("POST", "stats/reset")
    deleted: set[tuple[str, str]] = set()
    try:
        for op in ops:
            await run_op(world, op, starts, us, store, deleted)
        expected = await converge(world, starts, us, store)
    finally:
        stats = world.admin("GET", "stats")
        world.admin("PUT", "faults", json={"rate": 0})
    # No item a user deleted came back (unless they switched it on again since).
    for user, gone in deleted:
        mine = {str(v.id) for v in c.employments(UUID(gone))}
        assert not set(expected[user]) & mine, f"{user} got {gone} back"
    world.contact_ids.update(starts)
    share = stats["faults"] / max(stats["requests"], 1)
    MEASURED.append(
        f"sync convergence: {len(ops)} ops, {stats['requests']} Graph requests, "
        f"{stats['faults']} faults ({share:.0%}), {stats['writes']} writes, "
        f"restarts so far {world.restarts}"
    )
    # The dice do inject faults: at 30% per call, fewer than 3 standard deviations below
    # that is practically impossible (a lower realised share in a small run is chance).
    rate, n = 0.3, max(stats["requests"], 1)
    assert share >= rate - 3 * (rate * (1 - rate) / n) ** 0.5


async def test_a_rerun_of_the_same_events_makes_zero_graph_writes(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    us = users(2, world.graph_url)
    starts = [new_contact(c) for _ in range(2)]
    for u in us:
        c.toggle_outlook_sync(Actor(u, "t"), starts[0], user_id=u, enabled=True)
    c.change_photo(ALICE, starts[0], image_bytes(color="green"))
    await converge(world, starts, us, store)
    topics = [world.settings.contacts_topic, world.settings.infotags_topic]

    async def all_caught_up(group: str) -> bool:
        bootstrap = world.settings.kafka_bootstrap
        return all([await group_caught_up(bootstrap, group, t) for t in topics])

    # Everything on both topics applied before the re-run (a catalogue change applied only
    # by the re-run would rightly rename categories).
    first = world.group
    assert first is not None
    await eventually(lambda: all_caught_up(first), "no catch-up", CONVERGE_SECONDS, 0.5)
    world.stop_worker()
    world.admin("POST", "stats/reset")
    # A new consumer group re-reads both topics: every event is delivered again.
    group = f"sync-rerun-{uuid4().hex[:8]}"
    world.start_worker(group)
    await eventually(
        lambda: all_caught_up(group), "the re-run did not catch up", CONVERGE_SECONDS, 0.5
    )
    # And every link reconciled once more: what was pushed is what Outlook shows.
    marked = await store.mark_all_dirty()

    async def settled() -> bool:
        return await store.pending() == 0

    await eventually(settled, "the links did not settle", CONVERGE_SECONDS, 0.2)
    stats = world.admin("GET", "stats")
    MEASURED.append(f"sync re-run: {marked} links reconciled again, Graph writes {stats['writes']}")
    assert stats["writes"] == 0


async def test_after_losing_its_state_the_worker_finds_its_items_instead_of_duplicating(
    world: World, store: SyncStore
) -> None:
    c = world.contacts
    us = users(2, world.graph_url)
    starts = [new_contact(c) for _ in range(3)]
    for u in us:
        for s in starts[:2]:
            c.toggle_outlook_sync(Actor(u, "t"), s, user_id=u, enabled=True)
    await converge(world, starts, us, store)
    before = {u: sorted(i["id"] for i in world.items(u)) for u in us}
    world.stop_worker()
    async with store.pool.connection() as conn:
        await conn.execute("TRUNCATE sync_links, sync_contacts, sync_outbox")
    world.admin("POST", "stats/reset")
    group = f"sync-lost-{uuid4().hex[:8]}"
    world.start_worker(group)
    persons = [c.get_contact(s).person_id for s in starts[:2]]

    async def rebuilt() -> bool:
        return (
            await group_caught_up(
                world.settings.kafka_bootstrap, group, world.settings.contacts_topic
            )
            and await store.pending() == 0
            and [link.state for link in await store.links(persons)] == ["linked"] * 4
        )

    await eventually(rebuilt, "the worker did not rebuild its state", CONVERGE_SECONDS, 0.5)
    expected = await converge(world, starts, us, store)
    stats = world.admin("GET", "stats")
    MEASURED.append(
        f"sync after state loss: {stats['writes']} Graph writes replaying the whole topic"
        f" ({stats.get('writes_POST', 0)} POSTs)"
    )
    assert all(len(expected[u]) == 2 for u in us)
    # The very same items, found again by the extended property: none recreated.
    assert {u: sorted(i["id"] for i in world.items(u)) for u in us} == before
