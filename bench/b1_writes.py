"""B1 writes: commands per second through the HTTP command API with 1, 8 and 32 concurrent
clients, with p50/p99 latency. Baseline: the eventsourcing library's own save() loop on the
same database. Also measures, for B6, the API's resident memory idle and under this load,
and the cost of per-person encryption (the 32-client run again without it).

    python -m bench.b1_writes [--quick]
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

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
from bench.loadgen import back_to_back
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, free_port

CLIENTS = (1, 8, 32)


@dataclass
class Load:
    """What a load run measured."""

    commands: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rate(self) -> float:
        """Commands per second."""
        return self.commands / self.seconds

    @property
    def p50_ms(self) -> float:
        """Median latency in ms."""
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        """99th percentile latency in ms."""
        return percentile(self.latencies, 99) * 1000


# ------------------------------------------------------------------ baseline


class Person(Aggregate):
    """A plain library aggregate with a contact's kind of payload."""

    @event("Created")
    def __init__(self, first_names: str, last_names: str, company_name: str, email: str) -> None:
        self.first_names = first_names
        self.last_names = last_names
        self.company_name = company_name
        self.email = email


class SaveLoop(Application[uuid.UUID]):
    """The library's own application, saving one new aggregate per save()."""

    name = "BenchSaveLoop"


def library_save_loop(settings: KontaktSettings, seconds: float) -> Load:
    """save() in a loop, one new aggregate (one event) per call, for `seconds`."""
    app = SaveLoop(settings.eventsourcing_env())
    try:
        for i in range(50):  # warm the pool and the prepared statements
            app.save(Person(f"W{i}", "Warm", "Acme A/S", f"w{i}@acme.example"))
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = started + seconds
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            n += 1
            app.save(Person(f"F{n}", f"L{n}", "Acme A/S", f"p{n}@acme.example"))
            latencies.append(time.perf_counter() - t0)
        return Load(n, time.perf_counter() - started, latencies, 0)
    finally:
        app.close()


# ------------------------------------------------------------------ HTTP load


_seq = itertools.count()


def create_body(run: str) -> dict[str, Any]:
    """A new, unique contact."""
    n = next(_seq)
    return {
        "company_id": f"6f1c2d2e-0000-4000-8000-{n % 50:012d}",
        "company_name": f"Company {n % 50}",
        "first_names": f"Karen{n}",
        "last_names": f"Jensen-{run}",
        "job_title": "Buyer",
        "work_email": f"k{n}.{run}@acme.example",
    }


async def http_load(base_url: str, token: str, clients: int, seconds: float) -> Load:
    """`clients` concurrent clients, each POSTing new contacts back to back for `seconds`
    (keep-alive connections of the lean load generator, after one warm-up request each)."""
    run = uuid.uuid4().hex[:8]
    latencies, errors, elapsed = await back_to_back(
        base_url, {"Authorization": f"Bearer {token}"}, clients, seconds, lambda: create_body(run)
    )
    return Load(len(latencies), elapsed, latencies, errors)


def start_plain_asgi(settings: KontaktSettings, procs: list[Proc]) -> str:
    """Start the plain ASGI app (the floor: HTTP alone); return its URL."""
    port = free_port()
    proc = spawn("plain-asgi", ["--port", str(port)], env_of(settings), "bench.plain_asgi")
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(f"{url}/")
    return url


def measured(proc: Proc, url: str, token: str, clients: int, seconds: float) -> tuple[Load, float]:
    """Run http_load; with the CPU time proc spent per command meanwhile, in ms."""
    before = proc.cpu_seconds()
    done = asyncio.run(http_load(url, token, clients, seconds))
    return done, (proc.cpu_seconds() - before) * 1000 / max(done.commands, 1)


def start_api(
    settings: KontaktSettings,
    procs: list[Proc],
    plain: bool = False,
    without: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> str:
    """Start the contacts API process (without: bench.serve_contacts flags); return its URL."""
    port = free_port()
    env = {**env_of(settings, KONTAKT_LOG_JSON="true"), **(extra_env or {})}
    flags = [*(["--plain"] if plain else []), *without]
    if flags:
        proc = spawn(
            "contacts-api-variant", ["--port", str(port), *flags], env, "bench.serve_contacts"
        )
    else:
        proc = spawn("contacts-api", ["serve", "contacts", "--port", str(port)], env)
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(f"{url}/health/ready")
    return url


#: The API as it was, then with each speed-up added in turn: (name, serve_contacts flags,
#: environment). The last is the API as it is served.
STEPS: tuple[tuple[str, tuple[str, ...], dict[str, str]], ...] = (
    ("before", ("--no-group-commit", "--h11"), {"PSYCOPG_IMPL": "python"}),
    ("+ group commit", ("--h11",), {"PSYCOPG_IMPL": "python"}),
    ("+ psycopg in C", ("--h11",), {}),
    ("+ httptools (as served)", (), {}),
)


def steps(report: Report, settings: KontaktSettings, token: str, seconds: float) -> None:
    """Each speed-up's effect: API CPU per command at every step, beside the first step's."""
    first: dict[int, float] = {}
    for name, flags, extra_env in STEPS:
        with processes() as procs:
            url = start_api(settings, procs, without=flags, extra_env=extra_env)
            for clients in (1, 32):
                progress(f"step {name!r}: {clients} client(s) for {seconds:.0f}s")
                load, cpu = measured(procs[0], url, token, clients, seconds)
                first.setdefault(clients, cpu)
                report.add(
                    Figure(
                        "B1",
                        f"API CPU per command, step {name}, {clients} client(s)",
                        cpu,
                        "ms",
                        first[clients],
                        f"step {STEPS[0][0]}",
                        better="lower",
                        note=(
                            f"{load.rate:.0f} cmd/s, p50 {load.p50_ms:.1f} ms,"
                            f" p99 {load.p99_ms:.1f} ms"
                        ),
                    )
                )


# ------------------------------------------------------------------ run


def run(report: Report, quick: bool = False) -> None:
    """Run B1 (and B6's API memory and encryption cost)."""
    seconds = 4.0 if quick else 10.0
    with isolated("b1") as settings:
        token = mint_token(settings, "bench")
        progress(f"baseline: library save() loop for {seconds:.0f}s")
        base = library_save_loop(settings, seconds)
        with processes() as procs:
            url = start_api(settings, procs)
            api = procs[0]
            time.sleep(1.0)
            idle_rss = api.rss()
            loads: dict[int, Load] = {}
            cpu: dict[int, float] = {}
            with Sampler([api]):
                for clients in CLIENTS:
                    progress(f"HTTP: {clients} client(s) for {seconds:.0f}s")
                    loads[clients], cpu[clients] = measured(api, url, token, clients, seconds)
                peak_rss = max(api.rss_samples, default=api.rss())
        # The floor: the same clients against a plain ASGI app on the same server.
        floor: dict[int, Load] = {}
        floor_cpu: dict[int, float] = {}
        with processes() as procs:
            url = start_plain_asgi(settings, procs)
            for clients in (1, 32):
                progress(f"HTTP against a plain ASGI app: {clients} client(s) for {seconds:.0f}s")
                plain_load = measured(procs[0], url, token, clients, seconds)
                floor[clients], floor_cpu[clients] = plain_load
        for clients in (1, 32):
            report.add(
                Figure(
                    "B1",
                    f"API CPU per command, {clients} client(s)",
                    cpu[clients],
                    "ms",
                    floor_cpu[clients],
                    "plain ASGI app, same server and clients",
                    better="lower",
                    target="≤ 1.5 ms" if clients == 1 else "",
                    met=(cpu[clients] <= 1.5) if clients == 1 else None,
                )
            )
            report.add(
                Figure(
                    "B1",
                    f"writes vs a plain ASGI app, {clients} client(s)",
                    loads[clients].rate,
                    "cmd/s",
                    floor[clients].rate,
                    "plain ASGI app, same server and clients",
                    note=f"plain app p99 {floor[clients].p99_ms:.1f} ms",
                )
            )
        for clients, load in loads.items():
            target = ""
            met = None
            if clients == 32:
                target = "≥ 1.0x"
                met = load.rate >= base.rate
            report.add(
                Figure(
                    "B1",
                    f"writes, {clients} client(s)",
                    load.rate,
                    "cmd/s",
                    base.rate,
                    "library save() loop, 1 thread",
                    target=target,
                    met=met,
                    note=f"{load.commands} commands, {load.errors} errors",
                )
            )
            report.add(
                Figure(
                    "B1",
                    f"p50 latency, {clients} client(s)",
                    load.p50_ms,
                    "ms",
                    base.p50_ms,
                    "library save() p50",
                    better="lower",
                )
            )
            report.add(
                Figure(
                    "B1",
                    f"p99 latency, {clients} client(s)",
                    load.p99_ms,
                    "ms",
                    base.p99_ms,
                    "library save() p99",
                    better="lower",
                    target="≤ 50 ms" if clients == 32 else "",
                    met=(load.p99_ms <= 50) if clients == 32 else None,
                )
            )
        for name, value in (("idle", idle_rss), ("under B1 load", peak_rss)):
            report.add(
                Figure(
                    "B6",
                    f"contacts API resident memory, {name}",
                    value / MB,
                    "MB",
                    target="≤ 150 MB",
                    met=value / MB <= 150,
                    better="lower",
                )
            )
        steps(report, settings, token, seconds)
        # Encryption cost: the 32-client run again, on an API storing events in plain text.
        with processes() as procs:
            url = start_api(settings, procs, plain=True)
            progress(f"HTTP without per-person encryption: 32 clients for {seconds:.0f}s")
            plain = asyncio.run(http_load(url, token, 32, seconds))
        report.add(
            Figure(
                "B6",
                "writes with encryption, 32 clients",
                loads[32].rate,
                "cmd/s",
                plain.rate,
                "same API without encryption",
                note=(
                    f"p50 {loads[32].p50_ms:.1f} vs {plain.p50_ms:.1f} ms;"
                    f" p99 {loads[32].p99_ms:.1f} vs {plain.p99_ms:.1f} ms"
                ),
            )
        )


def main() -> None:
    """Run B1 alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
