"""B5 sync: Graph calls per contact change, and contacts converged per second, against the
Graph-compatible server. Processes: `kontakt graph-server`, `kontakt serve contacts`,
`kontakt relay`, `kontakt sync worker`; commands go through the contacts application.

Phases (Graph's counters reset before each):
1. link: N contacts switched on (half per user) -> N items created.
2. visible: each synced contact's job title changes -> N items updated (target 1 write each);
   at the same time N contacts nobody syncs change too (target 0 writes). The commands are
   issued while the relay is stopped (in process, one after another, as fast as the store
   takes them); then a relay starts, and the clock runs from the first event it publishes
   to the last item showing the change: the figure is the sync pipeline's, not the rate at
   which this process can issue commands.
3. invisible only: N unsynced contacts change again, the worker catches up -> 0 writes.

Baseline for converged/s: the same N updates sent straight to the Graph-compatible server
(a PATCH of each item with the fields the worker writes, 4 in flight per mailbox as the
worker may), so the figure is the sync pipeline's rate against what the server itself
sustains. Also the sync worker's resident memory idle and under load (B6).

    python -m bench.b5_sync [--quick]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import httpx

from bench.common import (
    MB,
    Figure,
    Proc,
    Report,
    Sampler,
    isolated,
    processes,
    run_alone,
    spawn,
)
from services.contacts.application import ContactsApp
from services.contacts.domain import Actor
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.lag import group_lag
from shared.settings import KontaktSettings
from tests.support import env_of, free_port

ALICE = Actor("alice", "bench")
SECRET = "bench-graph-secret"
GROUP = "bench-sync"


class Graph:
    """The Graph-compatible server's admin endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset."""
        return dict(self.http.get("/_admin/stats").json())

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.http.post("/_admin/stats/reset").raise_for_status()

    def items(self, user: str) -> list[dict[str, Any]]:
        """Everything in a user's mailbox."""
        return list(self.http.get(f"/_admin/users/{user}/contacts").json()["value"])


def wait_until(check: Callable[[], bool], timeout: float = 180, what: str = "") -> float:
    """Poll check() until true; seconds it took."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"no convergence after {timeout}s: {what}")
        time.sleep(0.05)
    return time.perf_counter() - started


def caught_up(settings: KontaktSettings) -> bool:
    """The sync worker's group committed everything on the contacts topic."""
    lags = asyncio.run(group_lag(settings.kafka_bootstrap, GROUP, [settings.contacts_topic]))
    return bool(lags) and all(p.lag == 0 for p in lags)


def relay_position(settings: KontaktSettings) -> int:
    """How far the relay has published the store's notifications (0 before it started)."""
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        row = conn.execute(
            "SELECT position FROM relay_positions WHERE name = %s", (settings.contacts_topic,)
        ).fetchone()
    return 0 if row is None else int(row[0])


def relayed(settings: KontaktSettings, contacts: ContactsApp) -> bool:
    """The relay published everything stored so far."""
    return relay_position(settings) >= (contacts.recorder.max_notification_id() or 0)


def published_past(settings: KontaktSettings, position: int, timeout: float = 60) -> float:
    """Wait until the relay publishes past `position`; the perf_counter() of noticing it."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT position FROM relay_positions WHERE name = %s",
                (settings.contacts_topic,),
            ).fetchone()
            now = time.perf_counter()
            if row is not None and int(row[0]) > position:
                return now
            if now - started > timeout:
                raise RuntimeError(f"the relay published nothing past {position} in {timeout}s")
            time.sleep(0.002)


def start(settings: KontaktSettings, procs: list[Proc]) -> tuple[str, dict[str, str]]:
    """The processes; returns (graph url, env)."""
    graph_port, api_port = free_port(), free_port()
    graph_url = f"http://127.0.0.1:{graph_port}"
    env = env_of(
        settings,
        KONTAKT_SYNC_GRAPH_BASE_URL=f"{graph_url}/v1.0",
        KONTAKT_SYNC_GRAPH_AUTHORITY=graph_url,
        KONTAKT_SYNC_GRAPH_CLIENT_ID="kontakt-bench",
        KONTAKT_SYNC_GRAPH_CLIENT_SECRET=SECRET,
        KONTAKT_SYNC_CONSUMER_GROUP=GROUP,
        KONTAKT_SYNC_POLL_SECONDS="0.1",
        KONTAKT_CONTACTS_API_URL=f"http://127.0.0.1:{api_port}",
        # The bench's users are their own mailboxes on the local server, as in `bin/run`.
        KONTAKT_SYNC_DEV_MAILBOX_FALLBACK="true",
    )
    env.pop("KONTAKT_SYNC_SERVICE_TOKEN", None)
    graph = spawn(
        "graph-server",
        ["graph-server", "--port", str(graph_port), "--client-secret", SECRET],
        env,
    )
    procs.append(graph)
    api = spawn("contacts-api", ["serve", "contacts", "--port", str(api_port)], env)
    procs.append(api)
    procs.append(spawn("relay", ["relay"], env))
    graph.wait_ready(f"{graph_url}/_admin/stats")
    api.wait_ready(f"http://127.0.0.1:{api_port}/health/ready")
    procs.append(spawn("sync-worker", ["sync", "worker"], env))
    return graph_url, env


#: The fields the worker writes on an update (services.sync.domain.render_contact).
WRITTEN = (
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
    "singleValueExtendedProperties",
)


def same_patch(item: dict[str, Any], job_title: str) -> dict[str, Any]:
    """The PATCH the worker sends for a job title change of the item: every field it writes."""
    return {**{k: item.get(k) for k in WRITTEN}, "jobTitle": job_title}


async def direct_updates(graph_url: str, plan: dict[str, list[dict[str, Any]]]) -> float:
    """PATCH every listed item straight to the server, 4 in flight per mailbox; seconds."""
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{graph_url}/common/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "kontakt-bench",
                "client_secret": SECRET,
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

        async def mailbox(user: str, ids: list[dict[str, Any]]) -> None:
            limit = asyncio.Semaphore(4)

            async def patch(item: dict[str, Any]) -> None:
                async with limit:
                    resp = await http.patch(
                        f"{graph_url}/v1.0/users/{user}/contacts/{item['id']}",
                        json=same_patch(item, "Direct"),
                        headers=headers,
                    )
                    resp.raise_for_status()

            await asyncio.gather(*(patch(i) for i in ids))

        started = time.perf_counter()
        await asyncio.gather(*(mailbox(u, ids) for u, ids in plan.items()))
        return time.perf_counter() - started


def new_contact(contacts: ContactsApp, n: int) -> UUID:
    """A contact with a unique name."""
    result = contacts.create_contact(
        ALICE,
        company_id=uuid4(),
        company_name=f"Company {n}",
        details={"first_names": f"Sync{n}", "last_names": f"Bench{uuid4().hex[:6]}"},
    )
    return result.contact_id


def run(report: Report, quick: bool = False) -> None:
    """Run B5 (and B6's sync worker memory)."""
    n = 40 if quick else 200
    users = [f"bob-{uuid4().hex[:6]}", f"eve-{uuid4().hex[:6]}"]
    with isolated("b5") as settings:
        contacts = build_contacts_app(settings)
        try:
            with processes() as procs:
                graph_url, env = start(settings, procs)
                graph = Graph(graph_url)
                for user in users:  # unknown mailboxes are 404 on Graph
                    graph.http.put(f"/_admin/users/{user}").raise_for_status()
                worker = next(p for p in procs if p.name == "sync-worker")
                synced = [new_contact(contacts, i) for i in range(n)]
                unsynced = [new_contact(contacts, n + i) for i in range(n)]
                wait_until(lambda: relayed(settings, contacts), what="relay")
                wait_until(lambda: caught_up(settings), what="worker on creates")
                time.sleep(1.0)
                idle_rss = worker.rss()
                owner = {cid: users[i % 2] for i, cid in enumerate(synced)}

                def count(user: str, field: str = "", value: str = "") -> int:
                    return sum(1 for it in graph.items(user) if not field or it.get(field) == value)

                with Sampler([worker]):
                    # 1. link
                    graph.reset_stats()
                    t0 = time.perf_counter()
                    for cid, user in owner.items():
                        contacts.toggle_outlook_sync(
                            Actor(user, "bench"), cid, user_id=user, enabled=True
                        )
                    wait_until(lambda: all(count(u) == n // 2 for u in users), what="links")
                    link_s = time.perf_counter() - t0
                    wait_until(lambda: caught_up(settings), what="worker on links")
                    link_stats = graph.stats()
                    # 2. visible and invisible changes together, issued while no relay runs
                    time.sleep(1.0)
                    graph.reset_stats()
                    relay = next(p for p in procs if p.name == "relay")
                    relay.stop()
                    procs.remove(relay)
                    before = relay_position(settings)
                    t0 = time.perf_counter()
                    for cid in synced:
                        contacts.change_details(ALICE, cid, {"job_title": "Changed"})
                    for cid in unsynced:
                        contacts.change_details(ALICE, cid, {"job_title": "Changed"})
                    issue_s = time.perf_counter() - t0
                    procs.append(spawn("relay", ["relay"], env))
                    t0 = published_past(settings, before)
                    wait_until(
                        lambda: all(count(u, "jobTitle", "Changed") == n // 2 for u in users),
                        what="updates",
                    )
                    update_s = time.perf_counter() - t0
                    wait_until(lambda: relayed(settings, contacts), what="relay")
                    wait_until(lambda: caught_up(settings), what="worker on updates")
                    time.sleep(1.0)
                    update_stats = graph.stats()
                    # 3. invisible only
                    graph.reset_stats()
                    for cid in unsynced:
                        contacts.change_details(ALICE, cid, {"job_title": "Again"})
                    wait_until(lambda: relayed(settings, contacts), what="relay")
                    wait_until(lambda: caught_up(settings), what="worker on invisible")
                    time.sleep(2.0)
                    invisible_stats = graph.stats()
                    peak_rss = max(worker.rss_samples, default=worker.rss())
                # Baseline: the same updates straight to the server.
                plan = {u: graph.items(u) for u in users}
                direct_s = asyncio.run(direct_updates(graph_url, plan))
        finally:
            close_contacts_app(contacts)
    report.add(
        Figure(
            "B5",
            "Graph writes per visible change",
            update_stats.get("writes", 0) / n,
            "writes",
            1.0,
            "target: exactly 1",
            better="lower",
            target="= 1",
            met=update_stats.get("writes", 0) == n,
            note=f"{n} visible + {n} invisible changes; all Graph calls: "
            f"{update_stats.get('requests', 0) / n:.2f} per visible change",
        )
    )
    report.add(
        Figure(
            "B5",
            "Graph writes for invisible changes",
            float(invisible_stats.get("writes", 0)),
            "writes",
            target="= 0",
            better="lower",
            met=invisible_stats.get("writes", 0) == 0,
            note=f"{n} changes of contacts nobody syncs; Graph calls "
            f"{invisible_stats.get('requests', 0)}",
        )
    )
    report.add(
        Figure(
            "B5",
            "Graph calls per link (switch on -> item created)",
            link_stats.get("requests", 0) / n,
            "calls",
            note=f"writes {link_stats.get('writes', 0) / n:.2f} per link",
            better="lower",
        )
    )
    report.add(
        Figure(
            "B5",
            "contacts converged (updates)",
            n / update_s,
            "contacts/s",
            n / direct_s,
            "same PATCHes straight to the server, 4 per mailbox",
            target="≥ 0.5x",
            met=n / update_s >= 0.5 * n / direct_s,
            note=f"first event published -> last item updated; the {2 * n} commands were "
            f"issued before, at {2 * n / issue_s:.0f}/s; links converged at {n / link_s:.0f}/s "
            "(command -> item in Outlook)",
        )
    )
    for label, value in (("idle", idle_rss), ("under B5 load", peak_rss)):
        report.add(
            Figure(
                "B6",
                f"sync worker resident memory, {label}",
                value / MB,
                "MB",
                better="lower",
                target="≤ 150 MB",
                met=value / MB <= 150,
            )
        )


def main() -> None:
    """Run B5 alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
