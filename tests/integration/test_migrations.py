"""The schema under versioned migrations, on the real PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg.rows import dict_row
from typer.testing import CliRunner
from yoyo import get_backend, read_migrations

from services.cli import app
from services.projections.sql import contacts as contacts_sql
from shared.migrations import migrate, sources
from shared.settings import KontaktSettings
from tests.support import env_of, migration_ids

HERE = Path(__file__).parent
#: The tables as the version before migrations made them, and some rows in them.
PREVIOUS_TABLES = HERE / "previous_schema" / "tables.sql"
PREVIOUS_ROWS = HERE / "previous_schema" / "rows.sql"
#: A migration set of the tests, applied after the real ones.
ADDED = str(HERE / "added_migrations")

NewDatabase = Callable[[], KontaktSettings]


@pytest.fixture
def new_database(settings: KontaktSettings) -> Iterator[NewDatabase]:
    """Makes empty databases (dropped after the test); settings pointing at each."""
    admin = settings.model_copy(update={"pg_database": "postgres"}).pg_dsn()
    made: list[str] = []

    def make() -> KontaktSettings:
        name = f"kontakt_m_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{settings.pg_user}"')
        made.append(name)
        return settings.model_copy(update={"pg_database": name})

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _previous_version(settings: KontaktSettings, *, rows: bool) -> None:
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute(PREVIOUS_TABLES.read_text())
        if rows:
            conn.execute(PREVIOUS_ROWS.read_text())


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        " WHERE table_schema IN ('public', 'rm', 'ledger') AND table_name NOT LIKE '%yoyo%'"
    ).fetchall()
    return {r[0] for r in rows}


def _schema(dsn: str) -> dict[str, set[tuple[Any, ...]]]:
    """Every column, index and constraint of our tables (yoyo's own left out)."""
    ours = "n.nspname IN ('public', 'rm', 'ledger', 'rm_build') AND t.relname NOT LIKE '%yoyo%'"
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "SELECT n.nspname, t.relname, a.attname, format_type(a.atttypid, a.atttypmod),"
            " a.attnotnull, pg_get_expr(d.adbin, d.adrelid)"
            " FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            f" WHERE t.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND {ours}"
        ).fetchall()
        indexes = conn.execute(
            "SELECT n.nspname, t.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x"
            " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
            f" WHERE {ours}"
        ).fetchall()
        constraints = conn.execute(
            "SELECT n.nspname, t.relname, k.conname, pg_get_constraintdef(k.oid)"
            " FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid"
            f" JOIN pg_namespace n ON n.oid = t.relnamespace WHERE {ours}"
        ).fetchall()
    return {"columns": set(columns), "indexes": set(indexes), "constraints": set(constraints)}


def _later_tables() -> set[str]:
    """Tables made by the migrations after each folder's first revision."""
    return {
        name if "." in name else f"public.{name}"
        for m in read_migrations(*sources())
        if not m.id.startswith("0001_")
        for name in re.findall(r"CREATE TABLE IF NOT EXISTS (\S+) \(", Path(m.path).read_text())
    }


def _first_revisions(dsn: str) -> None:
    """Apply only each folder's first revision, the one that adopts the previous version."""
    backend = get_backend(f"postgresql+psycopg://{dsn.partition('://')[2]}")
    try:
        first = read_migrations(*sources()).filter(lambda m: m.id.startswith("0001_"))
        with backend.lock():
            backend.apply_migrations(backend.to_apply(first))
    finally:
        backend.connection.close()


def _applied(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY migration_id")
        return [r[0] for r in rows.fetchall()]


def test_kontakt_migrate_on_an_empty_database_creates_every_table_and_then_applies_nothing(
    new_database: NewDatabase,
) -> None:
    settings = new_database()
    runner = CliRunner()

    first = runner.invoke(app, ["migrate"], env=env_of(settings))
    second = runner.invoke(app, ["migrate"], env=env_of(settings))

    assert first.exit_code == 0, first.output
    assert first.output.startswith("applied: 0001_contacts_tables, ")
    assert second.exit_code == 0, second.output
    assert second.output.strip() == "applied: none (up to date)"
    previous = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\S+) \(", PREVIOUS_TABLES.read_text()))
    expected = {name if "." in name else f"public.{name}" for name in previous}
    with psycopg.connect(settings.pg_dsn()) as conn:
        assert _tables(conn) == expected | _later_tables()
    assert _applied(settings.pg_dsn()) == sorted(migration_ids())


def test_a_migrated_database_is_started_on_without_yoyo_running_its_set_up(
    new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = new_database()
    migrate(settings.pg_dsn())

    def refused(uri: str) -> None:
        raise AssertionError(f"yoyo's backend set up again for {uri}")

    monkeypatch.setattr("shared.migrations.get_backend", refused)
    assert migrate(settings.pg_dsn()) == []
    with pytest.raises(AssertionError, match="set up again"):
        migrate(settings.pg_dsn(), extra=[ADDED])  # a pending one still goes through yoyo


def test_the_migrations_make_the_tables_the_previous_version_made(
    new_database: NewDatabase,
) -> None:
    migrated, previous = new_database(), new_database()
    _first_revisions(migrated.pg_dsn())
    _previous_version(previous, rows=False)

    assert _schema(migrated.pg_dsn()) == _schema(previous.pg_dsn())


def test_a_database_of_the_previous_version_is_adopted_and_a_later_migration_adds_a_column(
    new_database: NewDatabase,
) -> None:
    settings = new_database()
    _previous_version(settings, rows=True)
    with psycopg.connect(settings.pg_dsn(), row_factory=dict_row) as conn:
        before = conn.execute("SELECT * FROM rm.contacts ORDER BY contact_id").fetchall()
        links = conn.execute("SELECT * FROM sync_links").fetchall()

    applied = migrate(settings.pg_dsn(), extra=[ADDED])

    assert applied == migration_ids([ADDED])
    with psycopg.connect(settings.pg_dsn(), row_factory=dict_row) as conn:
        after = conn.execute("SELECT * FROM rm.contacts ORDER BY contact_id").fetchall()
        assert [{k: row[k] for k in before[0]} for row in after] == before
        assert [row["nickname"] for row in after] == ["", ""]
        # Later migrations may add columns to the links; what was there stays as it was.
        links_after = conn.execute("SELECT * FROM sync_links").fetchall()
        assert [{k: row[k] for k in links[0]} for row in links_after] == links
        assert all(row["pushed_categories"] is None for row in links_after)
        assert conn.execute("SELECT position FROM relay_positions").fetchall() == [{"position": 42}]
        # An address the previous version knew is held from a time on (its contact's
        # creation; the migration's, for these rows without one) and not given up, so it
        # matches every e-mail as before, until a rebuild derives its real interval.
        held = conn.execute(
            "SELECT address, valid_from IS NOT NULL AS since, valid_to FROM rm.contact_addresses"
        ).fetchall()
        assert held == [{"address": "kj@acme.example", "since": True, "valid_to": None}]
    assert migrate(settings.pg_dsn(), extra=[ADDED]) == []


async def test_a_rebuild_copies_the_migrated_live_tables_with_their_columns_and_index_names(
    new_database: NewDatabase,
) -> None:
    settings = new_database()
    migrate(settings.pg_dsn(), extra=[ADDED])  # a column and an index the first revision lacks
    conn = await asyncpg.connect(settings.pg_dsn())
    try:
        await contacts_sql.copy_schema(conn, contacts_sql.LIVE, contacts_sql.BUILD)
    finally:
        await conn.close()

    schema = _schema(settings.pg_dsn())
    for kind, rows in schema.items():
        assert _of(rows, contacts_sql.BUILD) == _of(rows, contacts_sql.LIVE), kind
    assert ("contacts", "nickname", "text", True, "''::text") in _of(
        schema["columns"], contacts_sql.BUILD
    )


async def test_every_gin_index_of_the_read_model_and_of_its_rebuilt_copy_has_a_small_pending_list(
    new_database: NewDatabase,
) -> None:
    settings = new_database()
    migrate(settings.pg_dsn())
    conn = await asyncpg.connect(settings.pg_dsn())
    try:
        await contacts_sql.copy_schema(conn, contacts_sql.LIVE, contacts_sql.BUILD)
        rows = await conn.fetch(
            "SELECT n.nspname, c.relname, c.reloptions FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam"
            " WHERE a.amname = 'gin' AND n.nspname = ANY($1)",
            [contacts_sql.LIVE, contacts_sql.BUILD],
        )
    finally:
        await conn.close()
    assert {r["nspname"] for r in rows} == {contacts_sql.LIVE, contacts_sql.BUILD}
    assert {(r["relname"], tuple(r["reloptions"] or ())) for r in rows} == {
        (r["relname"], ("gin_pending_list_limit=64",)) for r in rows
    }


def _of(rows: set[tuple[Any, ...]], schema: str) -> set[tuple[Any, ...]]:
    """The rows of one schema, its name left out (index definitions name it)."""
    return {
        tuple(v.replace(f" {schema}.", " ") if isinstance(v, str) else v for v in row[1:])
        for row in rows
        if row[0] == schema
    }


async def test_rows_already_there_get_the_search_keys_the_read_model_computes(
    new_database: NewDatabase,
) -> None:
    settings = new_database()
    _previous_version(settings, rows=True)
    names = [
        ("Jørgen  Åse", "ØSTERGAARD", "Købmand", "Salg & Service", "+45 12 34 56 78", None),
        ("Ærling", "Straße-Bœuf", None, "[erased]", "0045 87 65 43 21", "(0)20 7946 0958"),
        ("José", "Ñúñez\u00a0Ångström", "Chef\u0301", None, "123", "12345678"),
    ]
    with psycopg.connect(settings.pg_dsn()) as conn:
        for first, last, title, department, work, private in names:
            conn.execute(
                "INSERT INTO rm.contacts (contact_id, person_id, version, position, status,"
                " company_id, company_name, first_names, last_names, search_text, job_title,"
                " department, work_phone, private_phone, archived, erased, outlook_sync_users)"
                " VALUES (gen_random_uuid(), gen_random_uuid(), 1, 1, 'current',"
                " gen_random_uuid(), 'Bøgh & Søn ApS', %s, %s, 'stale', %s, %s, %s, %s,"
                " false, false, '{}')",
                (first, last, title, department, work, private),
            )

    migrate(settings.pg_dsn())

    conn2 = await asyncpg.connect(settings.pg_dsn())
    try:
        stored = await conn2.fetch(
            "SELECT contact_id, search_text, free_text, phone_digits, phone_tails FROM rm.contacts"
        )
        assert len(stored) == len(names) + 2
        for rec in stored:
            row = await contacts_sql.load_row(conn2, contacts_sql.LIVE, rec["contact_id"])
            assert row is not None
            expected = (row.search_text, row.free_text, row.phone_digits, row.phone_tails)
            assert tuple(rec.values())[1:] == expected, row.first_names
    finally:
        await conn2.close()
