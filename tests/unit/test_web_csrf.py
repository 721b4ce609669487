"""The web UI's session cookie and CSRF check: forms only count with the session's token."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr

from services.web.app import create_web_app
from services.web.session import (
    SESSION_COOKIE,
    CsrfError,
    Session,
    check_csrf,
    dump_session,
    load_session,
)
from shared.auth import mint_token
from shared.settings import KontaktSettings


@pytest.fixture
def settings() -> KontaktSettings:
    # Development secrets: the sign-in page is on. No API is reached by these tests.
    return KontaktSettings(
        contacts_api_url="http://127.0.0.1:9", query_api_url="http://127.0.0.1:9"
    )


def test_a_form_with_the_sessions_token_passes() -> None:
    session = Session()
    check_csrf(session, session.csrf)


@pytest.mark.parametrize("given", [None, "", "forged", 42])
def test_a_form_without_the_sessions_token_is_refused(given: object) -> None:
    with pytest.raises(CsrfError):
        check_csrf(Session(), given)


def test_each_session_has_a_token_of_its_own() -> None:
    assert Session().csrf != Session().csrf


def test_the_cookie_round_trips(settings: KontaktSettings) -> None:
    session = Session(user="mette", roles=["admin"])
    loaded = load_session(settings, dump_session(settings, session))
    assert loaded == session


def test_a_tampered_or_foreign_cookie_gives_a_new_session(settings: KontaktSettings) -> None:
    value = dump_session(settings, Session(user="mette"))
    assert load_session(settings, value[:-2] + "xx").user is None
    foreign = URLSafeTimedSerializer("another key", salt="kontakt-web-session").dumps(
        {"csrf": "c", "user": "admin", "roles": ["admin"]}
    )
    assert load_session(settings, foreign).user is None
    assert load_session(settings, None).user is None


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_signing_in_needs_the_forms_token(settings: KontaktSettings) -> None:
    with TestClient(create_web_app(settings)) as client:
        page = client.get("/sign-in")
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        refused = client.post("/sign-in", data={"user": "mette"}, follow_redirects=False)
        assert refused.status_code == 403
        forged = client.post(
            "/sign-in", data={"user": "mette", "csrf": "forged"}, follow_redirects=False
        )
        assert forged.status_code == 403
        signed = client.post(
            "/sign-in",
            data={"user": "mette", "csrf": _csrf(page.text)},
            follow_redirects=False,
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/contacts"


def test_a_token_from_before_signing_in_is_of_no_use_after(settings: KontaktSettings) -> None:
    with TestClient(create_web_app(settings)) as client:
        before = _csrf(client.get("/sign-in").text)
        client.post("/sign-in", data={"user": "mette", "csrf": before}, follow_redirects=False)
        again = client.post("/sign-out", data={"csrf": before}, follow_redirects=False)
        assert again.status_code == 403


def _production() -> KontaktSettings:
    return KontaktSettings(
        jwt_secret=SecretStr("p" * 40),
        key_secret=SecretStr("k" * 40),
        master_key=SecretStr("cHJvZHVjdGlvbi1tYXN0ZXIta2V5LTMyLWJ5dGVzISE="),
        contacts_api_url="http://127.0.0.1:9",
        query_api_url="http://127.0.0.1:9",
    )


def test_the_sign_in_page_is_off_without_development_secrets() -> None:
    with TestClient(create_web_app(_production())) as client:
        page = client.get("/sign-in")
        assert page.status_code == 401 and 'action="/sign-in"' not in page.text
        posted = client.post("/sign-in", data={"user": "x", "csrf": _csrf(page.text)})
        assert posted.status_code == 404


def test_in_production_the_proxys_token_signs_the_user_in() -> None:
    settings = _production()
    token = mint_token(settings, "mette")
    forged = mint_token(settings.model_copy(update={"jwt_secret": SecretStr("f" * 40)}), "eve")
    with TestClient(create_web_app(settings)) as client:
        assert client.get("/contacts").status_code == 401
        assert (
            client.get("/contacts", headers={settings.web_token_header: forged}).status_code == 401
        )
        # Past the sign-in: the (unreachable) query API is what stops the page now.
        page = client.get("/contacts", headers={settings.web_token_header: f"Bearer {token}"})
        assert page.status_code == 503
