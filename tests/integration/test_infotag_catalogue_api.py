"""The infotag catalogue through the contacts API on the real PostgreSQL: admins manage the
tree, contacts carry catalogue tags by id."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient

from devstack.demo import TAG_PATHS, _define_tags
from services.contacts.export import StoreReader
from services.contacts.store import INFOTAG_BACKFILL, backfill_infotags_once
from shared.settings import KontaktSettings
from tests.integration.test_contacts_api import new_contact


@pytest.fixture
def admin(token_for: Any) -> dict[str, str]:
    """Headers of a user with the admin role."""
    return {"Authorization": f"Bearer {token_for('root', ['admin'])}"}


def define(
    client: TestClient, admin: dict[str, str], name: str, parent_id: str | None = None
) -> dict[str, Any]:
    response = client.post("/infotags", json={"name": name, "parent_id": parent_id}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def unique(name: str) -> str:
    """A root name no other test uses (the catalogue is one for the whole database)."""
    return f"{name} {uuid4().hex[:8]}"


def test_a_defined_tree_lists_with_paths_and_who_defined_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    root = define(client, admin, unique("Kunde"))
    child = define(client, admin, "Guld", root["tag_id"])
    assert child["path"] == f"{root['name']}/Guld" and child["defined_by"] == "root"
    listed = {n["tag_id"]: n for n in client.get("/infotags").json()["infotags"]}
    assert listed[child["tag_id"]]["parent_id"] == root["tag_id"]
    assert listed[child["tag_id"]]["active"] is True
    assert client.get(f"/infotags/{child['tag_id']}").json() == listed[child["tag_id"]]


def test_only_admins_change_the_catalogue(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post("/infotags", json={"name": unique("Nope")})
    assert response.status_code == 403, response.text
    tag = define(client, admin, unique("Mine"))
    assert client.patch(f"/infotags/{tag['tag_id']}", json={"name": "x"}).status_code == 403
    assert client.post(f"/infotags/{tag['tag_id']}/deactivate").status_code == 403


def test_sibling_names_are_unique_case_insensitively_and_cycles_are_refused(
    client: TestClient, admin: dict[str, str]
) -> None:
    root = define(client, admin, unique("Branche"))
    child = define(client, admin, "VIP", root["tag_id"])
    taken = client.post(
        "/infotags", json={"name": "vip", "parent_id": root["tag_id"]}, headers=admin
    )
    assert taken.status_code == 409 and child["tag_id"] in taken.json()["detail"]
    cycle = client.patch(
        f"/infotags/{root['tag_id']}", json={"parent_id": child["tag_id"]}, headers=admin
    )
    assert cycle.status_code == 409, cycle.text
    slash = client.post("/infotags", json={"name": "Kunde/Guld"}, headers=admin)
    assert slash.status_code == 422, slash.text


def test_unknown_tags_are_404(client: TestClient, admin: dict[str, str]) -> None:
    unknown = uuid4()
    assert client.get(f"/infotags/{unknown}").status_code == 404
    renamed = client.patch(f"/infotags/{unknown}", json={"name": "x"}, headers=admin)
    assert renamed.status_code == 404
    under = client.post("/infotags", json={"name": "x", "parent_id": str(unknown)}, headers=admin)
    assert under.status_code == 404
    cid = new_contact(client)["contact_id"]
    placed = client.post(f"/contacts/{cid}/infotags", json={"tag_id": str(unknown)})
    assert placed.status_code == 404
    both = client.post(f"/contacts/{cid}/infotags", json={"tag_id": str(unknown), "tag": "x"})
    assert both.status_code == 422


def test_rename_and_move_show_in_the_path(client: TestClient, admin: dict[str, str]) -> None:
    first, second = define(client, admin, unique("Gammel")), define(client, admin, unique("Ny"))
    tag = define(client, admin, "Sølv", first["tag_id"])
    moved = client.patch(
        f"/infotags/{tag['tag_id']}",
        json={"name": "Sølv+", "parent_id": second["tag_id"]},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["path"] == f"{second['name']}/Sølv+"
    to_root = client.patch(f"/infotags/{tag['tag_id']}", json={"parent_id": None}, headers=admin)
    assert to_root.json()["path"] == "Sølv+" and to_root.json()["parent_id"] is None


def test_a_child_named_like_a_path_is_placed_and_removed_by_id(
    client: TestClient, admin: dict[str, str]
) -> None:
    root = define(client, admin, unique("Kunde"))
    gold = define(client, admin, "Guld", root["tag_id"])
    cid = new_contact(client)["contact_id"]
    placed = client.post(f"/contacts/{cid}/infotags", json={"tag_id": gold["tag_id"]})
    assert placed.status_code == 200 and placed.json()["version"] == 2, placed.text
    again = client.post(f"/contacts/{cid}/infotags", json={"tag": gold["path"]})
    assert again.json()["version"] == 2  # the same catalogue tag, by its path
    tags = client.get(f"/contacts/{cid}").json()["infotags"]
    assert [(t["tag"], t["added_by"]) for t in tags] == [(gold["path"], "alice")]
    removed = client.delete(f"/contacts/{cid}/infotags/{gold['tag_id']}")
    assert removed.status_code == 200 and removed.json()["version"] == 3, removed.text
    assert client.get(f"/contacts/{cid}").json()["infotags"] == []
    gone = client.delete(f"/contacts/{cid}/infotags/{gold['tag_id']}")
    assert gone.status_code == 404


def test_an_inactive_tag_stays_on_contacts_and_refuses_new_placements(
    client: TestClient, admin: dict[str, str]
) -> None:
    tag = define(client, admin, unique("Udgået"))
    placed_on = new_contact(client)["contact_id"]
    client.post(f"/contacts/{placed_on}/infotags", json={"tag_id": tag["tag_id"]})
    off = client.post(f"/infotags/{tag['tag_id']}/deactivate", headers=admin)
    assert off.status_code == 200 and off.json()["active"] is False
    other = new_contact(client)["contact_id"]
    refused = client.post(f"/contacts/{other}/infotags", json={"tag_id": tag["tag_id"]})
    assert refused.status_code == 409 and "inactive" in refused.json()["detail"]
    assert [t["tag"] for t in client.get(f"/contacts/{placed_on}").json()["infotags"]] == [
        tag["name"]
    ]
    assert client.post(f"/infotags/{tag['tag_id']}/reactivate", headers=admin).json()["active"]
    again = client.post(f"/contacts/{other}/infotags", json={"tag_id": tag["tag_id"]})
    assert again.status_code == 200, again.text


def test_catalogue_events_stay_off_the_contacts_topic(
    client: TestClient, admin: dict[str, str]
) -> None:
    reader = StoreReader(client.app.state.contacts)  # type: ignore[attr-defined]
    before = reader.max_position()
    define(client, admin, unique("Intern"))
    events, last = reader.read(before, 100)
    assert last is not None and last > before
    assert [e for e in events if e.type.startswith("Infotag")] == []


def test_published_placements_name_the_catalogue_tag_and_its_path(
    client: TestClient, admin: dict[str, str]
) -> None:
    reader = StoreReader(client.app.state.contacts)  # type: ignore[attr-defined]
    tag = define(client, admin, unique("Partner"))
    cid = new_contact(client)["contact_id"]
    before = reader.max_position()
    client.post(f"/contacts/{cid}/infotags", json={"tag_id": tag["tag_id"]})
    client.delete(f"/contacts/{cid}/infotags/{tag['tag_id']}")
    client.post(f"/contacts/{cid}/infotags", json={"tag": "free text"})
    events, _ = reader.read(before, 100)
    assert [(e.type, e.data.tag, e.data.tag_id) for e in events] == [  # type: ignore[attr-defined]
        ("InfotagAdded", tag["name"], UUID(tag["tag_id"])),
        ("InfotagRemoved", tag["name"], UUID(tag["tag_id"])),
        ("InfotagAdded", "free text", None),
    ]


def test_names_placed_before_the_catalogue_are_carried_into_it_once(
    client: TestClient, settings: KontaktSettings
) -> None:
    contacts = client.app.state.contacts  # type: ignore[attr-defined]
    root = unique("Kunde")
    cid = new_contact(client)["contact_id"]
    # A path the catalogue does not know yet: placed by name, as before the catalogue.
    client.post(f"/contacts/{cid}/infotags", json={"tag": f"{root}/Guld"})
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM contacts_backfills WHERE name = %s", (INFOTAG_BACKFILL,))
    assert (backfill_infotags_once(contacts, settings) or 0) >= 2  # the child and its parent
    assert backfill_infotags_once(contacts, settings) is None  # recorded as done
    by_path = {n["path"]: n for n in client.get("/infotags").json()["infotags"]}
    gold = by_path[f"{root}/Guld"]
    assert gold["parent_id"] == by_path[root]["tag_id"] and gold["defined_by"] == "system"
    # The placement by name is the catalogue tag's: removed by its id.
    removed = client.delete(f"/contacts/{cid}/infotags/{gold['tag_id']}")
    assert removed.status_code == 200, removed.text
    assert client.get(f"/contacts/{cid}").json()["infotags"] == []


def test_the_demo_defines_its_catalogue_once(client: TestClient, admin: dict[str, str]) -> None:
    first = _define_tags(client, admin)
    assert _define_tags(client, admin) == first
    nodes = {n["tag_id"]: n for n in client.get("/infotags").json()["infotags"]}
    assert [nodes[first[p]]["path"] for p in TAG_PATHS] == list(TAG_PATHS)
