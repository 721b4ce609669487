"""Hostile and careless input to the query API, through the whole pipeline on the real servers."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.pipeline import Pipeline, pipeline


async def create(p: Pipeline, **fields: Any) -> dict[str, Any]:
    body = {
        "company_id": str(uuid4()),
        "company_name": "Acme A/S",
        "first_names": "Karen",
        "last_names": "Jensen",
        **fields,
    }
    response = await p.command.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def error_body(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body["detail"], str)
    return body


async def test_query_parameters_refuse_nul_and_like_wildcards_match_themselves(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        await create(p, first_names="Karen", last_names="Jensen")
        await create(p, first_names="Ole", last_names="100%_Hansen")
        tagged = await create(p, first_names="Lis", last_names="Berg")
        await p.command.post(f"/contacts/{tagged['contact_id']}/infotags", json={"tag": "vip"})
        await p.settle()
        everyone = (await p.query.get("/contacts")).json()
        assert everyone["total"] == 3
        # "%" and "_" are characters to look for, not wildcards.
        assert (await p.query.get("/contacts", params={"name": "%"})).json()["total"] == 0
        assert (await p.query.get("/contacts", params={"name": "_"})).json()["total"] == 0
        found = (await p.query.get("/contacts", params={"name": "100%_"})).json()
        assert [c["last_names"] for c in found["items"]] == ["100%_Hansen"]
        assert (await p.query.get("/contacts", params={"name": "kar"})).json()["total"] == 1
        for name, value in [("name", "a\x00b"), ("infotag", "v\x00ip"), ("name", "\x85")]:
            body = error_body(await p.query.get("/contacts", params={name: value}), 422)
            assert [e["field"] for e in body["errors"]] == [f"query.{name}"]
        tags = (await p.query.get("/contacts", params={"infotag": "vip"})).json()
        assert [c["contact_id"] for c in tags["items"]] == [tagged["contact_id"]]
        # Only separators name no tag: refused, not "every contact".
        for nothing in ["/", "//", " / "]:
            error_body(await p.query.get("/contacts", params={"infotag": nothing}), 422)
        error_body(await p.query.get("/contacts", params={"status": "nope"}), 422)
        error_body(await p.query.get("/contacts", params={"limit": "1e999"}), 422)


async def test_query_errors_have_the_one_body_and_photos_say_nosniff(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        created = await create(p)
        cid = created["contact_id"]
        png = image_bytes("PNG", (5, 5))
        assert (await p.command.put(f"/contacts/{cid}/photo", content=png)).status_code == 200
        await p.settle()
        error_body(await p.query.get(f"/contacts/{cid}", headers={"Authorization": ""}), 401)
        error_body(await p.query.get(f"/contacts/{uuid4()}"), 404)
        error_body(await p.query.get("/contacts/not-a-uuid"), 422)
        not_yet = error_body(await p.query.get(f"/contacts/{cid}?min_version=99"), 412)
        assert not_yet["wanted_version"] == 99 and not_yet["current_version"] == 2
        photo = await p.query.get(f"/contacts/{cid}/photo")
        assert photo.status_code == 200 and photo.content == png
        assert photo.headers["x-content-type-options"] == "nosniff"
        metrics = await p.query.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")


def test_postgresql_shutting_down_is_503_on_the_query_api_not_500(settings: Any) -> None:
    import asyncpg
    from fastapi.testclient import TestClient

    from services.projections.query_main import create_query_app

    app = create_query_app(settings)

    @app.get("/shutting-down")
    async def shutting_down() -> None:
        # What asyncpg raises for a new connection while PostgreSQL restarts.
        raise asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/shutting-down")
    assert response.status_code == 503
    assert response.json() == {"detail": "read models unavailable, try again"}
