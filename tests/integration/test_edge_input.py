"""Hostile and careless input to the contacts API over HTTP, on the real PostgreSQL: every
case answers 4xx with the one error body, and nothing bad reaches the event store."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from services.contacts.domain import DETAIL_FIELDS
from tests.images import image_bytes


def new_contact(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {
        "company_id": str(uuid4()),
        "company_name": "Acme A/S",
        "first_names": f"Karen {uuid4().hex[:8]}",
        "last_names": "Jensen",
        **fields,
    }
    response = client.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return {**response.json(), "company_id": body["company_id"]}


def assert_error_body(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def raw(client: TestClient, method: str, path: str, text: str) -> Any:
    """Send a body exactly as written (json= cannot carry a lone surrogate or NaN)."""
    headers = {"Content-Type": "application/json"}
    return client.request(method, path, content=text.encode(), headers=headers)


# Each command, with a valid body (as JSON text) and the text fields it has.
_CREATE = json.dumps(
    {"company_id": str(uuid4()), "company_name": "Acme", "first_names": "A", "last_names": "B"}
)
COMMANDS: list[tuple[str, str, str, list[str]]] = [
    (
        "POST",
        "",
        _CREATE,
        ["company_name", *DETAIL_FIELDS],
    ),
    ("PATCH", "/{id}", "{}", ["first_names", "last_names", "job_title", "work_email"]),
    (
        "POST",
        "/{id}/job-changes",
        json.dumps({"company_id": str(uuid4()), "company_name": "Beta"}),
        ["company_name", "job_title", "department", "work_email", "work_phone"],
    ),
    ("POST", "/{id}/employment-corrections", '{"company_name": "Acme"}', ["company_name"]),
    ("PUT", "/{id}/outlook-sync/me", '{"enabled": true}', ["reason"]),
    ("POST", "/{id}/infotags", '{"tag": "vip"}', ["tag"]),
    ("POST", "/{id}/archive", "{}", ["reason"]),
    ("POST", "/{id}/erase", '{"reason": "asked"}', ["reason"]),
]
VALID = {"work_email": "kj@acme.example", "private_email": "kj@home.example"}
VALID |= {"work_phone": "+45 12 34 56 78", "private_phone": "+45 87 65 43 21"}

CASES = [
    pytest.param(method, path, body, field, escape, id=f"{method} {path or '/'} {field} {name}")
    for method, path, body, fields in COMMANDS
    for field in fields
    for name, escape in (("NUL", "\\u0000"), ("lone surrogate", "\\udc00"))
]


@pytest.fixture(scope="module")
def target(client: TestClient) -> str:
    """A contact the commands are aimed at (none of them may change it)."""
    return str(new_contact(client)["contact_id"])


@pytest.mark.parametrize(("method", "path", "body", "field", "escape"), CASES)
def test_nul_and_lone_surrogate_in_every_field_of_every_command_are_refused(
    client: TestClient,
    target: str,
    admin: dict[str, str],
    method: str,
    path: str,
    body: str,
    field: str,
    escape: str,
) -> None:
    value = VALID.get(field, "Karen")
    document = json.loads(body)
    document[field] = "@@"  # placeholder, replaced by the escaped value as JSON text
    text = json.dumps(document).replace('"@@"', f'"{value[:2]}{escape}{value[2:]}"')
    response = client.request(
        method,
        f"/contacts{path.format(id=target)}",
        content=text.encode(),
        headers={"Content-Type": "application/json", **admin},
    )
    error = assert_error_body(response, 422)
    assert [e["field"] for e in error["errors"]] == [f"body.{field}"]
    assert client.get(f"/contacts/{target}").json()["version"] == 1


@pytest.fixture(scope="module")
def admin(settings: Any) -> dict[str, str]:
    from shared.auth import mint_token

    return {"Authorization": f"Bearer {mint_token(settings, 'root', ['admin'])}"}


@pytest.mark.parametrize(
    ("text", "status"),
    [
        pytest.param('{"company_name": ', 400, id="malformed JSON"),
        pytest.param("NaN", 400, id="NaN"),
        pytest.param('{"company_id": Infinity}', 400, id="Infinity"),
        pytest.param('{"first_names": 1e999}', 400, id="overflowing number"),
        pytest.param('{"\\ud800": 1}', 422, id="lone surrogate in a key"),
        pytest.param('["\\udfff"]', 422, id="lone surrogate in a list"),
        pytest.param("[" * 100_000 + "]" * 100_000, 400, id="deep nesting"),
    ],
)
def test_unparsable_or_strange_json_is_4xx_with_the_error_body(
    client: TestClient, text: str, status: int
) -> None:
    assert_error_body(raw(client, "POST", "/contacts", text), status)


def test_invalid_utf8_is_400(client: TestClient) -> None:
    body = b'{"first_names": "\xed\xa0\x80"}'  # a surrogate encoded as UTF-8 bytes
    response = client.post("/contacts", content=body, headers={"Content-Type": "application/json"})
    assert_error_body(response, 400)


def test_a_lone_surrogate_in_a_date_or_uuid_is_422_without_echo(client: TestClient) -> None:
    response = raw(
        client, "POST", "/contacts", '{"company_id": "\\ud800", "started_on": "\\ud800"}'
    )
    error = assert_error_body(response, 422)
    assert {"body.company_id", "body.started_on"} <= {e["field"] for e in error["errors"]}
    response.content.decode("utf-8")  # the body is valid UTF-8


def test_refused_characters_in_path_parameters_and_headers_are_422(
    client: TestClient, target: str, settings: Any
) -> None:
    from shared.auth import mint_token

    response = client.delete(f"/contacts/{target}/infotags/a%00b")
    assert [e["field"] for e in assert_error_body(response, 422)["errors"]] == ["path.tag"]
    sync = {"Authorization": f"Bearer {mint_token(settings, 'sync', ['outlook-sync'])}"}
    response = client.put(
        f"/contacts/{target}/outlook-sync/users/bo%C2%85b",
        json={"enabled": False, "reason": "deleted in Outlook"},
        headers=sync,
    )
    assert [e["field"] for e in assert_error_body(response, 422)["errors"]] == ["path.user_id"]
    # Bytes 0x80-0xff pass HTTP's header rules; U+0085 is a C1 control.
    response = client.post(
        f"/contacts/{target}/infotags",
        json={"tag": "vip"},
        headers={"X-Correlation-ID": b"abc\x85"},
    )
    error = assert_error_body(response, 422)
    assert [e["field"] for e in error["errors"]] == ["header.x-correlation-id"]
    assert response.headers["x-correlation-id"] != "abc\x85"


def test_a_zero_width_look_alike_is_refused_as_a_duplicate(client: TestClient) -> None:
    company = str(uuid4())
    first = new_contact(client, company_id=company, first_names="Karen", last_names="Jensen")
    response = client.post(
        "/contacts",
        json={
            "company_id": company,
            "company_name": "Acme A/S",
            "first_names": "Ka\u200bren\u200d",
            "last_names": "Jen\u00adsen",
        },
    )
    error = assert_error_body(response, 409)
    assert error["field"] == "name" and error["existing_contact_id"] == first["contact_id"]
    other = new_contact(client, work_email="look@alike.example")
    response = client.post(
        "/contacts",
        json={
            "company_id": str(uuid4()),
            "company_name": "Beta",
            "first_names": "Lars",
            "last_names": "Berg",
            "work_email": "look\u200b@alike.example",
        },
    )
    assert assert_error_body(response, 409)["existing_contact_id"] == other["contact_id"]


@pytest.mark.parametrize(
    "invisible",
    ["\u034f", "\u061c", "\u3164", "\uffa0", "\u180b", "\ufe0f", "\U000e0041"],
    ids=[
        "grapheme-joiner",
        "arabic-letter-mark",
        "hangul-filler",
        "halfwidth-filler",
        "mongolian-selector",
        "variation-selector",
        "tag-character",
    ],
)
def test_a_look_alike_made_with_any_default_ignorable_character_is_refused_as_a_duplicate(
    client: TestClient, invisible: str
) -> None:
    company = str(uuid4())
    address = f"{uuid4().hex[:8]}@ignorable.example"
    first = new_contact(
        client, company_id=company, first_names="Karen", last_names="Jensen", work_email=address
    )
    name = {"company_id": company, "company_name": "Acme A/S", "last_names": "Jensen"}
    response = client.post("/contacts", json={**name, "first_names": f"Karen{invisible}"})
    error = assert_error_body(response, 409)
    assert error["field"] == "name" and error["existing_contact_id"] == first["contact_id"]
    local, domain = address.split("@")
    response = client.post(
        "/contacts",
        json={**name, "first_names": "Lars", "work_email": f"{local}{invisible}@{domain}"},
    )
    assert assert_error_body(response, 409)["existing_contact_id"] == first["contact_id"]


def test_invisible_characters_are_removed_from_what_is_stored(client: TestClient) -> None:
    created = new_contact(client, job_title="\ufeffBuyer\u200b")
    assert client.get(f"/contacts/{created['contact_id']}").json()["job_title"] == "Buyer"


def test_a_truncated_jpeg_is_415_and_photo_reads_say_nosniff(client: TestClient) -> None:
    cid = new_contact(client)["contact_id"]
    jpeg = image_bytes("JPEG", (64, 64))
    truncated = client.put(f"/contacts/{cid}/photo", content=jpeg[: len(jpeg) // 2])
    assert_error_body(truncated, 415)
    assert client.get(f"/contacts/{cid}").json()["photo"] is None
    assert client.put(f"/contacts/{cid}/photo", content=jpeg).status_code == 200
    photo = client.get(f"/contacts/{cid}/photo")
    assert photo.status_code == 200 and photo.content == jpeg
    assert photo.headers["x-content-type-options"] == "nosniff"


def test_a_json_body_over_the_limit_is_413(client: TestClient, settings: Any) -> None:
    padding = "x" * settings.max_body_bytes
    response = client.post("/contacts", json={"company_name": padding})
    assert_error_body(response, 413)

    def chunks() -> Any:  # no Content-Length: the limit is counted as the body streams
        yield b'{"company_name": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        "/contacts", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error_body(response, 413)


def test_unknown_routes_and_methods_answer_the_error_body(client: TestClient) -> None:
    assert_error_body(client.get("/nowhere"), 404)
    assert_error_body(client.request("TRACE", "/contacts"), 405)


def test_an_unexpected_failure_is_500_with_the_error_body_and_no_detail_leaked(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from services.contacts.api_main import create_app

    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals \x00")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    assert assert_error_body(response, 500) == {"detail": "internal error"}
    assert "secret internals" in caplog.text  # logged, not sent


def test_postgresql_shutting_down_under_a_key_lookup_is_503_not_500(settings: Any) -> None:
    import psycopg

    from services.contacts.api_main import create_app

    app = create_app(settings)

    @app.get("/shutting-down")
    def shutting_down() -> None:
        # What the person-key store's psycopg connection raises while PostgreSQL restarts.
        raise psycopg.errors.AdminShutdown("terminating connection due to administrator command")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/shutting-down")
    assert assert_error_body(response, 503)["detail"] == "database unavailable, try again"
