"""B3 freshness: time from a command's acceptance (the 200 of PATCH /contacts/{id}) to the
change being visible through the query API (GET /contacts/{id}/infotags?min_version=V
answering 200), p50/p99, at a steady 200 commands/s (open loop: commands are sent on a
schedule, not when the previous one returned). The pipeline runs as the real processes:
contacts API, relay, projection worker (contacts), query API.

Baseline: the eventsourcing library's in-process projection runner (ProjectionRunner with a
PostgreSQL tracking view) on the same database: save() returned -> the view's transaction
(row and tracking) committed, at the same steady rate.

Also measures, for B6, the resident memory of the relay, the projection worker and the query
API, idle and under this load.

    python -m bench.b3_freshness [--quick]
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from functools import singledispatchmethod
from typing import Any

import httpx
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
from bench.seed import contact_events
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, free_port

RATE = 200.0


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


def library_runner(settings: KontaktSettings, seconds: float) -> list[float]:
    """Save at RATE/s; latencies from save() returning to the view's commit."""
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
        total = int(seconds * RATE)
        for i in range(total):
            due = started + i / RATE
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


async def drive(
    api: str, query: str, token: str, contact_ids: list[uuid.UUID], seconds: float
) -> tuple[list[float], int, float]:
    """PATCH at RATE/s; (acceptance -> visible latencies, commands, achieved rate)."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    latencies: list[float] = []
    failures = 0
    async with (
        httpx.AsyncClient(base_url=api, headers=headers, limits=limits, timeout=60) as cmd,
        httpx.AsyncClient(base_url=query, headers=headers, limits=limits, timeout=60) as qry,
    ):
        locks = {cid: asyncio.Lock() for cid in contact_ids}

        async def one(i: int) -> None:
            nonlocal failures
            cid = contact_ids[i % len(contact_ids)]
            async with locks[cid]:  # one command at a time per contact (as people edit)
                r = await cmd.patch(f"/contacts/{cid}", json={"job_title": f"Title {i}"})
                accepted = time.perf_counter()
                if r.status_code != 200:
                    failures += 1
                    return
                version = r.json()["version"]
            while True:
                q = await qry.get(f"/contacts/{cid}/infotags", params={"min_version": version})
                if q.status_code == 200:
                    latencies.append(time.perf_counter() - accepted)
                    return
                if q.status_code != 412:
                    failures += 1
                    return

        total = int(seconds * RATE)
        tasks = []
        started = time.perf_counter()
        for i in range(total):
            delay = started + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        sent_seconds = time.perf_counter() - started
        await asyncio.gather(*tasks)
    if failures:
        progress(f"{failures} commands failed or were never visible")
    return latencies, total, total / sent_seconds


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


def start_pipeline(settings: KontaktSettings, procs: list[Proc]) -> tuple[str, str]:
    """Contacts API, relay, projection worker (contacts), query API; (api url, query url)."""
    api_port, query_port = free_port(), free_port()
    env = env_of(settings, KONTAKT_RELAY_POLL_SECONDS="1.0")
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


def run(report: Report, quick: bool = False) -> None:
    """Run B3 (and B6's pipeline memory)."""
    seconds = 6.0 if quick else 15.0
    with isolated("b3") as settings:
        progress(f"baseline: library projection runner at {RATE:.0f} saves/s for {seconds:.0f}s")
        base = library_runner(settings, seconds)
        ids = seed_contacts(settings, 400)
        token = mint_token(settings, "bench")
        with processes() as procs:
            api_url, query_url = start_pipeline(settings, procs)
            asyncio.run(wait_visible(query_url, token, ids))
            time.sleep(2.0)
            idle = {p.name: p.rss() for p in procs}
            progress(f"Kontakt: PATCH at {RATE:.0f}/s for {seconds:.0f}s, watched via query API")
            with Sampler(procs):
                latencies, sent, achieved = asyncio.run(
                    drive(api_url, query_url, token, ids, seconds)
                )
                peak = {p.name: max(p.rss_samples, default=p.rss()) for p in procs}
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    b50, b99 = percentile(base, 50) * 1000, percentile(base, 99) * 1000
    note = f"{len(latencies):,} of {sent:,} commands seen; sent at {achieved:.0f}/s"
    report.add(
        Figure(
            "B3",
            "freshness p50",
            p50,
            "ms",
            b50,
            "library projection runner, save -> view",
            better="lower",
            target="≤ 4x",
            met=p50 <= 4 * b50,
            note=note,
        )
    )
    report.add(
        Figure(
            "B3",
            "freshness p99",
            p99,
            "ms",
            b99,
            "library projection runner, save -> view",
            better="lower",
            target="≤ 100 ms",
            met=p99 <= 100,
        )
    )
    for name in ("relay", "projection-worker", "query-api"):
        for label, values in (("idle", idle), ("under B3 load", peak)):
            report.add(
                Figure(
                    "B6",
                    f"{name} resident memory, {label}",
                    values[name] / MB,
                    "MB",
                    better="lower",
                    target="≤ 200 MB",
                    met=values[name] / MB <= 200,
                )
            )


def main() -> None:
    """Run B3 alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
