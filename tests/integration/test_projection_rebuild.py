"""Incrementally built read models equal a rebuild from the store; rebuilds cause no downtime."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.contacts.domain import Actor, ContactError
from services.contacts.export import StoreReader
from services.projections.rebuild import rebuild_contacts
from services.projections.sql import contacts as contacts_sql
from shared.kafka import read_topic
from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.pipeline import Pipeline, pipeline
from tests.support import isolated

ALICE, BOB = Actor("alice", "p1"), Actor("bob", "p2")

command = st.tuples(
    st.sampled_from(
        [
            "create",
            "details",
            "sync",
            "tag",
            "untag",
            "archive",
            "restore",
            "job",
            "undo",
            "correct",
            "photo",
            "erase",
            "email",
            "link",
        ]
    ),
    st.integers(0, 7),
    st.integers(0, 2),
    st.sampled_from(["a", "b", "Ø"]),
)


def run_commands(p: Pipeline, commands: list[tuple[str, int, int, str]]) -> list[UUID]:
    """Apply commands to the store, ignoring those the domain refuses; return contact ids."""
    assert p.contacts is not None
    app = p.contacts
    companies = [uuid4() for _ in range(3)]
    ids: list[UUID] = []
    for i, (kind, who, company, value) in enumerate(commands):
        target = ids[who % len(ids)] if ids else None
        try:
            if kind == "create" or target is None:
                ids.append(
                    app.create_contact(
                        ALICE,
                        company_id=companies[company],
                        company_name=f"C{company}",
                        details={
                            "first_names": f"P{who}{value}",
                            "last_names": f"L{i}",
                            "work_email": f"p{who}.{i}@x.example",
                        },
                    ).contact_id
                )
            elif kind == "details":
                app.change_details(
                    BOB,
                    target,
                    {"job_title": value * 3, "private_email": f"{value}{i}@home.example"},
                )
            elif kind == "sync":
                app.toggle_outlook_sync(ALICE, target, user_id=value, enabled=bool(i % 2))
            elif kind == "tag" and company == 0:
                # A catalogue tag by id: the read model keeps its tag_id.
                tag_id = app.infotag_catalogue().find_path(f"K{value}")
                if tag_id is None:
                    tag_id = app.define_infotag(ALICE, frozenset({"admin"}), f"K{value}", None)
                app.add_catalogue_infotag(BOB, target, tag_id)
            elif kind == "tag":
                app.add_infotag(BOB, target, f"T/{value}")
            elif kind == "untag":
                app.remove_infotag(BOB, target, f"T/{value}")
            elif kind == "archive":
                app.archive(ALICE, target)
            elif kind == "restore":
                app.restore(ALICE, target)
            elif kind == "job":
                _, new = app.change_job(
                    ALICE,
                    target,
                    company_id=companies[company],
                    company_name=f"C{company}",
                    job={"job_title": value},
                    effective_on=date(2026, 1, 1 + i % 27),
                )
                ids.append(new.contact_id)
            elif kind == "undo":
                app.undo_job_change(BOB, target)
            elif kind == "correct":
                app.correct_employment(
                    BOB,
                    target,
                    company_id=companies[company],
                    company_name=f"C{company}{value}",
                    started_on=date(2025, 1 + company, 1),
                )
            elif kind == "photo":
                app.change_photo(ALICE, target, image_bytes("PNG", (2 + company, 2)))
            elif kind == "erase":
                app.erase_person(Actor("dpo", "e"), target, "request")
        except ContactError:
            pass
    return ids


async def inbound_first(
    p: Pipeline, ids: list[UUID], commands: list[tuple[str, int, int, str]]
) -> None:
    """Inbound events that mention contacts before the contacts' events are relayed."""
    at = datetime(2026, 6, 1, tzinfo=UTC).isoformat()
    for i, (kind, who, _, value) in enumerate(commands):
        if not ids:
            return
        target = ids[who % len(ids)]
        if kind == "email":
            await p.produce(
                p.settings.activities_topic,
                json.dumps(
                    {
                        "event_id": str(uuid4()),
                        "type": "EmailLogged",
                        "occurred_at": at,
                        "message_id": f"<{i}@x>",
                        "from": f"p{who}.{i}@x.example",
                        "to": [f"{value}{i}@home.example"],
                        "cc": [],
                        "subject": "s",
                        "sent_at": at,
                    }
                ).encode(),
            )
        elif kind == "link":
            item = str(uuid4())
            await p.produce(
                p.settings.projects_topic,
                json.dumps(
                    {
                        "event_id": str(uuid4()),
                        "type": "ContactLinked",
                        "occurred_at": at,
                        "item_id": item,
                        "contact_id": str(target),
                        "role": value,
                    }
                ).encode(),
                item.encode(),
            )


async def republish_some(p: Pipeline, seed: int) -> int:
    """Publish a random third of the contact messages again (as a crashed relay would)."""
    records = await read_topic(p.settings.kafka_bootstrap, p.settings.contacts_topic)
    chosen = random.Random(seed).sample(records, len(records) // 3)
    for r in sorted(chosen, key=lambda r: (r.partition, r.offset)):
        await p.produce(p.settings.contacts_topic, r.value, r.key)
    return len(chosen)


async def dump(settings: KontaktSettings) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(settings.pg_dsn())
    try:
        return await contacts_sql.dump(conn, contacts_sql.LIVE)
    finally:
        await conn.close()


EVERY_KIND = [
    ("create", 0, 0, "a"),
    ("create", 1, 1, "b"),
    ("create", 2, 0, "Ø"),
    ("email", 0, 0, "a"),
    ("link", 1, 0, "b"),
    ("details", 0, 1, "a"),
    ("sync", 1, 0, "b"),
    ("tag", 0, 0, "a"),
    ("tag", 1, 0, "b"),
    ("tag", 0, 1, "a"),
    ("untag", 0, 0, "a"),
    ("archive", 2, 0, "a"),
    ("restore", 2, 0, "a"),
    ("photo", 1, 2, "a"),
    ("job", 0, 2, "b"),
    ("tag", 3, 0, "b"),
    ("undo", 3, 0, "a"),
    ("job", 0, 1, "a"),
    ("correct", 0, 1, "a"),
    ("correct", 4, 1, "b"),
    ("details", 4, 0, "b"),
    ("erase", 1, 0, "a"),
    ("email", 4, 0, "b"),
]


@hsettings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@example(commands=EVERY_KIND, seed=1)
@given(commands=st.lists(command, min_size=4, max_size=30), seed=st.integers(0, 1000))
def test_incremental_read_models_equal_a_rebuild_row_for_row(
    settings: KontaktSettings,
    commands: list[tuple[str, int, int, str]],
    seed: int,
) -> None:
    async def scenario(own: KontaktSettings) -> None:
        async with pipeline(own) as p:
            ids = await asyncio.to_thread(run_commands, p, commands)
            await inbound_first(p, ids, commands)
            await p.relay()
            await republish_some(p, seed)
            await p.settle()
            assert p.worker is not None and p.worker.stats.dead_lettered == 0
            incremental = await dump(p.settings)
            assert p.contacts is not None
            await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
            rebuilt = await dump(p.settings)
            assert rebuilt == incremental

    with isolated(settings, "kontakt_p") as own:
        asyncio.run(scenario(own))


async def test_queries_keep_answering_while_a_rebuild_swaps_the_model_in(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        assert p.contacts is not None
        ids = await asyncio.to_thread(
            run_commands,
            p,
            [("create", i, i % 3, "a") for i in range(60)]
            + [("tag", i, 0, "b") for i in range(60)],
        )
        await p.settle()
        statuses: list[int] = []
        done = asyncio.Event()

        async def keep_asking() -> None:
            while not done.is_set():
                for cid in ids[:5]:
                    statuses.append((await p.query.get(f"/contacts/{cid}")).status_code)
                statuses.append((await p.query.get("/contacts", params={"name": "p"})).status_code)

        asker = asyncio.create_task(keep_asking())
        before = await dump(p.settings)
        report = await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
        done.set()
        await asker
        assert report.contacts == len(ids)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        assert await dump(p.settings) == before


async def test_the_bulk_read_gives_the_events_the_relay_publishes(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        assert p.contacts is not None
        await asyncio.to_thread(run_commands, p, EVERY_KIND)
        reader = StoreReader(p.contacts)
        for limit in (3, 1000):
            position, published, bulk = 0, [], []
            while True:
                events, last = await asyncio.to_thread(reader.read_published, position, limit)
                same, same_last = await asyncio.to_thread(reader.read_bulk, position, limit)
                assert same_last == last
                if last is None:
                    break
                published += events
                bulk += same
                position = last
            kinds = {e.type for e in bulk if hasattr(e, "contact_id")}
            assert {"ContactCreated", "ContactErased", "JobChangeUndone"} <= kinds
            assert bulk == published
            assert [e.model_dump_json() for e in bulk] == [e.model_dump_json() for e in published]


async def test_a_rebuilt_model_comes_with_the_planners_statistics(
    isolated_settings: KontaktSettings,
) -> None:
    # Without them the planner guesses over the new tables until autovacuum runs, and a
    # search read every row of a large store.
    async with pipeline(isolated_settings) as p:
        assert p.contacts is not None
        await asyncio.to_thread(run_commands, p, [("create", i, 0, "a") for i in range(5)])
        await p.settle()
        await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
        async with p.pool.acquire() as conn:
            unanalysed = await conn.fetch(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = $1"
                " AND last_analyze IS NULL AND last_autoanalyze IS NULL",
                contacts_sql.LIVE,
            )
        assert [r["relname"] for r in unanalysed] == []
