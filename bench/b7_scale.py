"""B7 scale: how cost grows with the store. A large store (1,000,000 contacts, 10 events
each: 10,000,000 events) and a small one (10,000 contacts) are seeded, each read model is
made by the rebuild (`kontakt projections rebuild contacts`, a process of its own), and in
one run, on each: commands (B1's creates at 8 clients against a contacts API), every query
tab of the query API and its name / e-mail / phone searches (one client, random existing
contacts, small and large requests interleaved), the rebuild, disk per million events and
the resident memory of each process. Each large figure stands beside the small one.

Seeding the large store takes long, so only `--scale` runs it (`python -m bench.run
--scale`, or `--only B7 --scale`); `--scale-contacts N` picks the large size.

    python -m bench.b7_scale [--contacts N]
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field

import httpx
import psycopg

from bench.b1_writes import http_load
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
    spawn,
)
from bench.seed import EDITS_PER_CONTACT, seed_parallel
from services.contacts.domain import Actor
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, free_port

SMALL = 10_000
LARGE = 1_000_000
#: B1's middle load.
CLIENTS = 8
COMMAND_SECONDS = 10.0
#: Requests per query tab (and per search) on each store.
REQUESTS = 200
#: Contacts given a photo before the rebuild (the Photo tab's contacts).
PHOTOS = 50
#: Aims of the issue: the large store within 1.3x of the small one; search p99 at most 50 ms.
WITHIN = 1.3
SEARCH_P99_MS = 50.0
#: The query API's tabs of one contact (path after /contacts/{id}).
TABS = {
    "details": "",
    "infotags": "/infotags",
    "photo": "/photo",
    "photos": "/photos",
    "employments": "/employments",
    "history": "/history",
    "provenance": "/provenance",
    "activities": "/activities",
    "opportunities": "/opportunities",
    "campaigns": "/campaigns",
    "projects": "/projects",
}
SEARCHES = ("name", "last name", "e-mail", "phone")
_REBUILT = re.compile(r"rebuilt contacts: (\d+) events, (\d+) contacts.* in ([0-9.]+)s")
ACTOR = Actor("bench", "scale")


@dataclass
class Contact:
    """A seeded contact, as a search finds it."""

    contact_id: uuid.UUID
    first_names: str
    last_names: str
    work_email: str
    work_phone: str


@dataclass
class Store:
    """One store of the comparison, with what was measured on it."""

    label: str
    contacts: int
    settings: KontaktSettings
    events: int = 0
    seed_seconds: float = 0.0
    rebuild_events: int = 0
    rebuild_seconds: float = 0.0
    rebuild_rss: int = 0
    store_bytes: int = 0
    model_bytes: int = 0
    sample: list[Contact] = field(default_factory=list)
    photo_ids: list[uuid.UUID] = field(default_factory=list)
    api_url: str = ""
    query_url: str = ""
    api_rss: int = 0
    query_rss: int = 0
    commands: list[float] = field(default_factory=list)
    command_errors: int = 0
    #: Latencies in seconds by tab or search name.
    latencies: dict[str, list[float]] = field(default_factory=dict)
    #: The searches again once the read model's tables are analyzed.
    analyzed: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------ making a store


def photo_bytes() -> bytes:
    """A small PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "navy").save(buf, format="PNG")
    return buf.getvalue()


def give_photos(settings: KontaktSettings, count: int) -> list[uuid.UUID]:
    """Give `count` random seeded contacts a photo (the real command); their ids."""
    with psycopg.connect(settings.pg_dsn()) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT originator_id FROM contacts_events TABLESAMPLE SYSTEM (1)"
                " WHERE originator_version = 1 LIMIT %s",
                (count,),
            )
        ]
    app = build_contacts_app(settings)
    try:
        data = photo_bytes()
        for cid in ids:
            app.change_photo(ACTOR, cid, data)
    finally:
        close_contacts_app(app)
    return ids


def rebuild(store: Store) -> None:
    """Make the read model with the rebuild command, in a process of its own."""
    with processes() as procs:
        proc = spawn("rebuild", ["projections", "rebuild", "contacts"], env_of(store.settings))
        procs.append(proc)
        with Sampler([proc], interval=0.5):
            code = proc.popen.wait()
        store.rebuild_rss = max(proc.rss_samples, default=0)
    text = proc.log.read_text(errors="replace")
    found = _REBUILT.search(text)
    if code != 0 or found is None:
        raise RuntimeError(f"the rebuild failed ({code}): {text[-2000:]}")
    store.rebuild_events, store.rebuild_seconds = int(found.group(1)), float(found.group(3))


def measure_disk(store: Store) -> None:
    """Bytes of the store (events with indexes, person keys) and of the read model."""
    with psycopg.connect(store.settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE contacts_events")
        conn.execute("VACUUM ANALYZE person_keys")
        row = conn.execute(
            "SELECT pg_total_relation_size('contacts_events')"
            " + pg_total_relation_size('person_keys')"
        ).fetchone()
        store.store_bytes = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(format('%I.%I', schemaname, tablename)))"
            " FROM pg_tables WHERE schemaname = 'rm'"
        ).fetchone()
        store.model_bytes = int(row[0]) if row and row[0] else 0


def pick_sample(store: Store, count: int) -> None:
    """Random existing contacts of the read model."""
    with psycopg.connect(store.settings.pg_dsn()) as conn:
        rows = conn.execute(
            "SELECT contact_id, first_names, last_names, work_email, work_phone"
            " FROM rm.contacts ORDER BY random() LIMIT %s",
            (count,),
        ).fetchall()
    store.sample = [Contact(*r) for r in rows]


def seed_store(store: Store) -> None:
    """Seed the store and give some of its contacts a photo."""
    events = store.contacts * (1 + EDITS_PER_CONTACT)
    progress(f"{store.label}: seeding {events:,} events ({store.contacts:,} contacts)")
    store.events, store.seed_seconds = seed_parallel(store.settings, events, progress=progress)
    progress(
        f"{store.label}: seeded {store.events:,} events in {store.seed_seconds:.0f}s"
        f" ({store.events / store.seed_seconds:,.0f} events/s); {PHOTOS} photos"
    )
    store.photo_ids = give_photos(store.settings, PHOTOS)


def build_model(store: Store) -> None:
    """Make the read model with the rebuild, measure the disk, pick contacts."""
    progress(f"{store.label}: rebuilding the read model")
    rebuild(store)
    progress(
        f"{store.label}: rebuilt {store.rebuild_events:,} events in {store.rebuild_seconds:.0f}s,"
        f" peak {store.rebuild_rss / MB:,.0f} MB"
    )
    measure_disk(store)
    pick_sample(store, REQUESTS)


def start(store: Store, procs: list[Proc]) -> tuple[Proc, Proc]:
    """A contacts API and a query API (fetching photos from that API) on the store."""
    api_port, query_port = free_port(), free_port()
    store.api_url, store.query_url = (
        f"http://127.0.0.1:{api_port}",
        f"http://127.0.0.1:{query_port}",
    )
    env = env_of(store.settings, KONTAKT_CONTACTS_API_URL=store.api_url)
    api = spawn("contacts-api", ["serve", "contacts", "--port", str(api_port)], env)
    procs.append(api)
    query = spawn("query-api", ["projections", "query", "--port", str(query_port)], env)
    procs.append(query)
    api.wait_ready(f"{store.api_url}/health/ready")
    query.wait_ready(f"{store.query_url}/health/ready")
    return api, query


# ------------------------------------------------------------------ measuring


def search_params(kind: str, c: Contact) -> dict[str, str]:
    """The query of a search of this kind for contact c."""
    return {
        "name": {"name": f"{c.first_names} {c.last_names}"},
        "last name": {"name": c.last_names},
        "e-mail": {"email": c.work_email},
        "phone": {"phone": c.work_phone},
    }[kind]


def requests_of(store: Store, i: int) -> Iterator[tuple[str, str, dict[str, str]]]:
    """The i-th round of requests: (figure name, path, query) for every tab and search."""
    c = store.sample[i % len(store.sample)]
    for tab, path in TABS.items():
        cid = store.photo_ids[i % len(store.photo_ids)] if tab == "photo" else c.contact_id
        yield tab, f"/contacts/{cid}{path}", {}
    for kind in SEARCHES:
        yield f"search: {kind}", "/contacts", search_params(kind, c)


async def query_rounds(
    stores: list[Store], token: str, rounds: int, searches_only: bool = False
) -> None:
    """Every tab and search once per round on each store in turn, one client each
    (searches_only: the searches alone, into `analyzed`)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with AsyncExitStack() as clients:
        http = [
            await clients.enter_async_context(
                httpx.AsyncClient(base_url=s.query_url, headers=headers, timeout=60)
            )
            for s in stores
        ]
        for warm in range(10):  # connections, pools, prepared statements
            for s, client in zip(stores, http, strict=True):
                for _, path, params in requests_of(s, warm):
                    await client.get(path, params=params)
        for i in range(rounds):
            for s, client in zip(stores, http, strict=True):
                into = s.analyzed if searches_only else s.latencies
                for name, path, params in requests_of(s, i):
                    if searches_only and not name.startswith("search"):
                        continue
                    t0 = time.perf_counter()
                    answer = await client.get(path, params=params)
                    took = time.perf_counter() - t0
                    if answer.status_code == 200:
                        into.setdefault(name, []).append(took)
                    else:
                        s.failures[name] = s.failures.get(name, 0) + 1


def commands(stores: list[Store], apis: list[Proc], token: str, seconds: float) -> None:
    """B1's creates at 8 clients, half the time on each store in turn, twice."""
    for _ in range(2):
        for s, api in zip(stores, apis, strict=True):
            with Sampler([api]):
                load = asyncio.run(http_load(s.api_url, token, CLIENTS, seconds / 2))
            s.api_rss = max(s.api_rss, *api.rss_samples, api.rss())
            s.commands += load.latencies
            s.command_errors += load.errors


# ------------------------------------------------------------------ figures


def ms(values: list[float], p: float) -> float:
    """The p-th percentile of latencies in seconds, in ms."""
    return percentile(values, p) * 1000


def add_pair(
    report: Report,
    name: str,
    small: Store,
    large: Store,
    values: tuple[float, float],
    unit: str,
    *,
    better: str = "lower",
    target: str = "",
    met: bool | None = None,
    note: str = "",
) -> None:
    """A large-store figure beside the small store's."""
    report.add(
        Figure(
            "B7",
            f"{name}, {large.contacts:,} contacts",
            values[1],
            unit,
            values[0],
            f"{small.contacts:,} contacts",
            better=better,
            target=target,
            met=met,
            note=note,
        )
    )


def rate(store: Store) -> float:
    """The rebuild's events per second."""
    return store.rebuild_events / store.rebuild_seconds


def within(small: float, large: float) -> bool:
    """The large figure within the aim's factor of the small one."""
    return large <= WITHIN * small


def figures(report: Report, small: Store, large: Store) -> None:
    """Every B7 figure, large beside small."""
    aim = f"≤ {WITHIN}x"
    for p in (50, 99):
        pair = (ms(small.commands, p), ms(large.commands, p))
        add_pair(
            report, f"command p{p} (creates, {CLIENTS} clients)", small, large, pair, "ms",
            target=aim, met=within(*pair),
            note=f"{len(large.commands)} vs {len(small.commands)} commands,"
            f" {large.command_errors + small.command_errors} errors",
        )  # fmt: skip
    for name in [*TABS, *(f"search: {k}" for k in SEARCHES)]:
        s, lg = small.latencies.get(name, []), large.latencies.get(name, [])
        failed = small.failures.get(name, 0) + large.failures.get(name, 0)
        for p in (50, 99):
            pair = (ms(s, p), ms(lg, p))
            if name.startswith("search") and p == 99:
                target, met = f"≤ {SEARCH_P99_MS:.0f} ms", pair[1] <= SEARCH_P99_MS
            elif name.startswith("search"):
                target, met = "", None
            else:
                target, met = aim, within(*pair)
            add_pair(
                report, f"{name} p{p}", small, large, pair, "ms", target=target, met=met,
                note=f"{len(lg)} requests" + (f", {failed} failed" if failed else ""),
            )  # fmt: skip
    for kind in SEARCHES:
        name = f"search: {kind}"
        s, lg = small.analyzed.get(name, []), large.analyzed.get(name, [])
        for p in (50, 99):
            pair = (ms(s, p), ms(lg, p))
            add_pair(
                report, f"{name} p{p}, tables analyzed", small, large, pair, "ms",
                target=f"≤ {SEARCH_P99_MS:.0f} ms" if p == 99 else "",
                met=pair[1] <= SEARCH_P99_MS if p == 99 else None,
                note=f"{len(lg)} requests",
            )  # fmt: skip
    add_pair(
        report, "rebuild", small, large,
        (rate(small), rate(large)),
        "events/s", better="higher",
        note=f"{large.rebuild_events:,} events in {large.rebuild_seconds:,.0f}s"
        f" vs {small.rebuild_events:,} in {small.rebuild_seconds:,.1f}s",
    )  # fmt: skip
    per_million = (
        small.store_bytes * 1e6 / small.events / MB,
        large.store_bytes * 1e6 / large.events / MB,
    )
    add_pair(
        report, "disk per million events (events with indexes, person keys)", small, large,
        per_million, "MB",
        note=f"store {large.store_bytes / MB:,.0f} MB; read model {large.model_bytes / MB:,.0f}"
        f" MB ({large.model_bytes * 1e6 / large.events / MB:,.0f} MB per million events,"
        f" {small.model_bytes * 1e6 / small.events / MB:,.0f} on the small store)",
    )  # fmt: skip
    for name, attr in (
        ("contacts API", "api_rss"),
        ("query API", "query_rss"),
        ("rebuild", "rebuild_rss"),
    ):
        add_pair(
            report, f"{name} resident memory (peak)", small, large,
            (getattr(small, attr) / MB, getattr(large, attr) / MB), "MB",
        )  # fmt: skip
    report.note(
        f"B7 seeding: {large.events:,} events in {large.seed_seconds:,.0f}s"
        f" ({large.events / large.seed_seconds:,.0f} events/s, 2 processes);"
        f" {small.events:,} in {small.seed_seconds:,.1f}s. The rebuild took"
        f" {large.rebuild_seconds:,.0f}s on the large store, {small.rebuild_seconds:,.1f}s"
        " on the small one."
    )


# ------------------------------------------------------------------ run


def run(report: Report, quick: bool = False, contacts: int = LARGE) -> None:
    """Run B7 (not with --quick: the large store is the point)."""
    if quick:
        report.note("B7 left out: it runs only at scale (--scale, without --quick)")
        return
    with ExitStack() as stack:
        small = Store("small", SMALL, stack.enter_context(isolated("b7_small")))
        large = Store("large", contacts, stack.enter_context(isolated("b7_large")))
        stores = [small, large]
        for s in stores:
            seed_store(s)
        for s in stores:
            build_model(s)
        token = mint_token(small.settings, "bench")
        with processes() as procs:
            started = [start(s, procs) for s in stores]
            apis, queries = [a for a, _ in started], [q for _, q in started]
            progress(f"commands: {CLIENTS} clients, {COMMAND_SECONDS:.0f}s on each store")
            commands(stores, apis, token, COMMAND_SECONDS)
            progress(f"queries: every tab and search, {REQUESTS} times on each store")
            with Sampler(queries):
                asyncio.run(query_rounds(stores, token, REQUESTS))
            for s, q in zip(stores, queries, strict=True):
                s.query_rss = max(q.rss_samples, default=q.rss())
            # The rebuild swaps in tables without statistics until autovacuum analyzes
            # them: the searches again on analyzed tables, to tell the two apart.
            for s in stores:
                with psycopg.connect(s.settings.pg_dsn(), autocommit=True) as conn:
                    conn.execute("ANALYZE rm.contacts")
                    conn.execute("ANALYZE rm.contact_addresses")
            progress("searches again, the read model's tables analyzed")
            asyncio.run(query_rounds(stores, token, REQUESTS, searches_only=True))
    figures(report, small, large)


def main() -> None:
    """Run B7 alone."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=LARGE, help="contacts of the large store")
    from bench.run import table

    report = Report()
    run(report, contacts=parser.parse_args().contacts)
    print(table(report))


if __name__ == "__main__":
    main()
