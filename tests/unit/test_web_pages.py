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
