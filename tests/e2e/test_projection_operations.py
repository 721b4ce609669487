"""Operating the projection workers: scaling out, dead letters, erasure in the read models."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from uuid import UUID, uuid4

from services.contacts.domain import Actor
from services.contacts.export import StoreReader
from services.projections.rebuild import rebuild_contacts
from shared.auth import mint_token
from shared.kafka import read_topic
from shared.settings import KontaktSettings
from tests import rawscan
from tests.integration.test_projection_rebuild import dump
from tests.pipeline import pipeline, wait_no_lag
from tests.support import env_of, eventually, run_kontakt, start_kontakt

ALICE = Actor("alice", "ops")


def worker_process(settings: KontaktSettings, log: Path) -> subprocess.Popen[bytes]:
    return start_kontakt(["projections", "worker"], env_of(settings), log)


async def wait_for_members(settings: KontaktSettings, group: str, count: int) -> None:
    """Wait until a consumer group has `count` members, each assigned partitions."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()

    async def assigned() -> bool:
        (described,) = await admin.describe_consumer_groups([group])
        members = described.groups[0][5] if described.groups else []
        return len(members) == count and all(m[4] for m in members)

    try:
        await eventually(assigned, f"{group} never had {count} members with partitions", 60, 0.5)
    finally:
        await admin.close()


async def test_two_workers_share_partitions_and_one_killed_mid_stream_loses_nothing(
    isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    async with pipeline(isolated_settings, worker=False) as p:
        assert p.contacts is not None
        logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
        workers = [worker_process(p.settings, log) for log in logs]
        try:
            # Both workers joined each family's group and got a share of its partitions.
            await wait_for_members(p.settings, "kontakt-rm-contacts", 2)

            def burst(start: int, count: int) -> None:
                for i in range(start, start + count):
                    cid = p.contacts.create_contact(
                        ALICE,
                        company_id=uuid4(),
                        company_name="Scale",
                        details={"first_names": f"S{i}", "last_names": "Out"},
                    ).contact_id
                    p.contacts.add_infotag(ALICE, cid, f"t{i % 5}")

            await asyncio.to_thread(burst, 0, 150)
            await p.relay()
            await asyncio.sleep(1.0)
            workers[0].send_signal(signal.SIGKILL)  # mid-stream: it may hold uncommitted work
            workers[0].wait()
            await asyncio.to_thread(burst, 150, 150)
            await p.relay()
            await wait_no_lag(
                p.settings, ["contacts", "activities", "items", "sync-status"], timeout=120
            )
            incremental = await dump(p.settings)
            await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
            assert await dump(p.settings) == incremental
            assert len(incremental["contacts"]) == 300
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
                    assert w.wait(timeout=30) == 0


async def test_malformed_messages_are_dead_lettered_and_good_ones_still_applied(
    isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    async with pipeline(isolated_settings) as p:
        s = p.settings
        good = await p.command.post(
            "/contacts",
            json={
                "company_id": str(uuid4()),
                "company_name": "Poison Co",
                "first_names": "Good",
                "last_names": "One",
            },
        )
        cid = good.json()["contact_id"]
        for topic in (s.contacts_topic, s.activities_topic, s.projects_topic, s.sync_events_topic):
            await p.produce(topic, b"\x00not json at all", b"k")
            await p.produce(topic, json.dumps({"type": "Nonsense", "x": 1}).encode(), b"k")
        # Well-formed, but for a contact the read model does not know yet (its events are
        # not relayed): the worker repairs the contact from the store, then applies it.
        orphan = {
            "event_id": str(uuid4()),
            "type": "InfotagAdded",
            "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
            "actor": "a",
            "correlation_id": "c",
            "contact_id": cid,
            "person_id": good.json()["person_id"],
            "aggregate_version": 2,
            "global_position": 99999,
            "data": {"tag": "late"},
        }
        await p.produce(s.contacts_topic, json.dumps(orphan).encode(), b"k")
        # A value the database refuses (here: a constraint an operator will lift) fails
        # every attempt and is dead-lettered.
        async with p.pool.acquire() as conn:
            await conn.execute(
                "ALTER TABLE ledger.items ADD CONSTRAINT refused_title"
                " CHECK (title IS NULL OR title <> 'Refused')"
            )
        item_id = str(uuid4())
        refused = {
            "event_id": str(uuid4()),
            "type": "Created",
            "occurred_at": "2026-01-01T00:00:00Z",
            "item_id": item_id,
            "title": "Refused",
            "status": "open",
        }
        await p.produce(s.projects_topic, json.dumps(refused).encode(), b"r")
        await wait_no_lag(s, ["contacts", "activities", "items", "sync-status"])
        await p.settle()  # now the contact's own events arrive: duplicates of the repair
        letters = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
        assert len(letters) == 9
        assert {r.header("x-original-topic") for r in letters} == {
            s.contacts_topic,
            s.activities_topic,
            s.projects_topic,
            s.sync_events_topic,
        }
        assert all(r.header("x-error") for r in letters)
        assert (await p.query.get(f"/contacts/{cid}")).json()["first_names"] == "Good"
        tags = (await p.query.get(f"/contacts/{cid}/infotags")).json()
        assert [t["tag"] for t in tags] == ["late"]

        env = env_of(s)
        listed = run_kontakt(env, "projections", "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.strip().splitlines()) == 1 + len(letters)
        assert "open" in listed.stdout
        # The cause is gone (the constraint is lifted): re-submitting applies it.
        (late,) = [r for r in letters if "refused_title" in (r.header("x-error") or "")]
        async with p.pool.acquire() as conn:
            await conn.execute("ALTER TABLE ledger.items DROP CONSTRAINT refused_title")
        where = f"{late.partition}:{late.offset}"
        fixed = run_kontakt(env, "projections", "dlq", "resubmit", where)
        assert fixed.returncode == 0 and "re-submitted 1" in fixed.stdout, fixed.stderr
        await wait_no_lag(s, ["contacts", "activities", "items", "sync-status"])
        async with p.pool.acquire() as conn:
            title = await conn.fetchval(
                "SELECT title FROM ledger.items WHERE item_id = $1", UUID(item_id)
            )
        assert title == "Refused"
        # A still-malformed one goes back to the dead letters when re-submitted.
        rest = run_kontakt(env, "projections", "dlq", "resubmit")
        assert rest.returncode == 0 and "re-submitted 8" in rest.stdout, rest.stderr
        await wait_no_lag(s, ["contacts", "activities", "items", "sync-status"])
        assert len(await read_topic(s.kafka_bootstrap, s.dead_letter_topic)) == 9 + 8
        bad = run_kontakt(env, "projections", "dlq", "resubmit", "9:9999")
        assert bad.returncode == 1 and "no dead letter 9:9999" in bad.stderr


async def test_erasure_leaves_nothing_of_the_person_in_any_table_read_models_included(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        s = p.settings
        tag = uuid4().hex[:6]
        secret = {
            "first_names": f"Ærlige-{tag}",
            "last_names": f"Sørensen{tag}",
            "work_email": f"ae.{tag}@work.example",
            "private_email": f"ae{tag}@home.example",
            "work_phone": "+45 33 12 34 56",
            "job_title": f"Direktør {tag}",
        }
        created = (
            await p.command.post(
                "/contacts", json={"company_id": str(uuid4()), "company_name": "Scan Co", **secret}
            )
        ).json()
        cid = created["contact_id"]
        await p.command.patch(f"/contacts/{cid}", json={"private_email": f"new{tag}@home.example"})
        await p.settle()  # the read models know the addresses before the e-mails come
        sent = "2026-10-01T00:00:00Z"
        for i, (sender, to) in enumerate(
            [
                (secret["work_email"], ["x@us.example"]),
                ("y@us.example", [secret["private_email"]]),
                ("z@us.example", [f"new{tag}@home.example", "keep@us.example"]),
            ]
        ):
            await p.produce(
                s.activities_topic,
                json.dumps(
                    {
                        "event_id": str(uuid4()),
                        "type": "EmailLogged",
                        "occurred_at": sent,
                        "message_id": f"<{tag}-{i}@x>",
                        "from": sender,
                        "to": to,
                        "cc": [],
                        "subject": f"Fortroligt møde {tag}-{i}",
                        "sent_at": sent,
                    }
                ).encode(),
            )
        # Free text other services wrote about the contact: a link role, a sync reason.
        link = {
            "event_id": str(uuid4()),
            "type": "ContactLinked",
            "occurred_at": sent,
            "item_id": str(uuid4()),
            "contact_id": cid,
            "role": f"Beslutningstager {tag}",
        }
        await p.produce(s.projects_topic, json.dumps(link).encode())
        outcome = {
            "event_id": str(uuid4()),
            "type": "OutlookSyncStatusChanged",
            "occurred_at": sent,
            "user_id": "alice",
            "person_id": created["person_id"],
            "contact_id": cid,
            "status": "unlinked",
            "reason": f"slettet i Outlook af {tag}",
            "sequence": 1,
        }
        await p.produce(s.sync_events_topic, json.dumps(outcome).encode())
        await p.settle()
        assert (await p.query.get(f"/contacts/{cid}/activities")).json()["total"] == 3
        before_subjects = rawscan.find(s.pg_dsn(), [f"Fortroligt møde {tag}-0"])
        assert "ledger.emails" in before_subjects[f"Fortroligt møde {tag}-0"], before_subjects
        before = rawscan.find(s.pg_dsn(), [secret["last_names"], secret["work_email"]])
        assert any(t.startswith("rm.") for t in before[secret["last_names"]]), before

        admin = {"Authorization": f"Bearer {mint_token(s, 'dpo', ['admin'])}"}
        erased = await p.command.post(
            f"/contacts/{cid}/erase", json={"reason": "request"}, headers=admin
        )
        assert erased.status_code == 200
        await p.settle()
        # An e-mail arriving after the erasure is stored with the address redacted.
        await p.produce(
            s.activities_topic,
            json.dumps(
                {
                    "event_id": str(uuid4()),
                    "type": "EmailLogged",
                    "occurred_at": sent,
                    "message_id": f"<{tag}-late@x>",
                    "from": secret["work_email"],
                    "to": ["a@us.example"],
                    "cc": [],
                    "subject": f"Sendt efter sletning {tag}",
                    "sent_at": sent,
                }
            ).encode(),
        )
        # So is a link arriving after the erasure: kept, without its role.
        late_link = {**link, "event_id": str(uuid4()), "item_id": str(uuid4())}
        late_link["role"] = f"Sponsor {tag}"
        await p.produce(s.projects_topic, json.dumps(late_link).encode())
        await p.settle()

        values = [*secret.values(), f"new{tag}@home.example", f"Ærlige-{tag} Sørensen{tag}"]
        values += [f"Fortroligt møde {tag}-{i}" for i in range(3)]
        values += [f"Sendt efter sletning {tag}", f"Beslutningstager {tag}", f"Sponsor {tag}"]
        values += [f"slettet i Outlook af {tag}"]
        leaks = rawscan.find(
            s.pg_dsn(), [v for v in values if v != "+45 33 12 34 56"] + ["33 12 34 56"]
        )
        assert leaks == {}, leaks
        details = (await p.query.get(f"/contacts/{cid}")).json()
        assert details["status"] == "erased" and details["first_names"] == "[erased]"
        assert (await p.query.get(f"/contacts/{cid}/activities")).json()["total"] == 0
        projects = (await p.query.get(f"/contacts/{cid}/projects")).json()
        assert projects["total"] == 2 and all(i["role"] is None for i in projects["items"])
        found = rawscan.find(s.pg_dsn(), ["keep@us.example"])
        assert "ledger.emails" in found["keep@us.example"]  # other people's data stays
