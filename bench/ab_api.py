"""B1 across revisions: the contacts API served from several source trees in turn (each a
checkout, e.g. `git worktree add /tmp/before <commit>`), interleaved for some rounds, under
B1's clients, in one run and on one database:

    python -m bench.ab_api before=/tmp/before after=. [--rounds 2] [--seconds 5]

Prints each load as it finishes, then per tree the median (and least) API CPU per command
and the median rate and latencies: the before/after tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

from bench.b1_writes import http_load
from bench.common import LOGS, Proc, isolated
from shared.auth import mint_token
from tests.support import env_of, free_port, start_kontakt


def serve_from(tree: Path, label: str, env: dict[str, str]) -> tuple[Proc, str]:
    """Start `kontakt serve contacts` with the code of a source tree; (process, URL)."""
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"ab-{label}.log"
    popen = start_kontakt(
        ["serve", "contacts", "--port", str(port)],
        {**env, "PYTHONPATH": str(tree)},
        log,
        cwd=tree,
    )
    proc = Proc(label, popen, log)
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(f"{url}/health/ready")
    return proc, url


def main() -> None:
    """Compare the trees."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trees", nargs="+", help="label=path of a source tree")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,32")
    args = parser.parse_args()
    trees = [
        (label, Path(path).resolve()) for label, _, path in (t.partition("=") for t in args.trees)
    ]
    clients = [int(c) for c in args.clients.split(",")]
    results: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    with isolated("ab") as settings:
        token = mint_token(settings, "bench")
        env = env_of(settings, KONTAKT_LOG_JSON="true")
        for round_ in range(args.rounds):
            for label, tree in trees:
                proc, url = serve_from(tree, label, env)
                try:
                    for n in clients:
                        before = proc.cpu_seconds()
                        load = asyncio.run(http_load(url, token, n, args.seconds))
                        cpu = (proc.cpu_seconds() - before) * 1000 / max(load.commands, 1)
                        results.setdefault((label, n), []).append(
                            (cpu, load.rate, load.p50_ms, load.p99_ms)
                        )
                        print(
                            f"round {round_ + 1} {label}: {n} client(s) {load.rate:,.0f} cmd/s,"
                            f" p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms,"
                            f" API CPU {cpu:.2f} ms per command, {load.errors} errors",
                            flush=True,
                        )
                finally:
                    proc.stop()
    print("| tree | clients | API CPU per command (median / least) | cmd/s | p50 | p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for (label, n), runs in results.items():
        cpus = [r[0] for r in runs]
        print(
            f"| {label} | {n} | {statistics.median(cpus):.2f} / {min(cpus):.2f} ms"
            f" | {statistics.median(r[1] for r in runs):,.0f}"
            f" | {statistics.median(r[2] for r in runs):.1f} ms"
            f" | {statistics.median(r[3] for r in runs):.1f} ms |"
        )


if __name__ == "__main__":
    main()
