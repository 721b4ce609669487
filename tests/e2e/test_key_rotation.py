"""Rotating the master key with `kontakt keys rotate`."""

from __future__ import annotations

import base64
from uuid import uuid4

import psycopg
from pydantic import SecretStr

from devstack import stack as launcher
from services.contacts.domain import Actor
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.settings import KontaktSettings
from tests.support import run_kontakt


def test_master_key_rotation_rewraps_keys_and_old_key_can_go(
    stack: launcher.StackInfo, settings: KontaktSettings, settings_env: dict[str, str]
) -> None:
    database = "kontakt_test_rotation"
    with psycopg.connect(stack.pg_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
    launcher.ensure_database(stack, database)
    old = settings.model_copy(update={"pg_database": database})
    app = build_contacts_app(old)
    try:
        created = app.create_contact(
            Actor("a", "c"),
            company_id=uuid4(),
            company_name="R",
            details={"first_names": "Rot", "last_names": "Ate"},
        )
    finally:
        close_contacts_app(app)
    new_key = base64.b64encode(b"N" * 32).decode()
    env = {
        **settings_env,
        "KONTAKT_PG_DATABASE": database,
        "KONTAKT_MASTER_KEY": new_key,
        "KONTAKT_MASTER_KEYS_PREVIOUS": old.master_key.get_secret_value(),
    }
    run = run_kontakt(env, "keys", "rotate")
    assert run.returncode == 0 and "re-wrapped 1 person keys" in run.stdout, run.stderr
    rotated = old.model_copy(update={"master_key": SecretStr(new_key)})
    app = build_contacts_app(rotated)
    try:
        assert app.get_contact(created.contact_id).first_names == "Rot"
    finally:
        close_contacts_app(app)
    bad = run_kontakt({**env, "KONTAKT_MASTER_KEY": "short"}, "keys", "rotate")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "error:" in bad.stderr
