"""HTTP pieces every service's API shares: the bearer-token dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import AuthError, Principal, verify_token
from shared.settings import KontaktSettings

_bearer = HTTPBearer(auto_error=False)


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a verified bearer token (settings on app.state); 401 otherwise."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    settings: KontaktSettings = request.app.state.settings
    try:
        return verify_token(credentials.credentials, settings)
    except AuthError as exc:
        raise HTTPException(401, str(exc), {"WWW-Authenticate": "Bearer"}) from None


#: Annotated alias for routes that need the authenticated caller.
PrincipalDep = Annotated[Principal, Depends(get_principal)]
