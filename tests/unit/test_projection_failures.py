"""How the projection worker tells an outage from a bad message (fakes for the servers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from services.projections import contacts_model as model
from services.projections.worker import (
    DatabaseUnavailableError,
    Poison,
    Worker,
    decode,
    is_outage,
)
from shared.contact_events import ContactEventsUnavailableError
from shared.contract import contacts as c
from shared.contract.inbound import activity_event_adapter
from shared.settings import KontaktSettings
from tests.unit.contact_events import AT
from tests.unit.contact_events import created as contact_created


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.InternalClientError("cannot switch to state 11; another operation is in progress"),
        ContactEventsUnavailableError("contacts API: refused"),
    ],
)
def test_an_unreachable_or_busy_server_is_an_outage(error: BaseException) -> None:
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.DataError("value out of int64 range"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.StringDataRightTruncationError("too long"),
        ValueError("bad"),
        TypeError("no projection"),
        Poison("not JSON"),
        model.UnknownContactError("unknown"),
        model.VersionGapError("gap"),
    ],
)
def test_a_refused_value_or_a_raising_handler_is_a_message_failure(error: BaseException) -> None:
    assert not is_outage(error)


def test_decoding_cleans_a_nul_and_a_lone_surrogate_escape_instead_of_refusing() -> None:
    at = "2026-11-01T09:00:00Z"
    raw = json.dumps(
        {
            "event_id": str(uuid4()),
            "type": "EmailLogged",
            "occurred_at": at,
            "message_id": "<m\x00@x>",
            "from": "a\x00@x.example",
            "subject": "Hej \x00",
            "sent_at": at,
        }
    ).encode()
    raw = raw.replace(b"Hej", b"Hej\\udc00")
    event = decode(raw, activity_event_adapter, "an activity event")
    assert (event.subject, event.message_id, event.from_address) == (
        "Hej ",
        "<m@x>",
        "a@x.example",
    )


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{not json", b'{"type": "EmailLogged"}', b"[]"])
def test_decoding_what_is_no_event_is_poison(raw: bytes) -> None:
    with pytest.raises(Poison):
        decode(raw, activity_event_adapter, "an activity event")


def test_the_model_cleans_text_of_stored_events_the_same_on_every_path() -> None:
    created = contact_created(
        actor="al\x00ice",
        company_name="Acme\u200b",
        first_names="No\x00ra",
        last_names="Nul\ud800sen",
        job_title=None,
        department="\x07Sales",
        work_email="nora.\x00n@acme.example",
        private_email=None,
        infotags=[c.InfotagPlacement(tag="T\x00ag", added_by="b\x00ob", added_at=AT)],
        outlook_sync_users=["u\x00"],
    )
    row = model.apply(None, created)
    assert (row.first_names, row.last_names, row.company_name) == ("Nora", "Nulsen", "Acme")
    assert (row.department, row.work_email) == ("Sales", "nora.n@acme.example")
    assert row.addresses == frozenset({"nora.n@acme.example"})
    assert list(row.infotags) == ["Tag"] and row.infotags["Tag"].added_by == "bob"
    assert row.outlook_sync_users == ("u",)
    changed = c.ContactDetailsChanged(
        **{**created.model_dump(exclude={"type", "data"}), "aggregate_version": 2},
        data=c.ContactDetailsChangedData(changes={"job_title": "C\x00FO"}),
    )
    assert model.apply(row, changed).job_title == "CFO"


class _Pool:
    """A pool whose connections do nothing (the apply function is faked)."""

    async def acquire(self) -> Any:
        @contextlib.asynccontextmanager
        async def transaction() -> AsyncIterator[None]:
            yield

        return SimpleNamespace(transaction=transaction)

    async def release(self, conn: Any) -> None:
        pass


class _DownPool(_Pool):
    """A pool PostgreSQL refuses to give connections to."""

    async def acquire(self) -> Any:
        raise asyncpg.exceptions.ObjectInPrerequisiteStateError(
            'database "x" is not currently accepting connections'
        )


def _worker(publish_fails: bool = False, pool: _Pool | None = None) -> tuple[Worker, list[Any]]:
    settings = KontaktSettings(projection_max_attempts=3, projection_backoff_max_seconds=0.01)
    worker = Worker(settings, pool or _Pool(), ["items"])
    published: list[Any] = []

    class Producer:
        async def send_and_wait(
            self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
        ) -> None:
            if publish_fails:
                raise ConnectionError("Kafka unreachable")
            sent = {"topic": topic, "key": key, "headers": {k: v.decode() for k, v in headers}}
            published.append((value, sent))

    worker.producer = Producer()
    return worker, published


RECORD = SimpleNamespace(topic="projects.events", partition=4, offset=17, key=b"k", value=b"{}")


def test_a_message_refused_by_the_database_is_tried_a_bounded_number_of_times() -> None:
    worker, published = _worker()
    calls = 0

    async def apply(conn: Any, raw: bytes) -> tuple[bool, datetime | None]:
        nonlocal calls
        calls += 1
        raise asyncpg.exceptions.DataError("value out of int64 range")

    asyncio.run(worker.process("items", RECORD, apply))
    assert calls == 3 and worker.stats.retries == 2 and worker.stats.dead_lettered == 1
    ((value, sent),) = published
    headers = sent["headers"]
    assert value == b"{}" and sent["topic"] == worker.settings.dead_letter_topic
    assert headers["x-original-topic"] == "projects.events"
    assert (headers["x-original-partition"], headers["x-original-offset"]) == ("4", "17")
    assert "out of int64 range" in headers["x-error"]


def test_an_outage_is_neither_counted_against_the_message_nor_dead_lettered() -> None:
    worker, published = _worker()

    async def apply(conn: Any, raw: bytes) -> tuple[bool, datetime | None]:
        raise ContactEventsUnavailableError("contacts API: refused")

    with pytest.raises(ContactEventsUnavailableError):
        asyncio.run(worker.process("items", RECORD, apply))
    assert published == [] and worker.stats.dead_lettered == 0
    assert worker.stats.outages == 1 and worker.stats.retries == 0


def test_a_dead_letter_kafka_cannot_take_leaves_the_message_uncommitted() -> None:
    worker, _ = _worker(publish_fails=True)

    async def apply(conn: Any, raw: bytes) -> tuple[bool, datetime | None]:
        raise Poison("not JSON")

    # Raising makes the consumer rewind instead of committing: the message comes again.
    with pytest.raises(ConnectionError):
        asyncio.run(worker.process("items", RECORD, apply))
    assert worker.stats.dead_lettered == 0 and worker.stats.outages == 1


def test_no_connection_to_be_had_is_an_outage_whatever_postgresql_answers() -> None:
    worker, published = _worker(pool=_DownPool())

    async def apply(conn: Any, raw: bytes) -> tuple[bool, datetime | None]:
        raise AssertionError("never reached")

    with pytest.raises(DatabaseUnavailableError):
        asyncio.run(worker.process("items", RECORD, apply))
    assert published == [] and worker.stats.outages == 1 and worker.stats.retries == 0


def test_a_worker_that_could_never_authenticate_a_repair_refuses_to_start() -> None:
    settings = KontaktSettings(jwt_algorithm="RS256", jwt_public_key="not used here")
    worker = Worker(settings, _Pool(), ["contacts"])
    with pytest.raises(ValueError, match="KONTAKT_PROJECTION_SERVICE_TOKEN"):
        asyncio.run(worker.start())
