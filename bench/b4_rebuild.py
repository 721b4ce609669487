"""B4 rebuild: events per second of a read-model rebuild over at least 1,000,000 stored
events. Baseline: raw reading of the notification log, decoded (select_notifications in the
rebuild's batch size, each notification turned into its domain event by the application's
mapper, which decrypts the personal fields). Also measures, for B6, the disk bytes per
million events (the events table with its indexes, and the person keys).

    python -m bench.b4_rebuild [--quick] [--events N]
"""

from __future__ import annotations

import asyncio
import time

from psycopg_pool import ConnectionPool

from bench.common import MB, Figure, Report, isolated, progress
from bench.seed import seed
from services.contacts.application import ContactsApp
from services.contacts.export import StoreReader
from services.contacts.photos import PostgresPhotoStore
from services.contacts.store import build_contacts_app, close_contacts_app
from services.projections.db import create_pool
from services.projections.rebuild import BATCH, rebuild_contacts
from shared.settings import KontaktSettings


def raw_read(contacts: ContactsApp) -> tuple[int, float]:
    """Read the whole notification log and decode every event; (events, seconds)."""
    recorder = contacts.recorder
    mapper = contacts.mapper
    started = time.perf_counter()
    position, count = 0, 0
    while True:
        notifications = recorder.select_notifications(
            start=position, limit=BATCH, inclusive_of_start=False
        )
        if not notifications:
            break
        for n in notifications:
            mapper.to_domain_event(n)
        count += len(notifications)
        position = notifications[-1].id
    return count, time.perf_counter() - started


async def rebuild(settings: KontaktSettings, contacts: ContactsApp) -> tuple[int, float, int]:
    """Rebuild the contacts read model; (events, seconds, contacts)."""
    pool = await create_pool(settings)
    try:
        report = await rebuild_contacts(settings, pool, StoreReader(contacts))
    finally:
        await pool.close()
    return report.events, report.seconds, report.contacts


def app_pool(contacts: ContactsApp) -> ConnectionPool:
    """The application's own small connection pool (its photo store's)."""
    photos = contacts.photos
    if not isinstance(photos, PostgresPhotoStore):
        raise TypeError("the benchmark needs the PostgreSQL photo store")
    return photos._pool


def disk_bytes(contacts: ContactsApp) -> tuple[int, int]:
    """(bytes of the events table with indexes and TOAST, bytes of the person keys table)."""
    with app_pool(contacts).connection() as conn:  # the app's own small pool
        row = conn.execute(
            "SELECT pg_total_relation_size(%s), pg_total_relation_size('person_keys')",
            (contacts.recorder.events_table_name,),  # type: ignore[attr-defined]
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run(report: Report, quick: bool = False, events: int | None = None) -> None:
    """Run B4 (and B6's disk figure)."""
    wanted = events or (100_000 if quick else 1_000_000)
    with isolated("b4") as settings:
        contacts = build_contacts_app(settings)
        try:
            progress(f"seeding {wanted:,} events (200 contacts x 10 events per save)")
            stored, seed_seconds = seed(contacts, wanted, progress=progress)
            progress(f"seeded {stored:,} events in {seed_seconds:.0f}s")
            with app_pool(contacts).connection() as conn:
                conn.execute(f"VACUUM ANALYZE {contacts.recorder.events_table_name}")  # type: ignore[attr-defined]
            events_bytes, keys_bytes = disk_bytes(contacts)
            progress("baseline: raw read of the notification log, decoded")
            raw_count, raw_seconds = raw_read(contacts)
            progress("rebuild of the contacts read model")
            rebuilt, rebuild_seconds, rows = asyncio.run(rebuild(settings, contacts))
        finally:
            close_contacts_app(contacts)
    raw_rate = raw_count / raw_seconds
    rate = rebuilt / rebuild_seconds
    report.add(
        Figure(
            "B4",
            f"rebuild over {rebuilt:,} events",
            rate,
            "events/s",
            raw_rate,
            "raw read of the notification log, decoded",
            target="≥ 0.8x and ≥ 40,000/s",
            met=rate >= 0.8 * raw_rate and rate >= 40_000,
            note=(
                f"{rows:,} contacts; rebuild {rebuild_seconds:.0f}s, raw read {raw_seconds:.0f}s;"
                f" seeding {stored:,} events took {seed_seconds:.0f}s"
            ),
        )
    )
    per_million = 1_000_000 / stored
    report.add(
        Figure(
            "B6",
            "disk per million events",
            (events_bytes + keys_bytes) * per_million / MB,
            "MB",
            better="lower",
            note=(
                f"events table with indexes {events_bytes * per_million / MB:,.0f} MB,"
                f" person keys {keys_bytes * per_million / MB:,.0f} MB"
                f" (10 events per person); measured over {stored:,} events"
            ),
        )
    )


def main() -> None:
    """Run B4 alone."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args()
    run(Report(), args.quick, args.events)


if __name__ == "__main__":
    main()
