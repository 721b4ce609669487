"""The projection handlers and the worker's family handler, without a broker or a database.

The read models' SQL modules are replaced by an in-memory read model, so what is
checked is the handlers' own logic: duplicates, repairs from the store, erasure
redaction, e-mails of erased persons, and one bad record dead-lettered alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.projections import contacts_model as model
from services.projections import handlers, history_model
from services.projections.sql import activities as activities_sql
from services.projections.sql import contacts as contacts_sql
from services.projections.sql import history as history_sql
from services.projections.sql import items as items_sql
from services.projections.sql import sync_status as sync_sql
from services.projections.worker import Worker
from shared.addresses import address_hash
from shared.contract import contacts as c
from shared.contract import inbound
from shared.settings import KontaktSettings
from tests.unit.contact_events import created, next_event

KEY = b"k" * 32
AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class Conn:
    """A connection whose statements are only the advisory locks the handlers take."""

    def __init__(self, read_model: ReadModel | None = None) -> None:
        self.locks: list[str] = []
        self.read_model = read_model

    async def execute(self, statement: str, *args: Any) -> None:
        self.locks.append(statement)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        # A failed transaction leaves the contacts as they were.
        rows = dict(self.read_model.rows) if self.read_model else {}
        try:
            yield
        except BaseException:
            if self.read_model:
                self.read_model.rows = rows
            raise


class ReadModel:
    """The read models in memory, standing in for the SQL modules."""

    def __init__(self) -> None:
        self.rows: dict[UUID, model.ContactRow] = {}
        self.erased_hashes: set[str] = set()
        self.emails: dict[str, dict[str, Any]] = {}
        self.redacted: set[str] = set()
        self.forgotten: list[UUID] = []
        self.history: dict[UUID, list[history_model.HistoryEntry]] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def load_row(conn: Any, schema: str, contact_id: UUID) -> model.ContactRow | None:
            return self.rows.get(contact_id)

        async def save_row(conn: Any, schema: str, before: Any, after: model.ContactRow) -> None:
            self.rows[after.contact_id] = after

        async def record_erased_addresses(conn: Any, schema: str, hashes: set[str]) -> None:
            self.erased_hashes |= hashes

        async def erased_among(conn: Any, hashes: Sequence[str]) -> set[str]:
            return set(hashes) & self.erased_hashes

        async def known_addresses(conn: Any) -> list[str]:
            return sorted({a for e in self.emails.values() for a in (e["from_address"], *e["to"])})

        async def redact(conn: Any, addresses: set[str]) -> None:
            self.redacted |= set(addresses)

        async def insert_email(conn: Any, **email: Any) -> bool:
            if email["message_id"] in self.emails:
                return False
            self.emails[email["message_id"]] = email
            return True

        async def forget_roles(conn: Any, contact_id: UUID) -> None:
            self.forgotten.append(contact_id)

        async def forget_reasons(conn: Any, person_id: UUID) -> None:
            self.forgotten.append(person_id)

        async def record(conn: Any, schema: str, entry: history_model.HistoryEntry) -> None:
            self.history.setdefault(entry.contact_id, []).append(entry)

        async def redact_history(conn: Any, schema: str, contact_id: UUID) -> None:
            self.history[contact_id] = [e.redacted() for e in self.history.get(contact_id, [])]

        monkeypatch.setattr(history_sql, "redact", redact_history)
        for module, fake in [
            (contacts_sql, load_row),
            (contacts_sql, save_row),
            (contacts_sql, record_erased_addresses),
            (contacts_sql, erased_among),
            (activities_sql, known_addresses),
            (activities_sql, redact),
            (activities_sql, insert_email),
            (items_sql, forget_roles),
            (sync_sql, forget_reasons),
            (history_sql, record),
        ]:
            monkeypatch.setattr(module, fake.__name__, fake)


@pytest.fixture
def read_model(monkeypatch: pytest.MonkeyPatch) -> ReadModel:
    fake = ReadModel()
    fake.install(monkeypatch)
    return fake


def history_of(*events: c.ContactEventBase) -> handlers.History:
    async def history(contact_id: UUID, after: int) -> list[c.ContactEventBase]:
        return [e for e in events if e.contact_id == contact_id and e.aggregate_version > after]

    return history


def archived(row: model.ContactRow) -> c.ContactArchived:
    event: c.ContactArchived = next_event(row, c.ContactArchived, data=c.ReasonData(reason=None))
    return event


async def test_a_contact_event_is_applied_once_by_version(read_model: ReadModel) -> None:
    event = created()
    assert await handlers.apply_contact_event(Conn(), event, KEY)
    assert not await handlers.apply_contact_event(Conn(), event, KEY)
    assert read_model.rows[event.contact_id].version == 1


async def test_a_lost_creation_is_repaired_from_the_store(read_model: ReadModel) -> None:
    first = created()
    second = archived(model.apply(None, first))
    history = history_of(first, second)
    assert await handlers.apply_contact_event(Conn(), second, KEY, history=history)
    row = read_model.rows[first.contact_id]
    assert (row.version, row.status) == (2, "archived")


async def test_a_gap_the_store_cannot_fill_is_a_version_gap(read_model: ReadModel) -> None:
    first = created()
    second = archived(model.apply(None, first))
    with pytest.raises(model.VersionGapError):
        await handlers.apply_contact_event(Conn(), second, KEY, history=history_of())
    assert read_model.rows == {}


async def test_without_a_store_an_event_of_an_unknown_contact_is_refused(
    read_model: ReadModel,
) -> None:
    second = archived(model.apply(None, created()))
    with pytest.raises(model.UnknownContactError):
        await handlers.apply_contact_event(Conn(), second, KEY)


async def test_an_erasure_redacts_the_contacts_addresses_and_forgets_free_text(
    read_model: ReadModel,
) -> None:
    first = created()
    row = model.apply(None, first)
    await handlers.apply_contact_event(Conn(), first, KEY)
    data = c.ContactErasedData(reason=None, address_hashes=[])
    conn = Conn()
    await handlers.apply_contact_event(conn, next_event(row, c.ContactErased, data=data), KEY)
    assert read_model.redacted == set(row.addresses)
    assert read_model.erased_hashes == {address_hash(KEY, a) for a in row.addresses}
    assert read_model.forgotten == [row.contact_id, row.person_id]
    assert any("pg_advisory_xact_lock(" in s for s in conn.locks)  # exclusive: no e-mail slips by
    # The history keeps both events, with none of the person's values.
    entries = read_model.history[row.contact_id]
    assert [e.type for e in entries] == ["ContactCreated", "ContactErased"]
    assert "Karen" not in repr(entries) and "karen@home.example" not in repr(entries)


def email(
    message_id: str, sender: str, to: list[str] | None = None, cc: list[str] | None = None
) -> inbound.EmailLogged:
    raw = {
        "event_id": str(uuid4()),
        "type": "EmailLogged",
        "occurred_at": AT.isoformat(),
        "message_id": message_id,
        "from": sender,
        "to": ["  Sales@Acme.example "] if to is None else to,
        "cc": cc or [],
        "subject": "Offer",
        "sent_at": AT.isoformat(),
    }
    event: inbound.EmailLogged = inbound.activity_event_adapter.validate_python(raw)
    return event


async def test_an_email_is_stored_once_with_normalised_addresses(read_model: ReadModel) -> None:
    assert await handlers.apply_email(Conn(), email("<m1>", "Karen@Home.example"), KEY)
    assert not await handlers.apply_email(Conn(), email("<m1>", "Karen@Home.example"), KEY)
    stored = read_model.emails["<m1>"]
    assert (stored["from_address"], stored["to"], stored["subject"]) == (
        "karen@home.example",
        ["sales@acme.example"],
        "Offer",
    )


async def test_an_email_from_an_erased_person_keeps_neither_address_nor_subject(
    read_model: ReadModel,
) -> None:
    read_model.erased_hashes.add(address_hash(KEY, "karen@home.example"))
    await handlers.apply_email(Conn(), email("<m2>", "karen@home.example"), KEY)
    stored = read_model.emails["<m2>"]
    assert (stored["from_address"], stored["subject"]) == (c.ERASED, c.ERASED)
    assert stored["to"] == ["sales@acme.example"]


async def test_display_names_and_lists_are_stored_as_bare_addresses_that_match(
    read_model: ReadModel,
) -> None:
    sent = email(
        "<m3>",
        '"Jensen, Karen" <Karen@Home.example>',
        to=["Ole Hansen <ole@acme.example>, Sales <SALES@acme.example>"],
        cc=["Boss <boss@acme.example>"],
    )
    assert await handlers.apply_email(Conn(), sent, KEY)
    stored = read_model.emails["<m3>"]
    assert (stored["from_address"], stored["to"], stored["cc"]) == (
        "karen@home.example",
        ["ole@acme.example", "sales@acme.example"],
        ["boss@acme.example"],
    )
    assert stored["matched"] == {
        ("karen@home.example", "from"),
        ("ole@acme.example", "to"),
        ("sales@acme.example", "to"),
        ("boss@acme.example", "cc"),
    }


async def test_an_unreadable_address_is_kept_for_display_and_matches_nobody(
    read_model: ReadModel,
) -> None:
    sent = email("<m4>", "Karen Jensen karen@home.example", to=["<>", "ole@acme.example"])
    assert await handlers.apply_email(Conn(), sent, KEY)
    stored = read_model.emails["<m4>"]
    assert (stored["from_address"], stored["to"]) == (
        "karen jensen karen@home.example",
        ["<>", "ole@acme.example"],
    )
    assert stored["matched"] == {("ole@acme.example", "to")}


async def test_an_erased_recipient_among_several_is_redacted_and_matches_nobody(
    read_model: ReadModel,
) -> None:
    read_model.erased_hashes.add(address_hash(KEY, "karen@home.example"))
    sent = email("<m5>", "ole@acme.example", to=["Ole <ole@acme.example>, Karen@Home.example"])
    await handlers.apply_email(Conn(), sent, KEY)
    stored = read_model.emails["<m5>"]
    assert (stored["to"], stored["subject"]) == (["ole@acme.example", c.ERASED], c.ERASED)
    assert stored["matched"] == {("ole@acme.example", "from"), ("ole@acme.example", "to")}


# ------------------------------------------------------------- the family handler


class Pool:
    """A pool handing out fake connections to the read model."""

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model

    async def acquire(self) -> Conn:
        return Conn(self.read_model)

    async def release(self, conn: Any) -> None:
        pass


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, value, {k: v.decode() for k, v in headers}))


def record(event: c.ContactEventBase | bytes, offset: int) -> Any:
    value = event if isinstance(event, bytes) else event.model_dump_json().encode()
    return SimpleNamespace(
        topic="contacts.events", partition=0, offset=offset, key=b"k", value=value
    )


def worker(read_model: ReadModel) -> tuple[Worker, Producer]:
    settings = KontaktSettings(projection_max_attempts=2, contacts_topic="contacts.events")
    w = Worker(settings, Pool(read_model), ["contacts"])
    w.producer = Producer()
    return w, w.producer


async def test_a_batch_is_applied_and_counted(read_model: ReadModel) -> None:
    w, producer = worker(read_model)
    first = created()
    second = archived(model.apply(None, first))
    await w.process_batch("contacts", [record(first, 0), record(second, 1)], w.routes)
    assert read_model.rows[first.contact_id].status == "archived"
    assert (w.stats.applied, w.stats.dead_lettered, producer.sent) == (2, 0, [])


async def test_one_bad_record_of_a_batch_is_dead_lettered_alone(read_model: ReadModel) -> None:
    w, producer = worker(read_model)
    before, after = created(), created()
    batch = [record(before, 0), record(b'{"type": "Nonsense"}', 1), record(after, 2)]
    await w.process_batch("contacts", batch, w.routes)
    assert set(read_model.rows) == {before.contact_id, after.contact_id}
    [(topic, value, headers)] = producer.sent
    assert (topic, value) == (w.settings.dead_letter_topic, b'{"type": "Nonsense"}')
    assert (headers["x-original-offset"], headers["x-family"]) == ("1", "contacts")
    assert headers["x-error"].startswith("Poison: not a contact event")
    assert (w.stats.applied, w.stats.dead_lettered) == (2, 1)


async def test_a_duplicate_is_counted_as_one(read_model: ReadModel) -> None:
    w, _ = worker(read_model)
    first = created()
    await w.process_batch("contacts", [record(first, 0), record(first, 1)], w.routes)
    assert (w.stats.applied, w.stats.duplicates) == (1, 1)
