"""B3 freshness: time from a command's acceptance (the 200 of PATCH /contacts/{id}) to the
change being visible through the query API (GET /contacts/{id}/infotags?min_version=V
answering 200), open loop (commands are sent on a schedule, not when the previous one
returned). The pipeline runs as the real processes: contacts API, relay, projection worker
(contacts), query API.

Two bars, one pipeline:

- (b) freshness at a steady 50 commands/s, p50/p99, with each hop timed (the event made in
  the API, accepted, sent by the relay, on the bus, committed in the read model, visible);
- (a) the rate curve: steady rates stepped up (25, 50, 100, ... 1,200 commands/s), each step
  with its offered and achieved rate, p50/p99 (and of each half, to see a backlog grow),
  errors and each process's CPU; stepping stops after the first step that fails. The
  highest step held (p99 <= 100 ms, no errors, the rate achieved, no growth) is the figure.

Baseline: the eventsourcing library's in-process projection runner (ProjectionRunner with a
PostgreSQL tracking view) on the same database: save() returned -> the view's transaction
(row and tracking) committed, at 50 saves/s.

Also measures, for B6, the resident memory of the relay, the projection worker and the query
API, idle and under load (at RATE, B3W's load).

    python -m bench.b3_freshness [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner

from bench.common import (
    MB,
    Figure,
    Proc,
    Report,
    Sampler,
    isolated,
    percentile,
    processes,
    progress,
    run_alone,
    spawn,
)
from bench.loadgen import EXCHANGE_ERRORS, Pool
from bench.seed import contact_events
from devstack.config import Paths, StackConfig
from services.contacts.store import build_contacts_app, close_contacts_app
from services.projections.sql import contacts as contacts_sql
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, free_port

# ------------------------------------------------------------------ baseline


class Counter(Aggregate):
    """A plain library aggregate, changed once per command."""

    @event("Created")
    def __init__(self) -> None:
        self.title = ""

    @event("Changed")
    def change(self, title: str) -> None:
        self.title = title


class FreshnessApp(Application[uuid.UUID]):
    """The library's own application."""

    name = "BenchFresh"


#: Commit times of the view's transactions, by notification id (same clock as the saver).
VISIBLE: dict[int, float] = {}
_visible_lock = threading.Condition()


class TitlesView(PostgresTrackingRecorder):
    """A materialised view: each aggregate's version, upserted with its tracking record."""

    def create_table(self) -> None:
        """The view's table beside the tracking table."""
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "CREATE TABLE IF NOT EXISTS bench_titles"
                " (id uuid PRIMARY KEY, version bigint NOT NULL, title text NOT NULL)"
            )

    def upsert(self, aggregate_id: uuid.UUID, version: int, title: str, tracking: Tracking) -> None:
        """Change the row and record the tracking in one transaction."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO bench_titles (id, version, title) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
                " title = excluded.title",
                (aggregate_id, version, title),
            )
            self._insert_tracking(curs, tracking)
        with _visible_lock:
            VISIBLE[tracking.notification_id] = time.perf_counter()
            _visible_lock.notify_all()


class TitlesProjection(Projection[TitlesView]):
    """Projects Counter events into the view."""

    name = "BenchTitles"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Upsert the aggregate's version."""
        self.view.upsert(
            domain_event.originator_id,
            domain_event.originator_version,
            getattr(domain_event, "title", ""),
            tracking,
        )


def library_runner(settings: KontaktSettings, seconds: float, rate: float) -> list[float]:
    """Save at `rate`/s; latencies from save() returning to the view's commit."""
    env = settings.eventsourcing_env()
    saver = FreshnessApp(env)
    aggregates = [Counter() for _ in range(200)]
    saver.save(*aggregates)
    VISIBLE.clear()
    latencies: list[float] = []
    with ProjectionRunner(
        application_class=FreshnessApp,
        projection_class=TitlesProjection,
        view_class=TitlesView,
        env=env,
    ) as runner:
        runner.wait(saver.recorder.max_notification_id(), timeout=30)
        saved: list[tuple[int, float]] = []
        started = time.perf_counter()
        total = int(seconds * rate)
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            agg = aggregates[i % len(aggregates)]
            agg.change(f"t{i}")
            recordings = saver.save(agg)
            saved.append((recordings[-1].notification.id, time.perf_counter()))
        runner.wait(saved[-1][0], timeout=30)
        with _visible_lock:
            for nid, at in saved:
                if nid in VISIBLE:
                    latencies.append(VISIBLE[nid] - at)
    saver.close()
    return latencies


# ------------------------------------------------------------------ Kontakt


@dataclass
class Command:
    """One command's way through the pipeline, in wall-clock seconds."""

    contact_id: uuid.UUID
    version: int
    sent: float
    accepted: float
    visible: float

    @property
    def latency(self) -> float:
        """Acceptance -> visible through the query API."""
        return self.visible - self.accepted


@dataclass
class Load:
    """What one steady rate did."""

    rate: float
    seconds: float
    started: float
    commands: list[Command] = field(default_factory=list)
    sent: int = 0
    failures: int = 0
    #: Share of one core each process used over the load (name -> 0..n).
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def latencies(self) -> list[float]:
        """Acceptance -> visible, in seconds, in the order the commands were sent."""
        return [c.latency for c in sorted(self.commands, key=lambda c: c.sent)]

    @property
    def achieved(self) -> float:
        """Commands accepted per second, from the first send to the last acceptance."""
        if not self.commands:
            return 0.0
        last = max(c.accepted for c in self.commands)
        return len(self.commands) / max(last - self.started, self.seconds)

    def halves(self) -> tuple[list[float], list[float]]:
        """The latencies of the first and the second half of the commands sent."""
        ordered = self.latencies
        return ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :]

    def verdict(self) -> str:
        """'' when the pipeline held this rate, else why not."""
        first, second = self.halves()
        p99 = percentile(self.latencies, 99) * 1000
        if self.failures:
            return f"{self.failures} errors"
        if self.achieved < 0.95 * self.rate:
            return f"accepted only {self.achieved:.0f}/s"
        if p99 > HELD_P99_MS:
            return f"p99 {p99:.0f} ms > {HELD_P99_MS:.0f} ms"
        p50_first, p50_second = percentile(first, 50) * 1000, percentile(second, 50) * 1000
        if p50_second > 2 * p50_first + 5:
            return f"backlog growing (p50 {p50_first:.1f} -> {p50_second:.1f} ms)"
        return ""


#: B3W's load (and B6's memory under load), commands/s.
RATE = 200.0
#: The steady low rate of bar (b): far below saturation, so the pipeline's own latency.
LOW_RATE = 50.0
#: The rates of the curve (bar (a)), commands/s; stepping stops after the first one failed.
STEPS = (25, 50, 100, 150, 200, 300, 400, 600, 800, 1200)
#: A step is held when freshness p99 is at most this (and nothing else failed).
HELD_P99_MS = 100.0


async def drive_load(
    api: str,
    query: str,
    token: str,
    contact_ids: list[uuid.UUID],
    seconds: float,
    rate: float,
) -> Load:
    """PATCH at `rate`/s for `seconds`, each command watched until visible via the query API."""
    headers = {"Authorization": f"Bearer {token}"}
    load = Load(rate, seconds, time.time())
    # The lean load generator: httpx cost more CPU per request than the API under test.
    cmd = Pool(api, 128, headers)
    qry = Pool(query, 128, headers)
    try:
        locks = {cid: asyncio.Lock() for cid in contact_ids}

        async def one(i: int) -> None:
            cid = contact_ids[i % len(contact_ids)]
            async with locks[cid]:  # one command at a time per contact (as people edit)
                sent = time.time()
                try:
                    r = await cmd.request("PATCH", f"/contacts/{cid}", {"job_title": f"Title {i}"})
                except EXCHANGE_ERRORS:
                    load.failures += 1
                    return
                accepted = time.time()
                if r.status != 200:
                    load.failures += 1
                    return
                version = r.json()["version"]
            while True:
                try:
                    q = await qry.request("GET", f"/contacts/{cid}/infotags?min_version={version}")
                except EXCHANGE_ERRORS:
                    load.failures += 1
                    return
                if q.status == 200:
                    load.commands.append(Command(cid, version, sent, accepted, time.time()))
                    return
                if q.status != 412:
                    load.failures += 1
                    return

        total = int(seconds * rate)
        tasks = []
        started = time.perf_counter()
        load.started = time.time()
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    finally:
        await cmd.close()
        await qry.close()
    load.sent = total
    if load.failures:
        progress(f"{load.failures} commands failed or were never visible")
    return load


async def drive(
    api: str,
    query: str,
    token: str,
    contact_ids: list[uuid.UUID],
    seconds: float,
    rate: float = RATE,
) -> tuple[list[float], int, float]:
    """PATCH at `rate`/s; (acceptance -> visible latencies, commands, achieved rate)."""
    load = await drive_load(api, query, token, contact_ids, seconds, rate)
    return load.latencies, load.sent, load.achieved


class Tracer:
    """Times the hops between acceptance and visibility, from outside the processes: the
    relay's send (the Kafka message's timestamp, set when the relay hands it to its
    producer), the message's arrival on the bus (a consumer of the benchmark's own) and the
    read model's commit (the projection worker's NOTIFY, delivered at its commit)."""

    def __init__(self, settings: KontaktSettings) -> None:
        self.settings = settings
        #: (contact, version) -> (event made in the API, sent by the relay, on the bus).
        self.messages: dict[tuple[uuid.UUID, int], tuple[float, float, float]] = {}
        #: (contact, version) -> read-model commit seen.
        self.committed: dict[tuple[uuid.UUID, int], float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Tracer]:
        """Watch the bus and the read model's commits while inside."""
        topic = self.settings.contacts_topic
        source = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            fetch_min_bytes=1,
        )
        await source.start()
        conn = await asyncpg.connect(self.settings.pg_dsn())
        try:
            tps = [TopicPartition(topic, p) for p in await topic_partitions_of(self.settings)]
            source.assign(tps)
            await source.seek_to_end(*tps)
            for tp in tps:
                await source.position(tp)  # resolved now, before the first command
            await conn.add_listener(contacts_sql.CHANNEL, self._committed)
            task = asyncio.create_task(self._consume(source))
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await conn.close()
            await source.stop()

    def _committed(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        contact, _, version = payload.partition(":")
        self.committed.setdefault((uuid.UUID(contact), int(version)), time.time())

    async def _consume(self, source: AIOKafkaConsumer) -> None:
        while True:
            batch = await source.getmany(timeout_ms=1000)
            now = time.time()
            for records in batch.values():
                for r in records:
                    event = json.loads(r.value or b"{}")
                    made = datetime.fromisoformat(event["occurred_at"]).timestamp()
                    key = (uuid.UUID(event["contact_id"]), int(event["aggregate_version"]))
                    self.messages[key] = (made, r.timestamp / 1000, now)

    def hops(self, commands: Sequence[Command]) -> dict[str, list[float]]:
        """Each hop's durations (seconds) over the commands seen at every hop."""
        out: dict[str, list[float]] = {name: [] for name in HOPS}
        for c in commands:
            key = (c.contact_id, c.version)
            if key not in self.messages or key not in self.committed:
                continue
            made, relayed, bus = self.messages[key]
            committed = self.committed[key]
            for name, value in zip(
                HOPS,
                (
                    c.accepted - made,
                    relayed - made,
                    bus - relayed,
                    committed - bus,
                    c.visible - committed,
                    c.latency,
                ),
                strict=True,
            ):
                out[name].append(value)
        return out


#: The hops the tracer times, in the pipeline's order (the last is the whole).
HOPS = (
    "API: event made -> command accepted",
    "relay: event made -> sent (store commit, wake-up, read, encode)",
    "bus: sent -> consumable (producer linger, broker, a consumer's fetch)",
    "worker: consumable -> read model committed (its fetch, apply, commit)",
    "query API: committed -> visible (NOTIFY wake-up, answer)",
    "accepted -> visible (the figure)",
)


async def topic_partitions_of(settings: KontaktSettings) -> list[int]:
    """The contacts topic's partitions (the relay has made it by now)."""
    from shared.kafka import topic_partitions

    return await topic_partitions(settings.kafka_bootstrap, settings.contacts_topic)


async def wait_visible(query: str, token: str, contact_ids: list[uuid.UUID]) -> None:
    """Wait until the read model has every seeded contact."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=query, headers=headers, timeout=30) as qry:
        for cid in contact_ids:
            for _ in range(100):
                q = await qry.get(f"/contacts/{cid}/infotags", params={"min_version": 1})
                if q.status_code == 200:
                    break
            else:
                raise RuntimeError(f"contact {cid} never reached the read model")


def seed_contacts(settings: KontaktSettings, count: int) -> list[uuid.UUID]:
    """Store `count` new contacts (one event each) through the contacts app; their ids."""
    contacts = build_contacts_app(settings)
    try:
        seeded = [contact_events(contacts, n, edits=0) for n in range(count)]
        contacts.save(*seeded)
    finally:
        close_contacts_app(contacts)
    return [c.id for c in seeded]


def start_pipeline(settings: KontaktSettings, procs: list[Proc], **knobs: str) -> tuple[str, str]:
    """Contacts API, relay, projection worker (contacts), query API; (api url, query url).

    `knobs`: KONTAKT_* settings over the defaults (a variant to compare)."""
    api_port, query_port = free_port(), free_port()
    env = env_of(settings, None, **{"KONTAKT_RELAY_POLL_SECONDS": "1.0", **knobs})
    api = spawn("contacts-api", ["serve", "contacts", "--port", str(api_port)], env)
    procs.append(api)
    procs.append(spawn("relay", ["relay"], env))
    procs.append(spawn("projection-worker", ["projections", "worker", "--models", "contacts"], env))
    query = spawn("query-api", ["projections", "query", "--port", str(query_port)], env)
    procs.append(query)
    api_url, query_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{query_port}"
    api.wait_ready(f"{api_url}/health/ready")
    query.wait_ready(f"{query_url}/health/ready")
    return api_url, query_url


# ------------------------------------------------------------------ CPU


def server_pids() -> dict[str, list[int]]:
    """PostgreSQL's processes (the postmaster and its children) and Kafka's JVM, of the
    stack the benchmarks use (empty when its pid files are not ours to read)."""
    paths = Paths.of(StackConfig.from_env())
    found: dict[str, list[int]] = {}
    for name, pid_file in (("postgresql", paths.pg_pid), ("kafka", paths.kafka_pid)):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        found[name] = [pid, *children_of(pid)] if name == "postgresql" else [pid]
    return found


def children_of(parent: int) -> list[int]:
    """The direct children of a process."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                kids.append(int(stat.parent.name))
    return kids


def cpu_of(pids: Sequence[int]) -> float:
    """CPU seconds (user and system) the processes have used so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class CpuMeter:
    """Each process's share of one core between start() and stop()."""

    def __init__(self, procs: Sequence[Proc]) -> None:
        self.groups: dict[str, list[int]] = {p.name: [p.pid] for p in procs}
        self.groups.update(server_pids())
        self.groups["load generator"] = [os.getpid()]
        self._before: dict[str, float] = {}
        self._at = 0.0

    def start(self) -> None:
        """Take the first reading."""
        self._before = {name: cpu_of(pids) for name, pids in self.groups.items()}
        self._at = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Shares of a core since start(), by process."""
        wall = time.perf_counter() - self._at
        return {
            name: (cpu_of(pids) - self._before[name]) / wall for name, pids in self.groups.items()
        }


# ------------------------------------------------------------------ the run


async def curve(
    api: str, query: str, token: str, ids: list[uuid.UUID], meter: CpuMeter, seconds: float
) -> list[Load]:
    """Step the rate up until the first step that fails; every step's Load."""
    loads = []
    for rate in STEPS:
        meter.start()
        load = await drive_load(api, query, token, ids, seconds, float(rate))
        load.cpu = meter.stop()
        loads.append(load)
        why = load.verdict()
        progress(f"{rate}/s: {describe(load)}" + (f" -- not held: {why}" if why else ""))
        if why:
            break
        await asyncio.sleep(1.0)  # the pipeline idles between steps
    return loads


def describe(load: Load) -> str:
    """One step for people: rate achieved, p50/p99 overall and by half, the busiest."""
    lat = load.latencies
    first, second = load.halves()
    busiest = sorted(load.cpu.items(), key=lambda kv: -kv[1])
    return (
        f"achieved {load.achieved:.0f}/s, p50 {percentile(lat, 50) * 1000:.1f} ms,"
        f" p99 {percentile(lat, 99) * 1000:.1f} ms (halves p50"
        f" {percentile(first, 50) * 1000:.1f}/{percentile(second, 50) * 1000:.1f},"
        f" p99 {percentile(first, 99) * 1000:.1f}/{percentile(second, 99) * 1000:.1f} ms),"
        f" {load.failures} errors; CPU "
        + ", ".join(f"{name} {share:.0%}" for name, share in busiest)
    )


async def low_rate(
    settings: KontaktSettings,
    api: str,
    query: str,
    token: str,
    ids: list[uuid.UUID],
    seconds: float,
) -> tuple[Load, dict[str, list[float]]]:
    """Bar (b): LOW_RATE commands/s with every hop timed."""
    # Warm up first, untimed, long enough to edit every contact once: the first load after
    # the pipeline starts was many times slower than the same load repeated (first keys,
    # first rows, first connections).
    await drive_load(api, query, token, ids, len(ids) / LOW_RATE, LOW_RATE)
    tracer = Tracer(settings)
    async with tracer.watching():
        load = await drive_load(api, query, token, ids, seconds, LOW_RATE)
        await asyncio.sleep(0.5)  # the last commits' notifications
    return load, tracer.hops(load.commands)


def run(report: Report, quick: bool = False) -> None:
    """Run B3 (and B6's pipeline memory)."""
    low_seconds, step_seconds = (8.0, 4.0) if quick else (20.0, 10.0)
    with isolated("b3") as settings:
        progress(f"baseline: library projection runner at {LOW_RATE:.0f} saves/s")
        base = library_runner(settings, low_seconds, LOW_RATE)
        ids = seed_contacts(settings, 400)
        token = mint_token(settings, "bench")
        with processes() as procs:
            api_url, query_url = start_pipeline(settings, procs)
            asyncio.run(wait_visible(query_url, token, ids))
            time.sleep(2.0)
            idle = {p.name: p.rss() for p in procs}
            progress(f"Kontakt at {LOW_RATE:.0f}/s for {low_seconds:.0f}s, each hop timed")
            low, hops = asyncio.run(low_rate(settings, api_url, query_url, token, ids, low_seconds))
            progress(f"the curve: {step_seconds:.0f}s per step, {', '.join(map(str, STEPS))}/s")
            meter = CpuMeter(procs)
            with Sampler(procs):
                loads = asyncio.run(curve(api_url, query_url, token, ids, meter, step_seconds))
                peak = {p.name: max(p.rss_samples, default=p.rss()) for p in procs}
    add_low_rate(report, low, hops, base)
    add_curve(report, loads)
    for name in ("relay", "projection-worker", "query-api"):
        for label, values in (("idle", idle), ("under B3 load", peak)):
            report.add(
                Figure(
                    "B6",
                    f"{name} resident memory, {label}",
                    values[name] / MB,
                    "MB",
                    better="lower",
                    target="≤ 150 MB",
                    met=values[name] / MB <= 150,
                )
            )


def add_low_rate(
    report: Report, low: Load, hops: dict[str, list[float]], base: list[float]
) -> None:
    """Bar (b)'s figures and the hops behind them."""
    lat = low.latencies
    note = f"{len(lat):,} of {low.sent:,} commands seen; accepted at {low.achieved:.0f}/s"
    for p, bar, aim in ((50, 10.0, 5.0), (99, 30.0, 15.0)):
        value = percentile(lat, p) * 1000
        report.add(
            Figure(
                "B3",
                f"freshness p{p} at {LOW_RATE:.0f} commands/s",
                value,
                "ms",
                percentile(base, p) * 1000,
                "library projection runner, save -> view",
                better="lower",
                target=f"≤ {bar:.0f} ms (aim ≤ {aim:.0f} ms)",
                met=value <= bar,
                note=note if p == 50 else f"{low.failures} errors",
            )
        )
    for name, values in hops.items():
        report.add(
            Figure(
                "B3",
                f"hop at {LOW_RATE:.0f}/s, p50: {name}",
                percentile(values, 50) * 1000,
                "ms",
                better="lower",
                note=f"p99 {percentile(values, 99) * 1000:.1f} ms over {len(values):,} commands",
            )
        )


def add_curve(report: Report, loads: list[Load]) -> None:
    """Bar (a)'s curve, step by step, and the highest rate held."""
    held = 0.0
    for load in loads:
        why = load.verdict()
        if not why:
            held = max(held, load.rate)
        report.add(
            Figure(
                "B3",
                f"curve at {load.rate:.0f}/s offered: p99",
                percentile(load.latencies, 99) * 1000,
                "ms",
                better="lower",
                target=f"≤ {HELD_P99_MS:.0f} ms",
                met=not why,
                note=describe(load) + (f"; not held: {why}" if why else ""),
            )
        )
    report.add(
        Figure(
            "B3",
            f"highest steady rate held (freshness p99 ≤ {HELD_P99_MS:.0f} ms)",
            held,
            "cmd/s",
            target="≥ 600/s (aim ≥ 1,200/s)",
            met=held >= 600,
            note=f"steps {', '.join(f'{load.rate:.0f}' for load in loads)}/s",
        )
    )


def main() -> None:
    """Run B3 alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
