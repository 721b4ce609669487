"""The web UI's signed session cookie and the CSRF token of its forms."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.settings import KontaktSettings

SESSION_COOKIE = "kontakt_session"
#: A session lasts a working day; the dev token minted from it lasts as long.
SESSION_SECONDS = 12 * 3600


class CsrfError(Exception):
    """A form arrived without the session's CSRF token (or with another one)."""


@dataclass
class Session:
    """What the cookie holds: the CSRF token, and the signed-in user of a local run."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user: str | None = None
    roles: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The cookie's payload."""
        return {"csrf": self.csrf, "user": self.user, "roles": self.roles}


def _serializer(settings: KontaktSettings) -> URLSafeTimedSerializer:
    # A key of its own, derived from the key secret, so a cookie can never pass as a token.
    key = hmac.new(
        settings.key_secret.get_secret_value().encode(), b"kontakt-web-session", hashlib.sha256
    ).hexdigest()
    return URLSafeTimedSerializer(key, salt="kontakt-web-session")


def dump_session(settings: KontaktSettings, session: Session) -> str:
    """The session as a signed cookie value."""
    return _serializer(settings).dumps(session.as_dict())


def load_session(settings: KontaktSettings, value: str | None) -> Session:
    """The session of a cookie; a new one when missing, tampered with or expired."""
    if not value:
        return Session()
    try:
        data = _serializer(settings).loads(value, max_age=SESSION_SECONDS)
    except BadSignature:
        return Session()
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return Session()
    user = data.get("user")
    roles = data.get("roles")
    return Session(
        csrf=data["csrf"],
        user=user if isinstance(user, str) and user else None,
        roles=[r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [],
    )


def check_csrf(session: Session, given: object) -> None:
    """Raise CsrfError unless the form's token is the session's."""
    if not isinstance(given, str) or not given:
        raise CsrfError("the form has no CSRF token")
    if not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise CsrfError("the form's CSRF token is not this session's")
