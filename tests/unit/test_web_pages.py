"""The web UI's pages without the APIs: headers, redirects, errors and its own status."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.web.app import create_web_app
from services.web.i18n import LANGUAGE_COOKIE
from shared.settings import KontaktSettings


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = KontaktSettings(
        contacts_api_url="http://127.0.0.1:9", query_api_url="http://127.0.0.1:9"
    )
    with TestClient(create_web_app(settings)) as started:
        yield started


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_every_page_forbids_framing_and_foreign_scripts(client: TestClient) -> None:
    page = client.get("/sign-in")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_language_switch_sets_its_cookie_and_goes_back(client: TestClient) -> None:
    token = _csrf(client.get("/sign-in").text)
    answer = client.post(
        "/language",
        data={"csrf": token, "lang": "en", "next": "/contacts?name=Ida"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/contacts?name=Ida"
    assert client.cookies.get(LANGUAGE_COOKIE) == "en"
    assert '<html lang="en">' in client.get("/sign-in").text


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/", "/\\evil"])
def test_the_language_switch_never_sends_you_to_another_site(
    client: TestClient, elsewhere: str
) -> None:
    token = _csrf(client.get("/sign-in").text)
    answer = client.post(
        "/language", data={"csrf": token, "lang": "da", "next": elsewhere}, follow_redirects=False
    )
    assert answer.headers["location"] == "/contacts"


def test_pages_need_a_signed_in_user(client: TestClient) -> None:
    answer = client.get("/contacts", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"


def test_an_unknown_page_is_a_404_page_in_the_users_language(client: TestClient) -> None:
    answer = client.get("/no-such-page", headers={"Accept-Language": "en"})
    assert answer.status_code == 404 and "The page does not exist." in answer.text


def test_an_unreachable_api_is_a_503_page_not_a_500(client: TestClient) -> None:
    token = _csrf(client.get("/sign-in").text)
    client.post("/sign-in", data={"csrf": token, "user": "mette"})
    answer = client.get("/contacts", headers={"Accept-Language": "da"})
    assert answer.status_code == 503 and "Tjenesten svarer ikke" in answer.text


def test_the_status_route_names_the_apis_and_the_sign_in(client: TestClient) -> None:
    status = client.get("/status").json()
    assert status["query_api"] == "http://127.0.0.1:9"
    assert status["sign_in"].startswith("local")


def _sign_in(client: TestClient, user: str = "mette", admin: bool = False) -> str:
    token = _csrf(client.get("/sign-in").text)
    data = {"csrf": token, "user": user, **({"admin": "on"} if admin else {})}
    client.post("/sign-in", data=data)
    return _csrf(client.get("/sign-in").text)


SOMEONE = "/contacts/5f0c6c55-8d0e-4c36-9a43-0e7c1b0f1f4b"


def test_only_admins_get_the_erasure_page_or_can_send_it(client: TestClient) -> None:
    token = _sign_in(client)
    page = client.get(f"{SOMEONE}/erase", headers={"Accept-Language": "en"})
    assert page.status_code == 403 and "Only admins can do that." in page.text
    sent = client.post(f"{SOMEONE}/erase", data={"csrf": token, "reason": "r", "confirm": "yes"})
    assert sent.status_code == 403


def test_an_admins_erasure_page_needs_the_apis(client: TestClient) -> None:
    _sign_in(client, "anna", admin=True)
    # Past the role check the page reads the contact: here the APIs are down, so 503.
    assert client.get(f"{SOMEONE}/erase").status_code == 503


@pytest.mark.parametrize("ref", ["abc", "G" * 64, "0" * 63, "0" * 65])
def test_an_earlier_photo_is_asked_for_by_a_content_hash_only(client: TestClient, ref: str) -> None:
    _sign_in(client)
    assert client.get(f"{SOMEONE}/photos/{ref}").status_code == 422


@pytest.mark.parametrize("before", ["0", "-1", "x", str(2**31)])
def test_a_history_page_cursor_must_be_a_version(client: TestClient, before: str) -> None:
    _sign_in(client)
    assert client.get(f"{SOMEONE}?tab=more&before={before}").status_code == 422


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_company_name_too_short_or_long_to_look_up_suggests_nothing(
    client: TestClient, name: str
) -> None:
    _sign_in(client)
    # The APIs are down here: an answer at all shows the name was not looked up.
    answer = client.get("/companies", params={"company_name": name})
    assert answer.status_code == 200 and "<option" not in answer.text


def test_company_suggestions_need_a_signed_in_user(client: TestClient) -> None:
    answer = client.get("/companies", params={"company_name": "Nord"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in"


def test_every_response_says_its_server_time(client: TestClient) -> None:
    timing = client.get("/sign-in").headers["server-timing"]
    assert re.fullmatch(r"app;dur=\d+\.\d\d", timing)
