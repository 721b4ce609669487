"""HTTP pieces every service's API shares: the bearer-token dependency, the one error body,
strict JSON parsing and the request-body limit."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.auth import AuthError, Principal, TokenVerifier
from shared.lifecycle import serve_app
from shared.settings import KontaktSettings
from shared.text import VISIBLE_TEXT_PATTERN, forbidden_character, refuse_forbidden, strip_invisible

_bearer = HTTPBearer(auto_error=False)


# Dependencies are async on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, a hand-off to another thread (and back) for every request.
async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a verified bearer token (the app's TokenVerifier); 401 otherwise."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    tokens: TokenVerifier = request.app.state.tokens
    try:
        return tokens.verify(credentials.credentials)
    except AuthError as exc:
        raise HTTPException(401, str(exc), {"WWW-Authenticate": "Bearer"}) from None


#: Annotated alias for routes that need the authenticated caller.
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _visible(value: str) -> str:
    value = strip_invisible(refuse_forbidden(value)).strip()
    if not value:
        raise ValueError("must not be empty (or only invisible characters)")
    return value


#: A text path, query or header parameter: refused characters give 422 naming it, invisible
#: ones are removed. Use with Path/Query/Header(max_length=...).
EdgeText = Annotated[
    str, Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN}), AfterValidator(_visible)
]


def serve(app: Any, host: str, port: int, log_level: str = "info") -> None:
    """Serve an ASGI app until SIGTERM/SIGINT, then return (exit code 0)."""
    asyncio.run(serve_app(app, host, port, log_level))


def api_app(title: str, description: str, settings: KontaktSettings, lifespan: Any) -> FastAPI:
    """A Kontakt API's FastAPI app, its settings and token verifier on app.state."""
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    # Routes added to the app itself (health, metrics, status) are as strict as the routers'.
    app.router.route_class = StrictJSONRoute
    app.state.settings = settings
    app.state.tokens = TokenVerifier(settings)
    return app


# --------------------------------------------------------------- the error body


class FieldError(BaseModel):
    """One refused field: where it is (``body.work_email``, ``query.name``) and why."""

    field: str
    message: str


class DuplicateCandidate(BaseModel):
    """A current contact at the same company that may be the same person, and why."""

    contact_id: UUID
    first_names: str
    last_names: str
    matched: list[Literal["name", "phone"]] = Field(
        description="name: names equal after folding (ø/oe/o, å/aa/a, æ/ae, ß/ss, case, accents,"
        " invisible characters); phone: the same phone number (digits, country code optional)"
    )
    declared_distinct: bool = Field(
        default=False, description="One of the two was declared a different person"
    )


class ErrorBody(BaseModel):
    """Every 4xx and 5xx of both APIs: a message, and fields that say more when they apply.

    ``field`` and ``existing_contact_id`` name a duplicate, ``error`` and ``candidates`` a
    possible duplicate, ``current_version`` a stale version, ``successor_id`` the newer
    version of a former contact, ``wanted_version`` what a read-your-writes query waited
    for, ``errors`` every refused field of a 422.
    """

    detail: str
    error: Literal["possible_duplicate"] | None = None
    candidates: list[DuplicateCandidate] | None = None
    field: str | None = None
    existing_contact_id: UUID | None = None
    current_version: int | None = None
    successor_id: UUID | None = None
    wanted_version: int | None = None
    errors: list[FieldError] | None = None


#: What each status means, for the OpenAPI documents.
STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON (malformed, NaN, Infinity, not UTF-8)",
    401: "Missing or invalid bearer token",
    403: "The token lacks the role this needs",
    404: "Unknown contact (or no such infotag or photo)",
    409: "Conflict: duplicate, stale version, or the contact's state",
    410: "The person was erased",
    412: "The read model does not reflect min_version yet",
    413: "The request body is larger than the limit",
    415: "The photo is not a JPEG, PNG or WebP image",
    422: "Invalid input: every refused field is in errors",
    500: "Unexpected failure (logged); the body never echoes input",
    503: "A dependency (database, contacts service) is unavailable; try again",
}


#: OpenAPI ``responses`` of a Prometheus /metrics endpoint (text, not JSON).
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    500: {"model": ErrorBody, "description": STATUS_DESCRIPTIONS[500]},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these statuses, each with the one error body."""
    return {s: {"model": ErrorBody, "description": STATUS_DESCRIPTIONS[s]} for s in statuses}


_SHOWN_MAX = 200


def printable(value: object) -> str:
    """Text fit to put in a response: refused characters escaped, long text cut.

    Error bodies never echo input as it came: a lone surrogate cannot be encoded as
    UTF-8 (the default 422 handler failed on one), and control characters would reach
    whatever logs or displays the body.
    """
    text = str(value)
    if len(text) > _SHOWN_MAX:
        text = text[:_SHOWN_MAX] + "..."
    return "".join(
        f"\\u{ord(ch):04x}" if forbidden_character(ch) or strip_invisible(ch) != ch else ch
        for ch in text
    )


def _field_of(loc: Sequence[Any]) -> str:
    return ".".join(printable(part) for part in loc)


def validation_body(errors: Sequence[Any]) -> tuple[int, dict[str, Any]]:
    """Status and error body for pydantic/FastAPI validation errors, never echoing input."""
    if any(e.get("type") == "json_invalid" for e in errors):
        why = next(
            (str(e.get("ctx", {}).get("error", "")) for e in errors if e["type"] == "json_invalid"),
            "",
        )
        return 400, {"detail": printable(f"the body is not valid JSON: {why}".rstrip(": "))}
    fields = [
        {"field": _field_of(e.get("loc", ())), "message": printable(e.get("msg", "invalid"))}
        for e in errors
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:3])
    more = f" (and {len(fields) - 3} more)" if len(fields) > 3 else ""
    return 422, {"detail": f"invalid input: {summary}{more}", "errors": fields}


def _allowed_methods(request: Request) -> str:
    """Every method of every route of this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_body(app: FastAPI, name: str) -> None:
    """Give every error of this app the one error body: validation, HTTP and unexpected ones."""
    logger = logging.getLogger(name)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):
            raise exc
        status, body = validation_body(exc.errors())
        request.state.error = "InvalidJSON" if status == 400 else "InvalidInput"
        return JSONResponse(body, status_code=status)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        if exc.status_code == 304 or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=headers)
        return JSONResponse(
            {"detail": printable(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "unexpected failure on %s %s",
            request.method,
            request.url.path,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _query_parameters(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    return frozenset(names.union(*(_query_parameters(d) for d in dependant.dependencies)))


# ------------------------------------------------------------------ strict JSON


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{printable(text[:20])} is out of range")
    return number


def strict_json(body: bytes) -> Any:
    """Parse a JSON body as RFC 8259 says: NaN, Infinity and out-of-range numbers refused."""
    text = body.decode("utf-8")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), text, 0) from None


class StrictJSONRequest(Request):
    """A request whose JSON body is parsed strictly (see strict_json)."""

    async def json(self) -> Any:
        """The body as strict JSON; json.JSONDecodeError when it is not."""
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route strict about its input: JSON bodies parsed strictly (Python's parser accepts
    NaN and Infinity), query parameters it does not declare refused with 422.

    An ignored parameter (a misspelt or unsupported filter) would answer as if it were not
    there: a whole company instead of the one contact asked for.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, given a StrictJSONRequest."""
        handler = super().get_route_handler()
        declared = _query_parameters(self.dependant)

        async def strict(request: Request) -> Response:
            unknown = sorted(set(request.query_params) - declared)
            if unknown:
                raise RequestValidationError(
                    [
                        {"type": "extra_forbidden", "loc": ("query", n), "msg": "unknown parameter"}
                        for n in unknown
                    ]
                )
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


# ------------------------------------------------------------------ body limit


class BodyTooLargeError(StarletteHTTPException):
    """The request body passed the limit (raised from receive, answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Refuses request bodies over a limit with 413, never holding more than the limit.

    A declared Content-Length over the limit is answered at once, unread; a body without
    one (chunked) is counted as it streams and refused the moment it passes the limit.
    ``overrides`` give some routes (method, path pattern) a limit of their own.
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        overrides: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = [(m, re.compile(p), n) for m, p, n in overrides]

    def limit_for(self, method: str, path: str) -> int:
        """The body limit of a request."""
        for m, pattern, limit in self.overrides:
            if m == method and pattern.fullmatch(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status = 413 if declared.isdigit() else 400
            error = BodyTooLargeError(limit) if status == 413 else None
            detail = error.detail if error else "invalid Content-Length"
            await _send_json(send, status, {"detail": detail})
            return
        received = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracked_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLargeError as exc:
            if started:
                raise
            await _send_json(send, 413, {"detail": exc.detail})


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
