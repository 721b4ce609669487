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
from typer.testing import CliRunner

from services.cli import app
from services.projections.sql import contacts as contacts_sql
from shared.migrations import migrate
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
        assert _tables(conn) == expected
    assert _applied(settings.pg_dsn()) == sorted(migration_ids())


def test_the_migrations_make_the_tables_the_previous_version_made(
    new_database: NewDatabase,
) -> None:
    migrated, previous = new_database(), new_database()
    migrate(migrated.pg_dsn())
    _previous_version(previous, rows=False)
    # The first migrations adopt the previous version's tables as they are (IF NOT EXISTS),
    # so a database of that version ends, once migrated, as a new one does.
    migrate(previous.pg_dsn())

    assert _schema(migrated.pg_dsn()) == _schema(previous.pg_dsn())


def test_a_database_of_the_previous_version_is_adopted_and_a_later_migration_adds_a_column(
    new_database: NewDatabase,
) -> None:
    settings = new_database()
    _previous_version(settings, rows=True)
    with psycopg.connect(settings.pg_dsn()) as conn:
        before = conn.execute("SELECT * FROM rm.contacts ORDER BY contact_id").fetchall()
        links = conn.execute("SELECT * FROM sync_links").fetchall()

    applied = migrate(settings.pg_dsn(), extra=[ADDED])

    assert applied == migration_ids([ADDED])
    with psycopg.connect(settings.pg_dsn()) as conn:
        after = conn.execute("SELECT * FROM rm.contacts ORDER BY contact_id").fetchall()
        assert [row[:-1] for row in after] == before  # the new column comes last
        assert [row[-1] for row in after] == ["", ""]
        assert conn.execute("SELECT * FROM sync_links").fetchall() == links
        assert conn.execute("SELECT position FROM relay_positions").fetchall() == [(42,)]
        # An address the previous version knew is held from a time on (its contact's
        # creation; the migration's, for these rows without one) and not given up, so it
        # matches every e-mail as before, until a rebuild derives its real interval.
        held = conn.execute(
            "SELECT address, valid_from IS NOT NULL, valid_to FROM rm.contact_addresses"
        ).fetchall()
        assert held == [("kj@acme.example", True, None)]
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


def _of(rows: set[tuple[Any, ...]], schema: str) -> set[tuple[Any, ...]]:
    """The rows of one schema, its name left out (index definitions name it)."""
    return {
        tuple(v.replace(f" {schema}.", " ") if isinstance(v, str) else v for v in row[1:])
        for row in rows
        if row[0] == schema
    }
