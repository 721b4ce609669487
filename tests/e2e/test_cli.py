"""The kontakt command line on real data: history, as-of, replay, status, and its errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from services.contacts.api_main import create_app
from services.contacts.domain import Actor
from services.contacts.store import build_contacts_app, close_contacts_app
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, run_kontakt

ALICE = Actor("alice", "cli-corr")


@pytest.fixture
def data(isolated_settings: KontaktSettings) -> Iterator[dict[str, UUID]]:
    app = build_contacts_app(isolated_settings)
    try:
        acme, beta = uuid4(), uuid4()
        karen = app.create_contact(
            ALICE,
            company_id=acme,
            company_name="Acme",
            details={"first_names": "Karen", "last_names": "Jensen", "job_title": "Buyer"},
        )
        app.change_details(ALICE, karen.contact_id, {"job_title": "Head buyer"})
        app.add_infotag(Actor("bob", "c2"), karen.contact_id, "VIP")
        _, new = app.change_job(
            ALICE,
            karen.contact_id,
            company_id=beta,
            company_name="Beta",
            job={"job_title": "CFO"},
            effective_on=date(2026, 2, 1),
        )
        ole = app.create_contact(
            ALICE,
            company_id=beta,
            company_name="Beta",
            details={"first_names": "Ole", "last_names": "Hansen"},
        )
        yield {
            "karen": karen.contact_id,
            "karen_new": new.contact_id,
            "ole": ole.contact_id,
            "person": karen.person_id,
            "acme": acme,
            "beta": beta,
        }
    finally:
        close_contacts_app(app)


def test_history_lists_every_event_with_who_and_what(isolated_settings, data) -> None:
    env = env_of(isolated_settings)
    out = run_kontakt(env, "history", str(data["karen"]))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split()[3] for line in lines] == [
        "ContactCreated",
        "ContactDetailsChanged",
        "InfotagAdded",
        "JobChanged",
    ]
    assert "by bob via api" in lines[2] and "job_title: Buyer -> Head buyer" in lines[1]
    as_json = run_kontakt(env, "history", str(data["karen"]), "--json")
    assert [json.loads(x)["version"] for x in as_json.stdout.splitlines()] == [1, 2, 3, 4]


def test_as_of_a_version_and_a_date(isolated_settings, data) -> None:
    env = env_of(isolated_settings)
    v1 = run_kontakt(env, "as-of", str(data["karen"]), "1")
    assert v1.returncode == 0 and json.loads(v1.stdout)["job_title"] == "Buyer"
    today = run_kontakt(env, "as-of", str(data["karen"]), "2999-01-01")
    assert json.loads(today.stdout)["status"] == "former"
    early = run_kontakt(env, "as-of", str(data["karen"]), "2000-01-01")
    assert early.returncode == 1 and "did not exist yet" in early.stderr


def test_history_and_as_of_follow_an_undone_job_change(isolated_settings, data) -> None:
    app = build_contacts_app(isolated_settings)
    try:
        app.undo_job_change(ALICE, data["karen_new"])
    finally:
        close_contacts_app(app)
    env = env_of(isolated_settings)
    former = run_kontakt(env, "history", str(data["karen"]))
    assert former.returncode == 0, former.stderr
    assert [line.split()[3] for line in former.stdout.strip().splitlines()][-2:] == [
        "JobChanged",
        "JobChangeUndone",
    ]
    withdrawn = run_kontakt(env, "history", str(data["karen_new"]))
    assert [line.split()[3] for line in withdrawn.stdout.strip().splitlines()] == [
        "ContactCreated",
        "JobChangeWithdrawn",
    ]
    while_former = json.loads(run_kontakt(env, "as-of", str(data["karen"]), "4").stdout)
    assert while_former["status"] == "former"
    now = json.loads(run_kontakt(env, "as-of", str(data["karen"]), "2999-01-01").stdout)
    assert (now["status"], now["company_name"], now["job_title"]) == (
        "current",
        "Acme",
        "Head buyer",
    )
    assert now["successor_id"] is None and now["version"] == 5
    gone = json.loads(run_kontakt(env, "as-of", str(data["karen_new"]), "2999-01-01").stdout)
    assert gone["status"] == "withdrawn"
    as_cfo = json.loads(run_kontakt(env, "as-of", str(data["karen_new"]), "1").stdout)
    assert (as_cfo["status"], as_cfo["job_title"]) == ("current", "CFO")


def test_as_of_today_means_the_same_through_the_api_and_the_command_line(
    isolated_settings: KontaktSettings,
) -> None:
    with TestClient(create_app(isolated_settings)) as client:
        client.headers["Authorization"] = f"Bearer {mint_token(isolated_settings, 'alice')}"
        created = client.post(
            "/contacts",
            json={
                "company_id": str(uuid4()),
                "company_name": "Acme A/S",
                "first_names": "Sofie",
                "last_names": "Dag",
            },
        ).json()
        cid = created["contact_id"]
        assert client.patch(f"/contacts/{cid}", json={"job_title": "Buyer"}).status_code == 200
        today = datetime.now(UTC).date().isoformat()
        by_api = client.get(f"/contacts/{cid}/as-of", params={"at": today})
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        before = client.get(f"/contacts/{cid}/as-of", params={"at": yesterday})
    by_cli = run_kontakt(env_of(isolated_settings), "as-of", cid, today)
    assert by_api.status_code == 200, by_api.text
    assert by_cli.returncode == 0, by_cli.stderr
    api_state, cli_state = by_api.json(), json.loads(by_cli.stdout)
    # Created and changed today, as of today: its last change of the day, through both.
    assert api_state["version"] == cli_state["version"] == 2
    assert api_state["job_title"] == cli_state["job_title"] == "Buyer"
    assert api_state["id"] == cli_state["id"] == cid
    assert before.status_code == 404
    early = run_kontakt(env_of(isolated_settings), "as-of", cid, yesterday)
    assert early.returncode == 1 and "did not exist yet" in early.stderr


def test_replay_filters_formats_and_resumes(isolated_settings, data, tmp_path: Path) -> None:
    env = env_of(isolated_settings)
    everything = run_kontakt(env, "replay")
    events = [json.loads(x) for x in everything.stdout.splitlines()]
    assert len(events) == 6 and "resume with --from-position" in everything.stderr
    positions = [e["global_position"] for e in events]
    assert positions == sorted(positions)

    by_type = run_kontakt(env, "replay", "--type", "JobChanged", "--type", "InfotagAdded")
    assert sorted(json.loads(x)["type"] for x in by_type.stdout.splitlines()) == [
        "InfotagAdded",
        "JobChanged",
    ]
    by_person = run_kontakt(env, "replay", "--person", str(data["person"]))
    assert len(by_person.stdout.splitlines()) == 5
    by_contact = run_kontakt(env, "replay", "--contact", str(data["ole"]))
    assert len(by_contact.stdout.splitlines()) == 1
    by_company = run_kontakt(env, "replay", "--company", str(data["beta"]))
    assert {json.loads(x)["contact_id"] for x in by_company.stdout.splitlines()} == {
        str(data["karen_new"]),
        str(data["ole"]),
    }
    window = run_kontakt(env, "replay", "--since", "2000-01-01", "--until", "2000-12-31")
    assert window.stdout == ""

    # CSV, to a file.
    table = tmp_path / "events.csv"
    as_csv = run_kontakt(env, "replay", "--format", "csv", "-o", str(table), "--batch", "3")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert [int(r["global_position"]) for r in rows] == positions
    assert json.loads(rows[0]["data"])["first_names"] == "Karen"

    # Resumable: a second run from the first's last position appends only what is new.
    stream = tmp_path / "events.jsonl"
    first = run_kontakt(env, "replay", "-o", str(stream))
    last = int(first.stderr.rsplit("--from-position", 1)[1])
    app = build_contacts_app(isolated_settings)
    try:
        app.add_infotag(ALICE, data["ole"], "Later")
    finally:
        close_contacts_app(app)
    run_kontakt(env, "replay", "-o", str(stream), "--from-position", str(last))
    got = [json.loads(x) for x in stream.read_text().splitlines()]
    assert len(got) == len(events) + 1 and got[-1]["type"] == "InfotagAdded"
    # "Later" is in no catalogue, so the placement is by name alone.
    assert got[-1]["data"]["tag"] == "Later" and got[-1]["data"].get("tag_id") is None
    assert len({e["event_id"] for e in got}) == len(got)


def test_status_reports_relay_groups_read_models_and_sync(isolated_settings, data) -> None:
    out = run_kontakt(env_of(isolated_settings), "status")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["store"]["newest_position"] >= 6
    assert report["relay"]["lag"] == report["store"]["newest_position"]  # no relay ran here
    assert {"read_models", "consumer_lag", "sync"} <= report.keys()


def test_errors_are_one_clear_line_and_a_non_zero_exit(isolated_settings, data) -> None:
    env = env_of(isolated_settings)
    cases = [
        (("history", "not-an-id"), "not an id"),
        (("history", str(uuid4())), "not found"),
        (("as-of", str(data["karen"]), "yesterday"), "not a date"),
        (("as-of", str(data["karen"]), "99"), "not found"),
        (("replay", "--since", "31/12/2026"), "not a date"),
        (("replay", "--type", "Nope"), "unknown event type"),
        (("replay", "--format", "xml"), "unknown format"),
    ]
    for args, expected in cases:
        out = run_kontakt(env, *args)
        assert out.returncode == 1, (args, out.stdout)
        assert out.stderr.startswith("error: ") and expected in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    down = {**env, "KONTAKT_PG_PORT": "1"}
    # (status still answers with PostgreSQL down: see test_consumer_health.py)
    for args in (("history", str(data["karen"])), ("replay",)):
        out = run_kontakt(down, *args)
        assert out.returncode == 1 and "cannot reach PostgreSQL" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
