"""Health and status tell the truth about consumers: a stalled group is not ready and is named.

A stall is made on purpose: the worker's read-model (or sync) table is locked, so
the handler of the next message blocks while new messages arrive; its committed
offset stops while the partition's end moves on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.auth import mint_token
from shared.kafka import ensure_topics
from shared.settings import KontaktSettings
from tests.support import env_of, eventually_sync, free_port, kontakt_process, run_kontakt

#: Short, so a stall shows within seconds; the tests wait for conditions, never for this.
STALL_SECONDS = "2"
#: A liveness bound for what the tests wait for, not a timing threshold.
TIMEOUT = 90


def produce(settings: KontaktSettings, topic: str, values: list[bytes], key: bytes) -> None:
    """Publish messages with one key (so to one partition), acknowledged by the broker."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def email(n: int) -> bytes:
    """An e-mail the activities read model applies."""
    sent = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "event_id": str(uuid4()), "type": "EmailLogged", "occurred_at": sent,
            "message_id": f"<stall-{n}-{uuid4().hex}@x>", "from": "a@us.example",
            "to": ["b@them.example"], "cc": [], "subject": "Hello", "sent_at": sent,
        }
    ).encode()  # fmt: skip


def contact_created(person: str) -> bytes:
    """A contact event in the contract's shape, as the relay publishes it."""
    return json.dumps(
        {
            "event_id": str(uuid4()), "type": "ContactCreated", "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(), "actor": "alice",
            "correlation_id": "c", "contact_id": str(uuid4()), "person_id": person,
            "aggregate_version": 1, "global_position": 1,
            "data": {
                "company_id": str(uuid4()), "company_name": "Acme", "first_names": "Karen",
                "last_names": f"Jensen {uuid4().hex[:6]}", "job_title": None, "department": None,
                "work_email": None, "private_email": None, "work_phone": None,
                "private_phone": None, "started_on": None, "predecessor_id": None,
                "infotags": [], "outlook_sync_users": [], "photo": None,
            },
        }
    ).encode()  # fmt: skip


def get(url: str) -> httpx.Response | None:
    """A GET, or None when the server does not answer."""
    try:
        return httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None


def stalled_gauge(metrics_text: str, group: str, topic: str, partition: int) -> float | None:
    """The kontakt_consumer_stalled sample of one partition in a Prometheus exposition."""
    for line in metrics_text.splitlines():
        if (
            line.startswith("kontakt_consumer_stalled{")
            and f'group="{group}"' in line
            and f'topic="{topic}"' in line
            and f'partition="{partition}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def check_stall_is_reported(
    env: dict[str, str], base: str, group: str, topic: str, lock: Callable[[], Any],
    publish: Callable[[int], None], settings: KontaktSettings,
) -> None:  # fmt: skip
    """With the handler blocked, ready is 503 naming the partition; freed, ready is 200."""
    publish(1)

    # The first message is applied and committed: the partition has a committed offset.
    def committed_without_lag() -> list[dict[str, Any]] | None:
        answer = get(f"{base}/lag")
        if answer is None or answer.status_code != 200:
            return None
        return [p for p in answer.json() if p["lag"] == 0 and p["committed"]] or None

    applied = eventually_sync(committed_without_lag, "the first message committed", TIMEOUT)
    [first] = applied
    partition, committed = first["partition"], first["committed"]
    assert get(f"{base}/health/ready").status_code == 200  # type: ignore[union-attr]

    with lock():
        publish(2)
        stalled = eventually_sync(
            lambda: (r := get(f"{base}/health/ready")) is not None and r.status_code == 503
            and r.json(),
            "a 503 from /health/ready", TIMEOUT,
        )  # fmt: skip
        [stall] = stalled["stalled"]
        assert (stall["group"], stall["topic"], stall["partition"]) == (group, topic, partition)
        assert stall["committed"] == committed and stall["end"] == committed + 2
        assert stall["lag"] == 2 and stall["stalled_seconds"] >= float(STALL_SECONDS)
        assert f"{topic}[{partition}] at offset {committed}" in stalled["detail"]
        metrics = get(f"{base}/metrics").text  # type: ignore[union-attr]
        assert stalled_gauge(metrics, group, topic, partition) == 1.0

        out = run_kontakt(env, "status", "--sample-seconds", "1")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        [named] = [x for x in report["stalled"] if (x["group"], x["topic"]) == (group, topic)]
        assert (named["group"], named["partition"], named["committed"]) == (
            group, partition, committed,
        )  # fmt: skip
        assert any("worker" in seen for seen in named["seen_by"]), named
        assert f"group {group} on {topic}[{partition}] at offset {committed}" in out.stderr

    # Freed, the worker moves on and is ready again; the gauge says 0.
    eventually_sync(
        lambda: (r := get(f"{base}/health/ready")) is not None and r.status_code == 200,
        "ready again after the handler was freed",
        TIMEOUT,
    )
    assert stalled_gauge(get(f"{base}/metrics").text, group, topic, partition) == 0.0  # type: ignore[union-attr]


class TableLock:
    """An open transaction holding an exclusive lock on a table, until the block ends."""

    def __init__(self, dsn: str, table: str) -> None:
        self.dsn, self.table = dsn, table

    def __enter__(self) -> None:
        self.conn = psycopg.connect(self.dsn)
        self.conn.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_projection_worker_blocked_on_a_message_is_not_ready_and_names_where_it_stalled(
    isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    s = isolated_settings
    port = free_port()
    env = env_of(s) | {
        "KONTAKT_WORKER_HTTP_PORT": str(port),
        "KONTAKT_CONSUMER_STALL_SECONDS": STALL_SECONDS,
    }
    base = f"http://127.0.0.1:{port}"
    args = ["projections", "worker", "--models", "activities"]
    with kontakt_process(args, env, tmp_path / "worker.log", f"{base}/health/ready"):
        check_stall_is_reported(
            env, base, "kontakt-rm-activities", s.activities_topic,
            lambda: TableLock(s.pg_dsn(), "ledger.emails"),
            lambda n: produce(s, s.activities_topic, [email(i) for i in range(n)], b"k"),
            s,
        )  # fmt: skip


def test_a_sync_worker_blocked_on_a_message_is_not_ready_and_exports_its_lag(
    isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    s = isolated_settings
    port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = env_of(s) | {
        "KONTAKT_SYNC_HTTP_PORT": str(port),
        "KONTAKT_CONSUMER_STALL_SECONDS": STALL_SECONDS,
        # The consumer is what is judged here; Graph is not needed for it.
        "KONTAKT_SYNC_GRAPH_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "KONTAKT_SYNC_CONSUMER_GROUP": f"kontakt-outlook-sync-{uuid4().hex[:8]}",
        # The worker seals what it keeps under the person's key, from the contacts API.
        "KONTAKT_CONTACTS_API_URL": api,
    }
    group = env["KONTAKT_SYNC_CONSUMER_GROUP"]
    base = f"http://127.0.0.1:{port}"
    api_args = ["serve", "contacts", "--port", str(api_port)]
    with kontakt_process(api_args, env, tmp_path / "api.log", f"{api}/health/ready"):
        # A real contact, so the contacts API knows its person; its ContactCreated as
        # the relay would publish it (copies of it are duplicates the worker still reads).
        auth = {"Authorization": f"Bearer {mint_token(s, 'alice')}"}
        created = httpx.post(
            f"{api}/contacts",
            headers=auth,
            json={"company_id": str(uuid4()), "company_name": "Acme", "first_names": "Karen",
                  "last_names": f"Jensen {uuid4().hex[:6]}"},
            timeout=30,
        ).json()  # fmt: skip
        [event] = httpx.get(
            f"{api}/contacts/{created['contact_id']}/events", headers=auth, timeout=30
        ).json()
        message, person = json.dumps(event).encode(), created["person_id"]
        with kontakt_process(
            ["sync", "worker"], env, tmp_path / "sync.log", f"{base}/health/ready"
        ):
            lag = eventually_sync(
                lambda: (r := get(f"{base}/lag")) is not None and r.json(), "/lag", TIMEOUT
            )
            assert {p["group"] for p in lag} == {group} and {p["topic"] for p in lag} == {
                s.contacts_topic
            }
            check_stall_is_reported(
                env, base, group, s.contacts_topic,
                lambda: TableLock(s.pg_dsn(), "sync_contacts"),
                lambda n: produce(s, s.contacts_topic, [message] * n, person.encode()),
                s,
            )  # fmt: skip
            metrics = get(f"{base}/metrics").text  # type: ignore[union-attr]
            assert f'kontakt_consumer_lag{{group="{group}"' in metrics


def test_status_names_a_group_with_lag_and_no_progress_when_no_consumer_runs(
    isolated_settings: KontaktSettings,
) -> None:
    # A group of this test's own (the sync worker's group is a setting), so no member
    # of another test's group can be in the way of the commit below.
    s = isolated_settings.model_copy(
        update={"sync_consumer_group": f"kontakt-outlook-sync-{uuid4().hex[:8]}"}
    )
    group, person = s.sync_consumer_group, str(uuid4())

    async def commit_then_publish_more() -> int:
        await ensure_topics(s, [s.contacts_topic])
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            sent = [
                await producer.send_and_wait(
                    s.contacts_topic, contact_created(person), key=person.encode()
                )
                for _ in range(3)
            ]
        finally:
            await producer.stop()
        tp = TopicPartition(s.contacts_topic, sent[0].partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            # The group read one message and then stopped: committed offset 1, end 3.
            consumer.assign([tp])
            await consumer.commit({tp: 1})
        finally:
            await consumer.stop()
        return tp.partition

    partition = asyncio.run(commit_then_publish_more())
    out = run_kontakt(env_of(s), "status", "--sample-seconds", "1")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    [stall] = [x for x in report["stalled"] if x["group"] == group]
    assert (stall["topic"], stall["partition"], stall["committed"], stall["end"]) == (
        s.contacts_topic, partition, 1, 3,
    )  # fmt: skip
    assert stall["seen_by"] == ["status (no progress in 1s)"]
    assert f"group {group} on {s.contacts_topic}[{partition}] at offset 1" in out.stderr
    [lag] = [
        x for x in report["consumer_lag"] if x["group"] == group and x["partition"] == partition
    ]
    assert lag["lag"] == 2


def test_status_with_postgresql_unreachable_reports_kafka_and_says_so(
    isolated_settings: KontaktSettings,
) -> None:
    closed = free_port()
    out = run_kontakt(env_of(isolated_settings) | {"KONTAKT_PG_PORT": str(closed)}, "status",
                  "--sample-seconds", "0")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["unreachable"] == ["PostgreSQL"]
    assert any(p.startswith("PostgreSQL unreachable") for p in report["problems"])
    assert report["store"] is None and report["sync"] is None
    assert isinstance(report["consumer_lag"], list) and report["stalled"] == []
    assert "PostgreSQL unreachable" in out.stderr and "Traceback" not in out.stderr


def test_status_with_kafka_unreachable_reports_the_store_and_says_so(
    isolated_settings: KontaktSettings,
) -> None:
    closed = free_port()
    env = env_of(isolated_settings) | {"KONTAKT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}"}
    out = run_kontakt(env, "status", "--sample-seconds", "0")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["unreachable"] == ["Kafka"]
    assert any(p.startswith("Kafka unreachable") for p in report["problems"])
    assert report["store"] == {"newest_position": 0} and report["consumer_lag"] is None
    assert report["stalled"] is None  # unknown, not "none"
    assert "Kafka unreachable" in out.stderr and "Traceback" not in out.stderr


def test_status_with_nothing_reachable_is_one_error_line_and_exit_1(
    isolated_settings: KontaktSettings,
) -> None:
    env = env_of(isolated_settings) | {
        "KONTAKT_PG_PORT": str(free_port()),
        "KONTAKT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    out = run_kontakt(env, "status")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "PostgreSQL unreachable" in out.stderr and "Kafka unreachable" in out.stderr
