"""Run the benchmark suite and write the Markdown table.

    python -m bench.run [--quick] [--only B1,B4] [--out docs/benchmarks.md]
    python -m bench.run --scale [--only B7] [--scale-contacts N]

Each figure is printed beside its baseline and ratio as it finishes. B6 (footprint) is
measured inside B1 (API memory, encryption cost), B3 (relay, worker, query API memory),
B4 (disk) and B5 (sync worker memory); `--only B6` runs those four. B3W is the web UI's
contact window under B3's load. B7 (scale: a store of 10,000,000 events beside one of
100,000) seeds for long, so it runs only with `--scale`: a plain run and `--quick` leave it
out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from bench import b1_writes, b2_relay, b3_freshness, b3_web_ui, b4_rebuild, b5_sync, b7_scale
from bench.common import Report, fmt

BENCHES: dict[str, tuple[str, Callable[[Report, bool], None]]] = {
    "B1": ("writes", b1_writes.run),
    "B2": ("relay", b2_relay.run),
    "B3": ("freshness", b3_freshness.run),
    "B3W": ("contact window under B3's load", b3_web_ui.run),
    "B4": ("rebuild", b4_rebuild.run),
    "B5": ("sync", b5_sync.run),
    "B7": ("scale", b7_scale.run),
}
#: Run only with --scale (never with --quick): seeding the large store takes long.
SCALE_ONLY = ("B7",)
#: B6 has no run of its own: its figures come from these.
B6_FROM = ("B1", "B3", "B4", "B5")

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


def machine() -> str:
    """Cores, memory, CPU model, OS."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), {mem_gb:.0f} GB memory,"
        f" {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def table(report: Report) -> str:
    """The Markdown table of every figure."""
    rows = [
        "| | figure | value | baseline | ratio | target | met |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for f in sorted(report.figures, key=lambda f: f.bench):
        base = f"{fmt(f.baseline)} {f.unit} ({f.baseline_name})" if f.baseline is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        name = f"{f.name} ({f.note})" if f.note else f.name
        value = f"{fmt(f.value)} {f.unit}"
        rows.append(f"| {f.bench} | {name} | {value} | {base} | {ratio} | {f.target} | {met} |")
    return "\n".join(rows)


def results_block(report: Report, args: argparse.Namespace, seconds: float) -> str:
    """Date, machine, command, table and notes."""
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    if args.scale:
        command += " --scale"
        if args.scale_contacts != b7_scale.LARGE:
            command += f" --scale-contacts {args.scale_contacts}"
    lines = [
        BEGIN,
        f"Measured {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {machine()}"
        f" with `{command}`; the run took {seconds / 60:.1f} minutes.",
        "",
        table(report),
    ]
    if report.notes:
        lines += ["", *[f"- {n}" for n in report.notes]]
    lines.append(END)
    return "\n".join(lines)


def write(out: Path, block: str) -> None:
    """Put the block between the markers of `out` (or append it, or create the file)."""
    text = out.read_text() if out.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block + "\n"
    out.write_text(text)


def main() -> None:
    """Run the selected benchmarks, then write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--only", default="", help="comma-separated, e.g. B1,B4")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file for the table")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also run B7 (scale: seeds 10,000,000 events); left out without it, and with --quick",
    )
    parser.add_argument(
        "--scale-contacts",
        type=int,
        default=b7_scale.LARGE,
        help=f"contacts of B7's large store, 10 events each (default {b7_scale.LARGE:,})",
    )
    args = parser.parse_args()
    wanted = [b.strip().upper() for b in args.only.split(",") if b.strip()] or list(BENCHES)
    if not args.scale and args.only and set(SCALE_ONLY) & set(wanted):
        parser.error(f"{', '.join(SCALE_ONLY)} runs only with --scale")
    if args.scale and args.quick:
        print(f"{', '.join(SCALE_ONLY)} left out: it measures the large store, not --quick")
    if args.quick or not args.scale:
        wanted = [b for b in wanted if b not in SCALE_ONLY]
        if not wanted:
            parser.error("nothing left to run")
    if "B6" in wanted:
        wanted = [b for b in wanted if b != "B6"] + [b for b in B6_FROM if b not in wanted]
    unknown = set(wanted) - set(BENCHES)
    if unknown:
        parser.error(
            f"unknown benchmarks {sorted(unknown)}; choose from {', '.join([*BENCHES, 'B6'])}"
        )
    report = Report()
    started = time.perf_counter()
    for key in BENCHES:
        if key not in wanted:
            continue
        name, bench = BENCHES[key]
        t0 = time.perf_counter()
        print(f"{key} {name}", flush=True)
        if key == "B7":
            b7_scale.run(report, contacts=args.scale_contacts)
        else:
            bench(report, args.quick)
        report.timings[key] = time.perf_counter() - t0
        print(f"  ({report.timings[key]:.0f}s)", flush=True)
    seconds = time.perf_counter() - started
    block = results_block(report, args, seconds)
    print()
    print(block)
    if args.out:
        write(args.out, block)
        print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
