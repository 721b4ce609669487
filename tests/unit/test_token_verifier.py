"""The token verifier remembers verified tokens, never invalid ones, and only until `exp`."""

from __future__ import annotations

import time

import jwt
import pytest

from shared.auth import AuthError, TokenVerifier, mint_token
from shared.settings import KontaktSettings

SETTINGS = KontaktSettings()


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_is_verified_again_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    verifier = TokenVerifier(SETTINGS, clock=clock)
    token = mint_token(SETTINGS, "mette", ttl_seconds=60)
    assert verifier.verify(token).user_id == "mette"
    clock.now += 61

    def expired(*args: object, **kwargs: object) -> object:
        # What PyJWT answers for this token 61 s from now.
        raise jwt.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(jwt, "decode", expired)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_a_remembered_token_gives_the_same_principal_without_verifying_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(SETTINGS)
    token = mint_token(SETTINGS, "mette", roles=["admin"])
    first = verifier.verify(token)
    calls = 0
    real = jwt.decode

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting)
    assert verifier.verify(token) == first
    assert first.has_role("admin")
    assert calls == 0


def test_an_invalid_token_is_refused_every_time() -> None:
    verifier = TokenVerifier(SETTINGS)
    forged = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "another-secret-" * 4)
    for _ in range(2):
        with pytest.raises(AuthError, match="invalid token"):
            verifier.verify(forged)


def test_the_least_recently_used_token_is_forgotten_past_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(SETTINGS, size=2)
    a, b, c = (mint_token(SETTINGS, name) for name in ("a", "b", "c"))
    verifier.verify(a)
    verifier.verify(b)
    verifier.verify(a)  # b is now the least recently used
    verifier.verify(c)
    decoded: list[str] = []
    real = jwt.decode

    def recording(token: str, *args: object, **kwargs: object) -> object:
        decoded.append(token)
        return real(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", recording)
    for token in (a, c, b):
        verifier.verify(token)
    assert decoded == [b]
