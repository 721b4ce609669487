"""Chaos: a steady load from several users while workers are killed, Kafka and PostgreSQL
restart and poison lands on every consumed topic; afterwards nothing is lost, duplicated,
stale or stuck.

Runs on a stack of its own (see tests/chaos.py): restarting the session's servers would
break every other test's connections. The seed is printed; set KONTAKT_CHAOS_SEED to
replay a run's choices.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from devstack import stack as launcher
from services.contacts.export import StoreReader
from services.contacts.store import build_contacts_app, close_contacts_app
from services.projections.db import create_pool
from services.projections.rebuild import rebuild_contacts
from services.projections.sql import contacts as contacts_sql
from services.projections.worker import FAMILIES, group_id, topics_of
from services.sync.domain import CONTACT_ID_PROPERTY, DETAIL_FIELDS, Snapshot, render_contact
from services.sync.photos import fit_for_graph
from shared.auth import mint_token
from shared.kafka import Record, delete_topics, ensure_topics, read_topic
from shared.lag import group_lag
from shared.settings import KontaktSettings
from tests.chaos import (
    WORKERS,
    Fleet,
    Outages,
    QueryLoad,
    Tally,
    UserLoad,
    chaos_settings,
    chaos_stack_config,
    consumed_topics,
    dead_letter_topics,
    fault_plan,
    fleet_env,
    poison_rounds,
    run_faults,
)
from tests.conftest import MEASURED
from tests.kafka_helpers import sweep_test_topics
from tests.support import env_of, free_port, own_topics, within

USERS = 4
COMMANDS = 400
#: The load's span: faults land inside it.
LOAD_SECONDS = 80.0
KILLS_PER_WORKER = 3
#: A liveness bound, not a timing threshold: failing it means "stuck".
SETTLE_SECONDS = 150.0
#: How long an API may take to answer again after the last fault (a liveness bound).
RECOVERY_SECONDS = 60.0


@dataclass
class Run:
    """One chaos run's stack, settings and processes."""

    cfg: launcher.StackConfig
    settings: KontaktSettings
    fleet: Fleet


@pytest.fixture
def chaos_run() -> Iterator[Run]:
    """A stack of the test's own with every Kontakt process on it; all stopped afterwards."""
    cfg = chaos_stack_config(launcher.StackConfig.from_env())
    try:
        info = launcher.up(cfg, progress=lambda _: None)
    except launcher.StackError as exc:
        pytest.fail(f"the chaos stack could not be started: {exc}", pytrace=False)
    # The stack is this test's alone: what earlier runs left on it (killed before their
    # clean-up) only slows the broker down.
    sweep_test_topics(info.kafka_bootstrap, running=())
    suffix = uuid.uuid4().hex[:8]
    database = f"kontakt_chaos_{suffix}"
    fleet: Fleet | None = None
    try:
        launcher.ensure_database(info, database)
        settings = chaos_settings(info, database, suffix)
        topics = [*consumed_topics(settings), *dead_letter_topics(settings)]
        asyncio.run(ensure_topics(settings, topics))
        graph_port = free_port()
        env = fleet_env(settings, env_of(settings), graph_port)
        # Beside the stack's own logs, so they outlive the test's temporary folders.
        logs = cfg.state_dir / "runs" / suffix
        logs.mkdir(parents=True, exist_ok=True)
        fleet = Fleet(settings, env, logs, graph_port)
        fleet.start_all()
        yield Run(cfg, settings, fleet)
    finally:
        if fleet is not None:
            fleet.stop_all()
        # The stack outlives the run: leave it no topics or database to load next time.
        with suppress(Exception):
            asyncio.run(delete_topics(info.kafka_bootstrap, own_topics(suffix).values()))
        with suppress(Exception), psycopg.connect(info.pg_dsn("postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        launcher.down(cfg)


# ---------------------------------------------------------------------------- checks


async def lagging(settings: KontaktSettings) -> list[str]:
    """Every consumer group partition with lag, as 'group topic[partition]=lag'."""
    groups = [(group_id(f), topics_of(settings, f)) for f in FAMILIES]
    groups.append((settings.sync_consumer_group, [settings.contacts_topic]))
    behind = []
    for group, topics in groups:
        for p in await group_lag(settings.kafka_bootstrap, group, topics):
            if p.lag > 0:
                behind.append(f"{group} {p.topic}[{p.partition}]={p.lag}")
    return behind


def relay_behind(settings: KontaktSettings) -> int:
    """How many stored events the relay has not published yet."""
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        position = conn.execute("SELECT max(position) FROM relay_positions").fetchone()
        tables = conn.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE column_name = 'notification_id' AND table_schema = 'public'"
        ).fetchall()
        newest = 0
        for (table,) in tables:
            row = conn.execute(f'SELECT max(notification_id) FROM "{table}"').fetchone()
            newest = max(newest, int(row[0] or 0) if row else 0)
    published = int(position[0] or 0) if position else 0
    return max(0, newest - published)


def not_ready(fleet: Fleet) -> list[str]:
    """Workers whose /health/ready does not answer 200, with what they said."""
    out = []
    urls = fleet.ready_urls()
    for name in WORKERS:
        try:
            response = httpx.get(urls[name], timeout=5)
        except httpx.HTTPError as exc:
            out.append(f"{name}: {type(exc).__name__}")
            continue
        if response.status_code != 200:
            out.append(f"{name}: {response.status_code} {response.text[:200]}")
    return out


def current_contacts(settings: KontaktSettings, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Each known contact's current state from the store, following job changes to new ones."""
    auth = {"Authorization": f"Bearer {mint_token(settings, 'auditor')}"}
    out: dict[str, dict[str, Any]] = {}
    todo = sorted(ids)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{settings.api_port}", headers=auth, timeout=30
    ) as api:
        while todo:
            cid = todo.pop()
            if cid in out:
                continue
            response = api.get(f"/contacts/{cid}")
            assert response.status_code == 200, (cid, response.status_code, response.text)
            view = response.json()
            if view.get("photo"):
                photo = api.get(f"/contacts/{cid}/photo")
                assert photo.status_code == 200, (cid, photo.status_code)
                # Outlook gets the photo as a JPEG under Graph's limit.
                sent = fit_for_graph(photo.content, photo.headers["content-type"]) or b""
                view["photo_sha256"] = hashlib.sha256(sent).hexdigest()
            out[cid] = view
            if view.get("successor_id"):
                todo.append(str(view["successor_id"]))
    return out


#: The fields of a Graph contact the suite compares.
OUTLOOK_FIELDS = (
    "givenName",
    "surname",
    "displayName",
    "companyName",
    "jobTitle",
    "department",
    "emailAddresses",
    "businessPhones",
    "homePhones",
    "categories",
)


def expected_outlook(contacts: dict[str, dict[str, Any]], users: list[str]) -> dict[str, Any]:
    """Per user: their switched-on current contacts, rendered as the sync renders them."""
    out: dict[str, dict[str, Any]] = {u: {} for u in users}
    for cid, view in contacts.items():
        if view["status"] != "current" or view["archived"] or view["erased"]:
            continue
        snap = Snapshot(
            contact_id=uuid.UUID(cid),
            person_id=uuid.UUID(view["person_id"]),
            version=view["version"],
            status="current",
            company_name=view["company_name"],
            details={name: view.get(name) for name in DETAIL_FIELDS},
            infotags=tuple(sorted(t["tag"] for t in view["infotags"])),
            photo_hash=(view.get("photo") or {}).get("content_hash"),
        )
        body = render_contact(snap)
        shown = {f: _norm(f, body.get(f)) for f in OUTLOOK_FIELDS}
        shown["photoSha256"] = view.get("photo_sha256")
        for user in view["outlook_sync_users"]:
            if user in out:
                out[user][cid] = shown
    return out


def _norm(name: str, value: Any) -> Any:
    """One form for values Graph may order or omit differently."""
    if name == "categories":
        return sorted(value or [])
    if name in ("emailAddresses", "businessPhones", "homePhones"):
        return value or []
    return value if value != "" else None


def actual_outlook(fleet: Fleet, users: list[str]) -> tuple[dict[str, Any], int]:
    """Per user: what their folder holds by CRM id, and how many items were duplicates."""
    out: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for user in users:
        response = httpx.get(f"{fleet.graph_url}/_admin/users/{user}/contacts", timeout=30)
        response.raise_for_status()
        mine: dict[str, Any] = {}
        for item in response.json()["value"]:
            props = {p["id"]: p["value"] for p in item.get("singleValueExtendedProperties") or []}
            crm_id = props.get(CONTACT_ID_PROPERTY, f"no crm id {item['id']}")
            if crm_id in mine:
                duplicates += 1
                crm_id = f"{crm_id} duplicate {item['id']}"
            shown = {f: _norm(f, item.get(f)) for f in OUTLOOK_FIELDS}
            shown["photoSha256"] = item.get("photoSha256")
            mine[crm_id] = shown
        out[user] = mine
    return out, duplicates


def outlook_diff(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, list[str]]:
    """Missing, extra and stale Outlook items, as 'user contact' lines."""
    diff: dict[str, list[str]] = {"missing": [], "extra": [], "stale": []}
    for user, want in expected.items():
        have = actual.get(user, {})
        for cid, shown in want.items():
            if cid not in have:
                diff["missing"].append(f"{user} {cid}")
            elif have[cid] != shown:
                changed = {
                    f: (shown[f], have[cid].get(f)) for f in shown if shown[f] != have[cid].get(f)
                }
                diff["stale"].append(f"{user} {cid} {changed}")
        diff["extra"] += [f"{user} {cid}" for cid in have if cid not in want]
    return diff


async def rebuild_equals_live(settings: KontaktSettings) -> tuple[bool, str]:
    """Rebuild the contacts read model from the store and compare it with the live one."""
    app = await asyncio.to_thread(build_contacts_app, settings)
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn:
            live = await contacts_sql.dump(conn, contacts_sql.LIVE)
        await rebuild_contacts(settings, pool, StoreReader(app))
        async with pool.acquire() as conn:
            rebuilt = await contacts_sql.dump(conn, contacts_sql.LIVE)
    finally:
        await pool.close()
        await asyncio.to_thread(close_contacts_app, app)
    if live == rebuilt:
        return True, f"{len(live.get('contacts', []))} contacts"
    lines = []
    for table in sorted(set(live) | set(rebuilt)):
        a, b = set(map(repr, live.get(table, []))), set(map(repr, rebuilt.get(table, [])))
        if a != b:
            only_live, only_rebuilt = sorted(a - b, key=str), sorted(b - a, key=str)
            lines.append(
                f"{table}: {len(only_live)} only live, {len(only_rebuilt)} only rebuilt;"
                f" e.g. live {only_live[:2]} rebuilt {only_rebuilt[:2]}"
            )
    return False, "; ".join(lines)


async def dead_lettered(settings: KontaktSettings) -> list[tuple[str, Record]]:
    """Every record on every dead-letter topic, with its topic."""
    return [
        (t, r)
        for t in dead_letter_topics(settings)
        for r in await read_topic(settings.kafka_bootstrap, t)
    ]


def consumer_of(topic: str, record: Record) -> str:
    """Which consumer dead-lettered a record: its topic and the family or group it names."""
    who = [record.header(h) for h in ("x-family", "x-group", "x-consumer-group", "x-consumer")]
    return " ".join([topic, *(w for w in who if w)])


def recovery(settings: KontaktSettings, tally: Tally, pool: list[str]) -> list[str]:
    """Ask each API once more (bounded wait) after the faults; return those without a 2xx."""
    auth = {"Authorization": f"Bearer {mint_token(settings, 'prober')}"}
    company = str(uuid.uuid4())
    asks = {
        "command": ("POST", settings.api_port, "/contacts", {"json": {
            "company_id": company, "company_name": "Probe A/S", "first_names": "Probe",
            "last_names": company[:8]}}),
        "read": ("GET", settings.api_port, f"/contacts/{pool[0]}", {}),
        "query": ("GET", settings.query_port, "/contacts?limit=1", {}),
    }  # fmt: skip
    failed = []
    for api, (method, port, path, kwargs) in asks.items():

        def answered(
            api: str = api,
            method: str = method,
            port: int = port,
            path: str = path,
            kwargs: dict[str, Any] = kwargs,
        ) -> bool:
            try:
                response = httpx.request(
                    method, f"http://127.0.0.1:{port}{path}", headers=auth, timeout=10, **kwargs
                )
            except httpx.HTTPError:
                return False
            tally.record(api, f"probe {method} {path}", response)
            return 200 <= response.status_code < 300

        if not within(answered, RECOVERY_SECONDS):
            failed.append(api)
    return failed


# ---------------------------------------------------------------------------- the test


def test_no_kill_restart_or_poison_loses_duplicates_or_stalls_anything(chaos_run: Run) -> None:
    seed = int(os.environ.get("KONTAKT_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {seed} (KONTAKT_CHAOS_SEED={seed} replays its choices)")
    rng = random.Random(seed)
    s, fleet = chaos_run.settings, chaos_run.fleet
    users = [f"user{n}-{uuid.uuid4().hex[:4]}" for n in range(USERS)]
    for user in users:  # unknown mailboxes are 404 on Graph
        httpx.put(f"{fleet.graph_url}/_admin/users/{user}", timeout=30).raise_for_status()
    pool: list[str] = []
    tally, pool_lock = Tally(), threading.Lock()
    per_user = COMMANDS // USERS
    plan = fault_plan(rng, LOAD_SECONDS, KILLS_PER_WORKER)
    rounds = poison_rounds(s, rng)
    print("fault plan: " + ", ".join(f"{f.at:.1f}s {f.kind} {f.target}" for f in plan))
    outages = Outages()
    # Kills in one thread, outages and poison in another: a slow restart delays no kill.
    faults = [
        threading.Thread(
            target=run_faults,
            args=(part, fleet, chaos_run.cfg, s, random.Random(seed + n), outages, rounds),
            daemon=True,
        )
        for n, part in enumerate(
            [[f for f in plan if f.kind == "kill"], [f for f in plan if f.kind != "kill"]]
        )
    ]

    def faults_running() -> bool:
        """Whether a fault thread is still at work."""
        return any(t.is_alive() for t in faults)

    loads = [
        UserLoad(
            u,
            s,
            tally,
            pool,
            pool_lock,
            per_user,
            LOAD_SECONDS / per_user,
            seed + n,
            faults_running,
        )
        for n, u in enumerate(users)
    ]
    stop_queries = threading.Event()
    readers = QueryLoad(s, tally, pool, stop_queries)
    started = time.monotonic()
    for t in (*loads, readers, *faults):
        t.start()
    while any(t.is_alive() for t in (*loads, *faults)):
        fleet.check_alive()
        time.sleep(0.5)
    load_seconds = time.monotonic() - started
    stop_queries.set()
    readers.join(timeout=30)
    # The APIs recovered from every outage by themselves: each answers 2xx again.
    not_recovered = recovery(s, tally, pool)

    # Settle: bounded wait until nothing is behind, every worker ready and Outlook exact.
    behind: list[str] = ["not checked"]
    unready: list[str] = ["not checked"]
    diff: dict[str, list[str]] = {}
    duplicates = 0
    relay_lag = -1

    def settled() -> bool:
        nonlocal relay_lag, behind, unready, duplicates, diff
        fleet.check_alive()
        try:
            relay_lag = relay_behind(s)
            behind = asyncio.run(lagging(s))
            unready = not_ready(fleet)
            contacts = current_contacts(s, tally.contact_ids)
            actual, duplicates = actual_outlook(fleet, users)
            diff = outlook_diff(expected_outlook(contacts, users), actual)
        except (httpx.HTTPError, OSError, AssertionError, psycopg.Error) as exc:
            behind = [f"check failed: {exc!r}"]
        return not (relay_lag or behind or unready or duplicates or any(diff.values()))

    within(settled, SETTLE_SECONDS, every=1)
    settle_seconds = time.monotonic() - started - load_seconds

    # Every acknowledged command is in the store.
    contacts = current_contacts(s, tally.contact_ids)
    lost = {
        cid: (version, contacts[cid]["version"] if cid in contacts else None)
        for cid, version in tally.acked_versions.items()
        if cid not in contacts or contacts[cid]["version"] < version
    }
    rebuilt_ok, rebuilt_note = asyncio.run(rebuild_equals_live(s))
    letters = asyncio.run(dead_lettered(s))
    consumers = Counter({t: 1 for t in consumed_topics(s)})
    consumers[s.contacts_topic] = 2  # the projection worker and the sync worker
    # A consumer killed after dead-lettering and before committing does it again: count
    # each consumer once.
    found: dict[str, set[str]] = {m.marker: set() for m in outages.poison}
    other_letters = []
    for topic, record in letters:
        markers = [m for m in found if m.encode() in record.value]
        for marker in markers:
            found[marker].add(consumer_of(topic, record))
        if not markers:
            other_letters.append(
                f"{record.header('x-original-topic')} {record.header('x-error')}"[:300]
            )
    not_dead_lettered = [
        f"{m.topic} {m.kind} (by {sorted(found[m.marker])}, wanted {consumers[m.topic]})"
        for m in outages.poison
        if len(found[m.marker]) < consumers[m.topic]
    ]
    five_xx = Counter(f"{api} {status}" for api, status, _ in tally.server_errors)
    status_500 = [e for e in tally.server_errors if e[1] == 500]

    report = [
        f"chaos seed {seed}: {tally.sent} commands sent by {USERS} users, "
        f"{tally.acknowledged} acknowledged ({dict(tally.by_kind)}), {tally.queries} reads; "
        f"load {load_seconds:.0f}s, settled {settle_seconds:.0f}s later",
        f"chaos faults: kills {dict(fleet.kills)}, restarts {dict(outages.restarts)}, "
        f"unexpected exits {fleet.unexpected_exits}, fault errors {outages.errors}",
        f"chaos statuses: {dict(sorted(tally.statuses.items()))}; 5xx {dict(five_xx)}; "
        f"transport errors {dict(tally.transport_errors)}",
        f"chaos poison: {len(outages.poison)} sent on {len(consumers)} topics, "
        f"{len(outages.poison) - len(not_dead_lettered)} dead-lettered by every consumer; "
        f"{len(letters)} dead letters, {len(other_letters)} of them no poison",
        f"chaos result: lost {len(lost)}, Outlook duplicates {duplicates}, "
        f"missing {len(diff.get('missing', []))}, extra {len(diff.get('extra', []))}, "
        f"stale {len(diff.get('stale', []))}, relay behind {relay_lag}, lagging {len(behind)}, "
        f"not ready {unready}, read model equals rebuild {rebuilt_ok} ({rebuilt_note})",
    ]
    MEASURED.extend(report)
    print("\n".join(report))
    print("faults done:\n  " + "\n  ".join(outages.done))

    problems = {
        "lost": lost,
        "500s": status_500[:10],
        "unexpected exits": fleet.unexpected_exits,
        "APIs without a 2xx after the faults": not_recovered,
        "fault errors": outages.errors,
        "outlook duplicates": duplicates,
        "outlook missing": diff.get("missing", [])[:10],
        "outlook extra": diff.get("extra", [])[:10],
        "outlook stale": diff.get("stale", [])[:5],
        "relay behind": relay_lag,
        "lagging": behind[:10],
        "not ready": unready,
        "read model differs from a rebuild": [] if rebuilt_ok else rebuilt_note,
        "poison not dead-lettered": not_dead_lettered,
        "dead letters that are no poison": other_letters[:10],
    }
    failed = {k: v for k, v in problems.items() if v}
    for name, found_problem in failed.items():
        print(f"problem: {name}: {found_problem}")
    print(f"process logs in {fleet.logs}")
    assert not failed, failed
    assert tally.acknowledged > COMMANDS // 2, "too few commands acknowledged to prove anything"
