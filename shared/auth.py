"""Bearer-token authentication shared by every HTTP service: verify and mint JWTs."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt

from shared.settings import KontaktSettings

#: The role that may erase persons.
ADMIN_ROLE = "admin"

#: The role of the Outlook sync service's principal: it may switch a named user's sync
#: off, with a reason (when that user deleted the contact in Outlook), and nothing else.
OUTLOOK_SYNC_ROLE = "outlook-sync"


class AuthError(Exception):
    """A token is missing, malformed, expired or signed with the wrong key."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `sub` and the roles the token grants."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def has_role(self, role: str) -> bool:
        """True when the token grants the role."""
        return role in self.roles


def _verification_key(settings: KontaktSettings) -> str:
    if settings.jwt_algorithm == "RS256":
        if settings.jwt_public_key is None:  # the settings validator refuses this already
            raise AuthError("RS256 needs KONTAKT_JWT_PUBLIC_KEY")
        return settings.jwt_public_key
    return settings.jwt_secret.get_secret_value()


def _verified(token: str, settings: KontaktSettings) -> tuple[Principal, float]:
    """The principal of a verified token and the moment (epoch seconds) it expires."""
    try:
        claims = jwt.decode(
            token,
            _verification_key(settings),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp"], "verify_aud": settings.jwt_audience is not None},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise AuthError("invalid token: empty subject")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthError("invalid token: roles must be a list of strings")
    return Principal(sub, frozenset(roles)), float(claims["exp"])


def verify_token(token: str, settings: KontaktSettings) -> Principal:
    """Verify a bearer token and return its principal."""
    return _verified(token, settings)[0]


class TokenVerifier:
    """Verifies bearer tokens, remembering the verified ones until they expire.

    A client sends the same token with every request; verifying its signature and claims
    each time was a measurable share of a command's CPU. Only tokens that passed the full
    check are remembered (at most `size`, least recently used dropped first), and a
    remembered token is refused from the second its `exp` is reached, as PyJWT refuses it.
    """

    def __init__(
        self,
        settings: KontaktSettings,
        size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._size = size
        self._clock = clock
        self._known: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        """The token's principal; AuthError when it is not (or no longer) valid."""
        known = self._known.get(token)
        if known is not None:
            principal, expires = known
            if self._clock() < expires:
                self._known.move_to_end(token)
                return principal
            del self._known[token]
        principal, expires = _verified(token, self._settings)
        self._known[token] = (principal, expires)
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return principal


def mint_token(
    settings: KontaktSettings, sub: str, roles: list[str] | None = None, ttl_seconds: int = 3600
) -> str:
    """Mint a signed token for local use (HS256 secret, or RS256 private key from settings)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "iat": now, "exp": now + ttl_seconds}
    if roles:
        claims["roles"] = roles
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_algorithm == "RS256":
        if settings.jwt_private_key is None:
            raise AuthError("KONTAKT_JWT_PRIVATE_KEY is needed to mint RS256 tokens")
        key = settings.jwt_private_key.get_secret_value()
    else:
        key = settings.jwt_secret.get_secret_value()
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm)
