"""Profile the contacts API under B1's 32-client load with py-spy (the `bench` extra):

    python -m bench.profile_api [--seconds 10] [--out /tmp/kontakt-api.txt]

Writes py-spy's raw (collapsed) stacks, then prints the functions with the most samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
from pathlib import Path

from bench.b1_writes import http_load, start_api
from bench.common import isolated, processes, progress
from shared.auth import mint_token


def top(collapsed: Path, n: int = 40) -> list[tuple[str, float]]:
    """Inclusive share of samples per function, from py-spy's collapsed stacks."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for frame in set(stack.split(";")):
            counts[frame] += int(count)
    return [(f, c / total) for f, c in counts.most_common(n)]


def main() -> None:
    """Profile the API."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("/tmp/kontakt-api.txt"))
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread that is not idle, not only the one holding the GIL",
    )
    args = parser.parse_args()
    with isolated("prof") as settings, processes() as procs:
        url = start_api(settings, procs)
        token = mint_token(settings, "bench")
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(procs[0].pid),
                "--format",
                "raw",
                "--output",
                str(args.out),
                "--duration",
                str(int(args.seconds) + 2),
                "--rate",
                "200",
                "--nonblocking",
                *([] if args.all_threads else ["--gil"]),
                "--threads",
            ]
        )
        load = asyncio.run(http_load(url, token, args.clients, args.seconds))
        spy.wait()
        progress(f"{load.rate:.0f} cmd/s, p99 {load.p99_ms:.0f} ms while profiled")
    for frame, share in top(args.out):
        print(f"{share * 100:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
