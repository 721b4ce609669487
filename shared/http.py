"""HTTP pieces every service's API shares: the bearer-token dependency."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated, Any

import uvicorn
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


class _GracefulServer(uvicorn.Server):
    """A uvicorn server that, on SIGTERM or SIGINT, finishes in-flight requests and returns.

    uvicorn re-raises the signal after its shutdown, so the process would end killed by
    it; operators and supervisors expect a clean stop to exit 0.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Ask the server to stop; a second Ctrl-C stops it at once."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def serve(app: Any, host: str, port: int, log_level: str = "info") -> None:
    """Serve an ASGI app until SIGTERM/SIGINT, then return (exit code 0)."""
    _GracefulServer(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run()
