"""The chaos suite's parts: a stack of its own, every process, a steady load, faults, poison.

The suite restarts Kafka and PostgreSQL, so it runs on servers of its own (ports
beside the session's, state under the session's stack folder) and never disturbs
the other tests' servers or pooled connections.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from devstack import stack as launcher
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.support import (
    free_port,
    kill_process,
    own_topics,
    stack_settings,
    start_kontakt,
    stop_processes,
    wait_ready,
)

#: How far the chaos stack's ports lie from the session's (all stay below 32768).
PORT_OFFSET = 100

#: The processes the suite kills with SIGKILL and starts again.
WORKERS = ("relay", "worker", "sync")


def chaos_stack_config(base: launcher.StackConfig) -> launcher.StackConfig:
    """A stack beside the session's: its ports + PORT_OFFSET, its state in a sub-folder."""
    ports = [p + PORT_OFFSET for p in (base.pg_port, base.kafka_port, base.kafka_controller_port)]
    assert all(p < 32768 for p in ports), f"chaos ports {ports} reach the ephemeral range"
    return launcher.StackConfig(
        state_dir=base.state_dir / "chaos",
        pg_port=ports[0],
        kafka_port=ports[1],
        kafka_controller_port=ports[2],
    )


def chaos_settings(info: launcher.StackInfo, database: str, suffix: str) -> KontaktSettings:
    """Settings for every process of one run: its own database, topics and ports."""
    api = free_port()
    return stack_settings(
        info,
        database,
        "chaos",
        **own_topics(suffix),
        api_port=api,
        query_port=free_port(),
        contacts_api_url=f"http://127.0.0.1:{api}",
        relay_http_port=free_port(),
        worker_http_port=free_port(),
        sync_http_port=free_port(),
        log_json=False,
    )


def dead_letter_topics(settings: KontaktSettings) -> list[str]:
    """Every dead-letter topic the settings name (the projection worker's, the sync worker's)."""
    dumped = settings.model_dump()
    return sorted(
        {str(v) for k, v in dumped.items() if "dead_letter" in k and k.endswith("topic") and v}
    )


# ---------------------------------------------------------------------------- processes


@dataclass
class Fleet:
    """Every Kontakt process as its own OS process, started as a user starts them."""

    settings: KontaktSettings
    env: dict[str, str]
    logs: Path
    graph_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    #: Processes that exited without being told to: (name, exit code).
    unexpected_exits: list[tuple[str, int]] = field(default_factory=list)
    #: Processes killed on purpose and not started again yet.
    down: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def graph_url(self) -> str:
        """The Graph-compatible server's base URL."""
        return f"http://127.0.0.1:{self.graph_port}"

    def commands(self) -> dict[str, list[str]]:
        """Each process's `kontakt` arguments."""
        return {
            "graph": [
                "graph-server", "--port", str(self.graph_port),
                "--client-secret", "s3cret",
            ],
            "api": ["serve", "contacts"],
            "query": ["projections", "query"],
            "relay": ["relay"],
            "worker": ["projections", "worker"],
            "sync": ["sync", "worker"],
        }  # fmt: skip

    def ready_urls(self) -> dict[str, str]:
        """Where each process says it is ready."""
        s = self.settings
        return {
            "graph": f"{self.graph_url}/_admin/stats",
            "api": f"http://127.0.0.1:{s.api_port}/health/ready",
            "query": f"http://127.0.0.1:{s.query_port}/health/ready",
            "relay": f"http://127.0.0.1:{s.relay_http_port}/health/ready",
            "worker": f"http://127.0.0.1:{s.worker_http_port}/health/ready",
            "sync": f"http://127.0.0.1:{s.sync_http_port}/health/ready",
        }

    def start(self, name: str) -> None:
        """Start one process (its output appended to its log)."""
        log = self.logs / f"{name}.log"
        self.procs[name] = start_kontakt(self.commands()[name], self.env, log)

    def start_all(self) -> None:
        """Start every process and wait until each is ready."""
        for name in self.commands():
            self.start(name)
        for name, url in self.ready_urls().items():
            wait_ready(url, self.procs[name], timeout=120, log=self.logs / f"{name}.log")

    def kill_and_restart(self, name: str, pause: float) -> None:
        """SIGKILL a process (a crash), then start it again after `pause` seconds."""
        with self.lock:
            kill_process(self.procs[name])
            self.kills[name] += 1
            self.down.add(name)
        time.sleep(pause)
        with self.lock:
            self.start(name)
            self.down.discard(name)

    def check_alive(self) -> None:
        """Note and restart any process that exited by itself (an outage must not kill one)."""
        with self.lock:
            for name, proc in list(self.procs.items()):
                code = None if name in self.down else proc.poll()
                if code is not None:
                    self.unexpected_exits.append((name, code))
                    self.start(name)

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every process; return the exit codes (None: had to be killed)."""
        return stop_processes(self.procs, timeout=30)


def fleet_env(settings: KontaktSettings, env: dict[str, str], graph_port: int) -> dict[str, str]:
    """The environment of every process: the settings plus a quick-paced sync worker."""
    graph = f"http://127.0.0.1:{graph_port}"
    out = {
        **env,
        "KONTAKT_SYNC_GRAPH_BASE_URL": f"{graph}/v1.0",
        "KONTAKT_SYNC_GRAPH_AUTHORITY": graph,
        "KONTAKT_SYNC_GRAPH_CLIENT_ID": "kontakt-chaos",
        "KONTAKT_SYNC_GRAPH_CLIENT_SECRET": "s3cret",
        "KONTAKT_SYNC_GRAPH_TIMEOUT_SECONDS": "5",
        "KONTAKT_SYNC_GRAPH_BACKOFF_SECONDS": "0.05",
        "KONTAKT_SYNC_GRAPH_BACKOFF_MAX_SECONDS": "1",
        "KONTAKT_SYNC_RETRY_MAX_SECONDS": "2",
        "KONTAKT_SYNC_LEASE_SECONDS": "5",
        "KONTAKT_SYNC_POLL_SECONDS": "0.2",
        "KONTAKT_SYNC_VERIFY_SECONDS": "5",
        "KONTAKT_SYNC_DEV_MAILBOX_FALLBACK": "true",
        "KONTAKT_RELAY_POLL_SECONDS": "0.5",
    }
    out.pop("KONTAKT_SYNC_SERVICE_TOKEN", None)
    return out


# ---------------------------------------------------------------------------- load


@dataclass
class Tally:
    """What the load saw, shared by its threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    acknowledged: int = 0
    #: The highest version a 2xx command returned, per contact.
    acked_versions: dict[str, int] = field(default_factory=dict)
    #: Every contact id a command ever returned (job changes add new versions).
    contact_ids: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Server errors: (api, status, what was asked).
    server_errors: list[tuple[str, int, str]] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    queries: int = 0

    def record(self, api: str, what: str, response: httpx.Response) -> None:
        """Count a response; remember the contact versions a 2xx command returned."""
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.server_errors.append((api, response.status_code, what))
            if api != "command" or not 200 <= response.status_code < 300 or not response.content:
                return
            self.acknowledged += 1
            self.by_kind[what.split(" ")[0]] += 1
            body = response.json()
            for result in (body, body.get("predecessor")):
                if isinstance(result, dict) and "contact_id" in result:
                    cid = str(result["contact_id"])
                    self.contact_ids.add(cid)
                    self.acked_versions[cid] = max(
                        self.acked_versions.get(cid, 0), int(result["version"])
                    )


TAGS = ("VIP", "Board", "Partner", "Prospect")
KINDS = (
    ("create", 20),
    ("details", 16),
    ("tag", 12),
    ("untag", 5),
    ("sync_on", 14),
    ("sync_off", 5),
    ("job", 6),
    ("archive", 4),
    ("restore", 5),
    ("photo", 6),
)


class UserLoad(threading.Thread):
    """One user's steady stream of commands at a fixed pace, and the pool of contacts it uses."""

    def __init__(
        self,
        user: str,
        settings: KontaktSettings,
        tally: Tally,
        pool: list[str],
        pool_lock: threading.Lock,
        commands: int,
        interval: float,
        seed: int,
        faults_running: Callable[[], bool],
    ) -> None:
        super().__init__(name=f"load-{user}", daemon=True)
        self.user = user
        self.tally = tally
        self.pool = pool
        self.pool_lock = pool_lock
        self.commands = commands
        self.interval = interval
        self.faults_running = faults_running
        self.rng = random.Random(seed)
        token = mint_token(settings, user, ttl_seconds=3 * 3600)
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{settings.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
        self.companies = [str(uuid.UUID(int=self.rng.getrandbits(128))) for _ in range(3)]

    def run(self) -> None:
        """Send the commands, one every `interval` seconds (later when a command is slow),
        and more while faults are still under way (up to twice as many), so commands
        arrive after every fault too."""
        start = time.monotonic()
        try:
            for i in range(2 * self.commands):
                if i >= self.commands and not self.faults_running():
                    break
                delay = start + i * self.interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.one(i)
        finally:
            self.client.close()

    def target(self) -> str | None:
        """A contact of the shared pool."""
        with self.pool_lock:
            return self.rng.choice(self.pool) if self.pool else None

    def one(self, i: int) -> None:
        """Send one command chosen at random."""
        kinds, weights = zip(*KINDS, strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        cid = self.target()
        if cid is None or len(self.pool) < 8:
            kind = "create"
        tag = f"{self.user}-{i}-{uuid.uuid4().hex[:6]}"
        request: tuple[str, str, dict[str, Any]]
        match kind:
            case "create":
                company = self.rng.choice(self.companies)
                request = ("POST", "/contacts", {"json": {
                    "company_id": company, "company_name": f"Chaos {company[:4]}",
                    "first_names": f"F{tag}", "last_names": "Kaos",
                    "job_title": "Buyer", "work_email": f"{tag}@chaos.example",
                    # A number of its own: one shared number would make near duplicates.
                    "work_phone": f"+45 {int(tag[-6:], 16):08d}",
                }})  # fmt: skip
            case "details":
                request = ("PATCH", f"/contacts/{cid}", {"json": {
                    "job_title": self.rng.choice(["CTO", "CEO", "Buyer", None]),
                    "department": self.rng.choice(["Sales", "R&D", None]),
                    "private_email": f"p{tag}@home.example",
                }})  # fmt: skip
            case "tag":
                request = ("POST", f"/contacts/{cid}/infotags", {"json": {
                    "tag": self.rng.choice(TAGS)}})  # fmt: skip
            case "untag":
                request = ("DELETE", f"/contacts/{cid}/infotags/{self.rng.choice(TAGS)}", {})
            case "sync_on" | "sync_off":
                enabled = kind == "sync_on"
                request = ("PUT", f"/contacts/{cid}/outlook-sync/me", {"json": {
                    "enabled": enabled}})  # fmt: skip
            case "job":
                company = str(uuid.uuid4())
                request = ("POST", f"/contacts/{cid}/job-changes", {"json": {
                    "company_id": company, "company_name": f"Next {company[:4]}",
                    "job_title": "Head of Chaos", "work_email": f"j{tag}@next.example",
                }})  # fmt: skip
            case "archive":
                request = ("POST", f"/contacts/{cid}/archive", {"json": {"reason": "chaos"}})
            case "restore":
                request = ("POST", f"/contacts/{cid}/restore", {})
            case "photo":
                color = self.rng.choice(["red", "green", "blue", "black"])
                size = (4 + self.rng.randrange(8), 3 + self.rng.randrange(8))
                request = ("PUT", f"/contacts/{cid}/photo", {
                    "content": image_bytes("PNG", size, color),
                    "headers": {"Content-Type": "image/png"},
                })  # fmt: skip
        method, path, kwargs = request
        with self.tally.lock:
            self.tally.sent += 1
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            with self.tally.lock:
                self.tally.transport_errors[type(exc).__name__] += 1
            return
        self.tally.record("command", f"{kind} {method} {path}", response)
        if 200 <= response.status_code < 300:
            body = response.json()
            with self.pool_lock:
                if kind == "create":
                    self.pool.append(str(body["contact_id"]))
                elif kind == "job":
                    # The old version is former now: later commands go to the new one.
                    if cid in self.pool:
                        self.pool.remove(cid)
                    self.pool.append(str(body["contact_id"]))


class QueryLoad(threading.Thread):
    """Readers on the query API and the contacts API's reads, to see their statuses too."""

    def __init__(
        self, settings: KontaktSettings, tally: Tally, pool: list[str], stop: threading.Event
    ) -> None:
        super().__init__(name="query-load", daemon=True)
        self.tally = tally
        self.pool = pool
        self.stop = stop
        auth = {"Authorization": f"Bearer {mint_token(settings, 'reader', ttl_seconds=10800)}"}
        self.query = httpx.Client(
            base_url=f"http://127.0.0.1:{settings.query_port}", headers=auth, timeout=15
        )
        self.command = httpx.Client(
            base_url=f"http://127.0.0.1:{settings.api_port}", headers=auth, timeout=15
        )
        self.rng = random.Random(7)

    def run(self) -> None:
        """Ask a few questions a second until told to stop."""
        try:
            while not self.stop.wait(0.3):
                cid = self.rng.choice(self.pool) if self.pool else str(uuid.uuid4())
                asks = [
                    ("query", self.query, f"/contacts/{cid}"),
                    ("query", self.query, "/contacts?name=f&limit=5"),
                    ("read", self.command, f"/contacts/{cid}"),
                ]
                for api, client, path in asks:
                    try:
                        response = client.get(path)
                    except httpx.HTTPError as exc:
                        with self.tally.lock:
                            self.tally.transport_errors[type(exc).__name__] += 1
                        continue
                    with self.tally.lock:
                        self.tally.queries += 1
                    self.tally.record(api, f"GET {path}", response)
        finally:
            self.query.close()
            self.command.close()


# ---------------------------------------------------------------------------- poison


@dataclass(frozen=True)
class PoisonMessage:
    """One message no consumer can apply, and the marker that finds it again."""

    topic: str
    kind: str
    marker: str
    value: bytes


def _now() -> str:
    return datetime.now(UTC).isoformat()


def poison_for(settings: KontaktSettings, topic: str, rng: random.Random) -> list[PoisonMessage]:
    """Three poison messages for a topic: not JSON, JSON of no known shape, a known shape
    with values PostgreSQL (or, for item events, the contract) refuses."""
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)]
    not_json = f"\xff\x00 chaos poison {ids[0]} {{not json".encode("latin-1")
    unknown = json.dumps({"chaos": ids[1], "shape": "unknown", "values": [1, 2]}).encode()
    nul = f"chaos\x00{ids[2][:8]}"
    refused: dict[str, Any]
    if topic == settings.contacts_topic:
        # A version beyond int32 and a position beyond int64: PostgreSQL refuses both
        # (the NUL in a name is cleaned by consumers, not refused).
        refused = {
            "event_id": ids[2], "type": "ContactCreated", "schema_version": 1,
            "occurred_at": _now(), "actor": "chaos", "correlation_id": ids[2],
            "contact_id": str(uuid.uuid4()), "person_id": str(uuid.uuid4()),
            "aggregate_version": 2**31 + 7, "global_position": 2**63 + 7,
            "data": {
                "company_id": str(uuid.uuid4()), "company_name": "Poison A/S",
                "first_names": nul, "last_names": "Poison", "job_title": None,
                "department": None, "work_email": None, "private_email": None,
                "work_phone": None, "private_phone": None, "started_on": None,
                "predecessor_id": None, "infotags": [], "outlook_sync_users": [],
                "photo": None,
            },
        }  # fmt: skip
    elif topic == settings.activities_topic:
        # A message id of 998 characters, 4 bytes each and incompressible: its primary-key
        # entry is beyond what a PostgreSQL index row may hold (2,704 bytes).
        wide = "".join(chr(rng.randrange(0x20000, 0x2A6DF)) for _ in range(990))
        refused = {
            "event_id": ids[2], "type": "EmailLogged", "occurred_at": _now(),
            "message_id": f"<{wide}@chaos>", "from": "poison@chaos.example",
            "to": [], "cc": [], "subject": nul, "sent_at": _now(),
        }  # fmt: skip
    elif topic == settings.sync_events_topic:
        # A sequence beyond int64 cannot be stored; a NUL in the reason neither.
        refused = {
            "event_id": ids[2], "type": "OutlookSyncStatusChanged", "schema_version": 1,
            "occurred_at": _now(), "user_id": nul, "person_id": str(uuid.uuid4()),
            "contact_id": str(uuid.uuid4()), "status": "failed", "reason": nul,
            "sequence": 2**63 + 7,
        }  # fmt: skip
    else:
        # Item events hold nothing PostgreSQL refuses once cleaned: a known type whose
        # values the contract refuses (an id that is no UUID, a title over its limit).
        refused = {
            "event_id": ids[2], "type": "Created", "occurred_at": _now(),
            "item_id": f"chaos-{ids[2]}", "title": nul * 100, "status": nul,
        }  # fmt: skip
    return [
        PoisonMessage(topic, "not-json", ids[0], not_json),
        PoisonMessage(topic, "unknown-shape", ids[1], unknown),
        PoisonMessage(topic, "refused-values", ids[2], json.dumps(refused).encode()),
    ]


def consumed_topics(settings: KontaktSettings) -> list[str]:
    """Every topic a Kontakt consumer reads."""
    return [*settings.all_topics(), settings.sync_events_topic]


async def publish_poison(bootstrap: str, messages: list[PoisonMessage]) -> None:
    """Publish poison messages (keyed at random, as a careless producer would)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(m.topic, m.value, key=uuid.uuid4().bytes)
    finally:
        await producer.stop()


# ---------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """One fault at an instant after the load started."""

    at: float
    kind: str
    target: str = ""


def fault_plan(rng: random.Random, span: float, kills_per_worker: int) -> list[Fault]:
    """Random instants for every fault: kills of each worker, one Kafka and one PostgreSQL
    restart (apart, so each outage is seen alone), three rounds of poison."""
    plan = [
        Fault(rng.uniform(0.05, 0.95) * span, "kill", name)
        for name in WORKERS
        for _ in range(kills_per_worker)
    ]
    first = rng.uniform(0.15, 0.35) * span
    second = rng.uniform(0.55, 0.75) * span
    outages = ["kafka", "postgres"]
    rng.shuffle(outages)
    plan += [Fault(first, "restart", outages[0]), Fault(second, "restart", outages[1])]
    plan += [Fault(rng.uniform(0.05, 0.9) * span, "poison", str(n)) for n in range(3)]
    return sorted(plan, key=lambda f: f.at)


@dataclass
class Outages:
    """What the fault thread did, for the report."""

    restarts: Counter[str] = field(default_factory=Counter)
    poison: list[PoisonMessage] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def poison_rounds(settings: KontaktSettings, rng: random.Random) -> list[list[PoisonMessage]]:
    """Every poison message for every consumed topic, shuffled into three rounds."""
    poison = [m for t in consumed_topics(settings) for m in poison_for(settings, t, rng)]
    rng.shuffle(poison)
    return [poison[i::3] for i in range(3)]


def run_faults(
    plan: list[Fault],
    fleet: Fleet,
    cfg: launcher.StackConfig,
    settings: KontaktSettings,
    rng: random.Random,
    out: Outages,
    rounds: list[list[PoisonMessage]],
) -> None:
    """Carry the plan out, in order, each fault at its instant (or as soon as the last ends)."""
    start = time.monotonic()
    for fault in plan:
        delay = start + fault.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.monotonic() - start
        try:
            if fault.kind == "kill":
                fleet.kill_and_restart(fault.target, pause=rng.uniform(0.2, 2.0))
            elif fault.kind == "restart" and fault.target == "kafka":
                launcher.stop_kafka(cfg)
                time.sleep(rng.uniform(3, 6))
                launcher.start_kafka(cfg)
                out.restarts["kafka"] += 1
            elif fault.kind == "restart":
                launcher.stop_postgres(cfg)
                time.sleep(rng.uniform(3, 6))
                launcher.start_postgres(cfg)
                out.restarts["postgres"] += 1
            elif fault.kind == "poison":
                batch = rounds[int(fault.target)]
                asyncio.run(publish_poison(settings.kafka_bootstrap, batch))
                out.poison += batch
        except Exception as exc:  # a failed fault is reported with the others, not raised
            out.errors.append(f"{fault.kind} {fault.target} at {t:.1f}s: {exc!r}")
        out.done.append(f"{t:6.1f}s-{time.monotonic() - start:5.1f}s {fault.kind} {fault.target}")
