"""The schema has one definition: the migrations; no module runs DDL of its own."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import services
import shared
from shared.migrations import PACKAGES

DDL = re.compile(r"\b(CREATE|ALTER|DROP)\s+(TABLE|INDEX|UNIQUE\s+INDEX|SCHEMA|EXTENSION|VIEW)\b")

#: The only modules allowed DDL: the rebuild's copy of the live tables and its schema swap.
REBUILD = {"services/projections/sql/contacts.py", "services/projections/rebuild.py"}


def test_no_module_outside_the_migrations_and_the_rebuild_runs_ddl() -> None:
    roots = [Path(services.__file__).parent, Path(shared.__file__).parent]
    found = {
        f"{path.relative_to(root.parent)}:{number}"
        for root in roots
        for path in root.rglob("*.py")
        if str(path.relative_to(root.parent)) not in REBUILD
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DDL.search(line)
    }

    assert found == set()


def test_migration_names_are_unique_across_services() -> None:
    # yoyo knows a migration by its file name alone.
    names = [
        path.name.removesuffix(".sql")
        for package in PACKAGES
        for path in (resources.files(package) / "migrations").iterdir()
        if path.name.endswith(".sql")
    ]

    assert len(names) >= len(PACKAGES)
    assert len(set(names)) == len(names), names
