"""What every benchmark shares: the stack, a database and topics of its own, processes,
figures (each beside its baseline) and small statistics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import stack as launcher
from shared.settings import KontaktSettings
from tests.support import (
    isolated as own_database,
)
from tests.support import (
    stack_settings,
    start_kontakt,
    stop_process,
    wait_ready,
)

LOGS = Path(tempfile.gettempdir()) / "kontakt-bench-logs"


# ------------------------------------------------------------------ figures


@dataclass
class Figure:
    """One measured figure beside the baseline measured in the same run."""

    bench: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    #: "higher" (rates) or "lower" (latencies, bytes): how the ratio reads.
    better: str = "higher"
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline (for latencies: how many times the baseline's)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def line(self) -> str:
        """One printed line: figure, baseline, ratio, target."""
        parts = [f"{self.bench} {self.name}: {fmt(self.value)} {self.unit}"]
        if self.baseline is not None:
            parts.append(f"baseline {fmt(self.baseline)} {self.unit} ({self.baseline_name})")
        if self.ratio is not None:
            parts.append(f"ratio {self.ratio:.2f}x")
        if self.target:
            verdict = {True: "met", False: "MISSED", None: "-"}[self.met]
            parts.append(f"target {self.target}: {verdict}")
        if self.note:
            parts.append(self.note)
        return " | ".join(parts)


def fmt(value: float) -> str:
    """A number for people: integers plainly, small ones with a few decimals."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


class Report:
    """Collects figures and prints each as it is added."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}

    def add(self, figure: Figure) -> Figure:
        """Record a figure and print it at once."""
        self.figures.append(figure)
        print("  " + figure.line(), flush=True)
        return figure

    def note(self, text: str) -> None:
        """Record (and print) a remark that belongs beside the table."""
        self.notes.append(text)
        print("  note: " + text, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def progress(text: str) -> None:
    """A progress line."""
    print(f"    {time.strftime('%H:%M:%S')} {text}", flush=True)


# ------------------------------------------------------------------ the stack


def stack() -> launcher.StackInfo:
    """The running servers (started when missing; never stopped by the benchmarks)."""
    return launcher.up(launcher.StackConfig.from_env(), progress=lambda _: None)


@contextlib.contextmanager
def isolated(name: str) -> Iterator[KontaktSettings]:
    """Settings on a fresh database `kontakt_bench_<name>_<id>` and topics of their own;
    both are dropped afterwards."""
    base = stack_settings(stack(), "postgres", "bench")
    with own_database(base, f"kontakt_bench_{name}", "bench") as settings:
        try:
            yield settings
        finally:
            asyncio.run(delete_topics(settings))


async def delete_topics(settings: KontaktSettings) -> None:
    """Delete the benchmark's own topics (those that exist)."""
    from shared.kafka import delete_topics as delete

    await delete(
        settings.kafka_bootstrap,
        {*settings.all_topics(), settings.dead_letter_topic, settings.sync_events_topic},
    )


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    """A service process the benchmark started."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    rss_samples: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def rss(self) -> int:
        """Resident set size now, in bytes (0 once gone)."""
        return rss_of(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        """Remember the resident set size now."""
        self.rss_samples.append(self.rss())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        stop_process(self.popen)

    def wait_ready(self, url: str, timeout: float = 60) -> None:
        """Wait until url answers 200; fail early (with the log) if the process died."""
        wait_ready(url, self.popen, timeout, self.log)


def rss_of(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def spawn(name: str, args: list[str], env: dict[str, str], module: str = "services.cli") -> Proc:
    """Start `python -m <module> <args>` (the project's CLI by default), logging to a file."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}-{uuid.uuid4().hex[:6]}.log"
    return Proc(name, start_kontakt(args, env, log, module), log)


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    """A list to put started processes in; all are stopped at the end."""
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


class Sampler:
    """Samples the resident memory of processes every `interval` seconds, in a thread."""

    def __init__(self, procs: Sequence[Proc], interval: float = 0.25) -> None:
        import threading

        self.procs = list(procs)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for p in self.procs:
                p.sample()

    def __enter__(self) -> Sampler:
        for p in self.procs:
            p.rss_samples.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds it took)."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


MB = 1024 * 1024


def run_alone(run: Callable[[Report, bool], object], description: str | None) -> None:
    """Run one benchmark by itself (`--quick` for the short form), as `bin/bench` runs it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    run(Report(), parser.parse_args().quick)
