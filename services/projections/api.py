"""The query API: every tab of the contact page, served from the read models."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from services.projections.availability import is_database_outage
from services.projections.contacts_model import normalise_address
from services.projections.schemas import (
    Activity,
    Company,
    ContactDetails,
    ContactSummary,
    FieldProvenance,
    HistoryPage,
    LinkedItem,
    Page,
    PhotoEntry,
    Relation,
    SyncUser,
)
from services.projections.sql import activities as activities_sql
from services.projections.sql import contacts as contacts_sql
from services.projections.sql import history as history_sql
from services.projections.sql import items as items_sql
from services.projections.sql import sync_status as sync_sql
from services.projections.versions import VersionWaiter
from shared.contract.contacts import ContactStatus
from shared.folding import fold_name, phone_digits
from shared.http import (
    EdgeText,
    ErrorBody,
    PrincipalDep,
    StrictJSONRoute,
    error_responses,
    install_error_body,
)
from shared.observability import correlation_id
from shared.text import forbidden_character
from shared.views import Employment, InfotagView, PhotoView

log = logging.getLogger("kontakt.query")


class NotYetError(Exception):
    """The read model has not reached the version the client asked for."""

    def __init__(self, wanted: int, current: int | None) -> None:
        super().__init__(f"the read model is at version {current}, not yet {wanted}")
        self.wanted = wanted
        self.current = current


class Sort(StrEnum):
    """Orders of the contact list."""

    name = "name"
    company = "company"
    created = "created"
    updated = "updated"


async def get_pool(request: Request) -> asyncpg.Pool:
    """The read models' connection pool."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
MinVersion = Annotated[
    int | None,
    Query(ge=1, description="Wait (about 2 s at most) until the read model reflects this version"),
]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

# Every query can answer these (a bad token, a refused parameter, a failure, an outage).
router = APIRouter(
    prefix="/contacts",
    tags=["query"],
    route_class=StrictJSONRoute,
    responses=error_responses(401, 422, 500, 503),
)

#: Queries of one contact.
_RESPONSES = error_responses(404, 412)


async def _row(request: Request, pool: asyncpg.Pool, contact_id: UUID, min_version: int | None):  # type: ignore[no-untyped-def]
    """The contact's row once it reflects min_version; 404 when unknown, 412 when not yet."""
    if min_version is not None:
        waiter: VersionWaiter = request.app.state.waiter
        current = await waiter.wait_for(contact_id, min_version)
        if current is None or current < min_version:
            raise NotYetError(min_version, current)
    async with pool.acquire() as conn:
        row = await contacts_sql.get(conn, contact_id)
    if row is None:
        raise HTTPException(404, f"contact {contact_id} not found")
    return row


@router.get("", response_model=Page[ContactSummary])
async def list_contacts(
    pool: Pool,
    _: PrincipalDep,
    name: Annotated[
        EdgeText | None,
        Query(
            max_length=200,
            description="Name prefix, of the whole name or of any of its words: accents, case"
            " and the spellings of ø, æ and å (oe, ae, aa) do not matter; % and _ are plain"
            " characters",
        ),
    ] = None,
    email: Annotated[
        EdgeText | None,
        Query(
            max_length=320,
            description="E-mail address, or its beginning: any address the contact has or had",
        ),
    ] = None,
    phone: Annotated[
        EdgeText | None,
        Query(
            max_length=40,
            description="Phone number, compared on its digits, with or without country code"
            " (without digits it finds none)",
        ),
    ] = None,
    q: Annotated[
        EdgeText | None,
        Query(
            max_length=200,
            description="Free text in the job title, department or company name (folded as"
            " names are)",
        ),
    ] = None,
    company_id: UUID | None = None,
    infotag: Annotated[
        EdgeText | None,
        Query(
            max_length=100,
            description="A tag's name path (`Kunde`): contacts with it or a tag below it;"
            " or a catalogue tag id: contacts with that tag",
        ),
    ] = None,
    status: Annotated[list[ContactStatus] | None, Query()] = None,
    sort: Sort = Sort.name,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Contacts by name, e-mail, phone, free text, company, infotag and status (all combined)."""
    statuses: list[ContactStatus] = status or ["current"]
    if infotag is not None and not infotag.strip("/ "):
        # Only separators names no tag: finding everything would hide the mistake.
        raise HTTPException(422, "infotag: give a tag's name path (`Kunde/Guld`) or its id")
    async with pool.acquire() as conn:
        total, rows = await contacts_sql.search(
            conn,
            name=fold_name(name) or None if name else None,
            email=normalise_address(email) if email else None,
            phone=phone_digits(phone) if phone else None,
            text=fold_name(q) or None if q else None,
            company_id=company_id,
            infotag=infotag,
            statuses=statuses,
            sort=sort.value,
            limit=limit,
            offset=offset,
        )
    return {"total": total, "limit": limit, "offset": offset, "items": [dict(r) for r in rows]}


@router.get("/{contact_id}", response_model=ContactDetails, responses=_RESPONSES)
async def details(
    request: Request, contact_id: UUID, pool: Pool, _: PrincipalDep, min_version: MinVersion = None
) -> dict[str, Any]:
    """The Details tab: every field, status, relations, and who syncs it to Outlook."""
    row = await _row(request, pool, contact_id, min_version)
    async with pool.acquire() as conn:
        versions = await contacts_sql.versions_of_person(conn, row["person_id"])
        colleagues = await contacts_sql.colleagues(conn, row["company_id"], contact_id)
        synced = await sync_sql.for_person(conn, row["person_id"], row["outlook_sync_users"])
    return {
        **dict(row),
        "photo": contacts_sql.photo_of(row),
        "other_versions": [
            Relation(**{k: v[k] for k in Relation.model_fields})
            for v in versions
            if v["contact_id"] != contact_id
        ],
        "colleagues": [Relation(**dict(c)) for c in colleagues],
        "outlook_sync": [
            SyncUser(user_id=u, **{k: synced[u][k] for k in ("status", "reason", "updated_at")})
            if u in synced
            else SyncUser(user_id=u, status="pending")
            for u in row["outlook_sync_users"]
        ],
    }


@router.get("/{contact_id}/activities", response_model=Page[Activity], responses=_RESPONSES)
async def activities(
    request: Request,
    contact_id: UUID,
    pool: Pool,
    _: PrincipalDep,
    min_version: MinVersion = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """E-mails from, to or cc an address while the contact held it; newest first."""
    await _row(request, pool, contact_id, min_version)
    async with pool.acquire() as conn:
        total, rows = await activities_sql.for_contact(conn, contact_id, limit, offset)
    items = [
        Activity(
            message_id=r["message_id"],
            from_address=r["from_address"],
            to=r["to_addresses"],
            cc=r["cc_addresses"],
            subject=r["subject"],
            sent_at=r["sent_at"],
        )
        for r in rows
    ]
    return {"total": total, "limit": limit, "offset": offset, "items": items}


@router.get("/{contact_id}/infotags", response_model=list[InfotagView], responses=_RESPONSES)
async def infotags(
    request: Request, contact_id: UUID, pool: Pool, _: PrincipalDep, min_version: MinVersion = None
) -> list[dict[str, Any]]:
    """The Infotags tab: each tag with who placed it and when."""
    await _row(request, pool, contact_id, min_version)
    async with pool.acquire() as conn:
        return [dict(r) for r in await contacts_sql.infotags(conn, contact_id)]


@router.get(
    "/{contact_id}/photo",
    responses={
        **_RESPONSES,
        200: {
            "description": "The photo's bytes (sent with X-Content-Type-Options: nosniff)",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/jpeg", "image/png", "image/webp")
            },
        },
        304: {"description": "Not modified (If-None-Match)"},
    },
)
async def photo(
    request: Request, contact_id: UUID, pool: Pool, _: PrincipalDep, min_version: MinVersion = None
) -> Response:
    """The Photo tab: the current photo with its media type, ETag and cache headers."""
    row = await _row(request, pool, contact_id, min_version)
    meta = contacts_sql.photo_of(row)
    if meta is None:
        raise HTTPException(404, "contact has no photo")
    info = PhotoView(**meta)
    etag = f'"{info.content_hash}"'
    # The type was judged from the bytes on upload; browsers must not guess another one.
    headers = {
        "ETag": etag,
        "Cache-Control": "private, max-age=300",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    # The bytes live with the contacts service; ask it with the caller's own token.
    client: httpx.AsyncClient = request.app.state.http
    try:
        upstream = await client.get(
            f"/contacts/{contact_id}/photo",
            headers={"Authorization": request.headers.get("authorization", "")},
        )
    except httpx.HTTPError as exc:
        log.warning("contacts service unreachable for a photo: %s", exc)
        raise HTTPException(503, "photo store unavailable, try again") from None
    if upstream.status_code != 200 or upstream.headers.get("etag") != etag:
        raise HTTPException(404, "photo not available (changed or removed meanwhile)")
    return Response(upstream.content, media_type=info.media_type, headers=headers)


def _items_route(kind: str, path: str, title: str) -> None:
    async def linked(
        request: Request,
        contact_id: UUID,
        pool: Pool,
        _: PrincipalDep,
        min_version: MinVersion = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        await _row(request, pool, contact_id, min_version)
        async with pool.acquire() as conn:
            total, rows = await items_sql.for_contact(conn, contact_id, kind, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": [dict(r) for r in rows]}

    linked.__doc__ = f"The {title} tab: {title.lower()} the contact is linked to, with its role."
    router.add_api_route(
        f"/{{contact_id}}/{path}",
        linked,
        methods=["GET"],
        response_model=Page[LinkedItem],
        responses=_RESPONSES,
        name=path,
        summary=title,
    )


_items_route("opportunity", "opportunities", "Sales opportunities")
_items_route("campaign", "campaigns", "Campaigns")
_items_route("project", "projects", "Projects")


@router.get("/{contact_id}/employments", response_model=list[Employment], responses=_RESPONSES)
async def employments(
    request: Request, contact_id: UUID, pool: Pool, _: PrincipalDep, min_version: MinVersion = None
) -> list[dict[str, Any]]:
    """The Employments tab: every version of the person in time order."""
    row = await _row(request, pool, contact_id, min_version)
    async with pool.acquire() as conn:
        versions = await contacts_sql.versions_of_person(conn, row["person_id"])
    return [dict(v) for v in versions]


@router.get("/{contact_id}/photos", response_model=list[PhotoEntry], responses=_RESPONSES)
async def photos(
    request: Request, contact_id: UUID, pool: Pool, _: PrincipalDep, min_version: MinVersion = None
) -> list[dict[str, Any]]:
    """Every photo this contact has had, newest first (none once the person is erased)."""
    row = await _row(request, pool, contact_id, min_version)
    current = contacts_sql.photo_of(row)
    async with pool.acquire() as conn:
        had = await history_sql.photos(conn, contact_id)
    # The bytes live with the contacts service, which serves any photo the person had.
    client: httpx.AsyncClient = request.app.state.http
    base = str(client.base_url).rstrip("/")
    return [
        {
            **p,
            "current": current is not None and current["content_hash"] == p["content_hash"],
            "url": f"{base}/contacts/{contact_id}/photos/{p['content_hash']}",
        }
        for p in had
    ]


@router.get("/{contact_id}/history", response_model=HistoryPage, responses=_RESPONSES)
async def history(
    request: Request,
    contact_id: UUID,
    pool: Pool,
    _: PrincipalDep,
    min_version: MinVersion = None,
    limit: Limit = 50,
    before_version: Annotated[
        int | None,
        Query(ge=1, description="Only events older than this version (the next page's cursor)"),
    ] = None,
) -> dict[str, Any]:
    """The History tab ("Mere..."): each event, who, when, channel, and each field's old -> new."""
    await _row(request, pool, contact_id, min_version)
    async with pool.acquire() as conn:
        items = await history_sql.page(conn, contact_id, limit + 1, before_version)
    more = len(items) > limit
    items = items[:limit]
    return {
        "limit": limit,
        "items": items,
        "next_before_version": items[-1]["version"] if more else None,
    }


@router.get("/{contact_id}/provenance", response_model=list[FieldProvenance], responses=_RESPONSES)
async def provenance(
    request: Request, contact_id: UUID, pool: Pool, _: PrincipalDep, min_version: MinVersion = None
) -> list[dict[str, Any]]:
    """Each field's provenance: who set its current value, when, and through which channel."""
    await _row(request, pool, contact_id, min_version)
    async with pool.acquire() as conn:
        return await history_sql.provenance(conn, contact_id)


companies_router = APIRouter(
    prefix="/companies",
    tags=["query"],
    route_class=StrictJSONRoute,
    responses=error_responses(401, 422, 500, 503),
)


@companies_router.get("", response_model=list[Company])
async def list_companies(
    pool: Pool,
    _: PrincipalDep,
    q: Annotated[
        EdgeText,
        Query(
            min_length=1,
            max_length=200,
            description="Beginning of the company's name or of one of its words (case does not"
            " matter; % and _ are plain characters)",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[dict[str, Any]]:
    """Companies by name, from the contacts they have (for picking one in a job change)."""
    async with pool.acquire() as conn:
        rows = await contacts_sql.companies(conn, q.strip(), limit)
    return [dict(r) for r in rows]


def install_error_handlers(app: FastAPI) -> None:
    """The query API's error bodies: 412 not yet, 503 outages, 500 faults; correlation ids."""
    install_error_body(app, "kontakt.query")

    async def not_yet(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, NotYetError):
            raise exc
        body = ErrorBody(detail=str(exc), wanted_version=exc.wanted, current_version=exc.current)
        return JSONResponse(
            body.model_dump(exclude_none=True), status_code=412, headers={"Retry-After": "1"}
        )

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("read models unavailable: %s", exc)
        return JSONResponse({"detail": "read models unavailable, try again"}, status_code=503)

    async def database_error(request: Request, exc: Exception) -> Response:
        # A database that is shutting down, starting up or out of connections is an
        # outage (503, try again); any other database error is a fault of ours (500).
        if is_database_outage(exc):
            return await unavailable(request, exc)
        log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(NotYetError, not_yet)
    for error in (OSError, asyncpg.InterfaceError):
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(asyncpg.PostgresError, database_error)

    @app.middleware("http")
    async def correlate(request: Request, call_next: Any) -> Any:
        given = request.headers.get("x-correlation-id", "")[:200]
        # An id with refused characters is not logged: it would carry them into the logs.
        token = correlation_id.set(given if given and forbidden_character(given) is None else None)
        try:
            return await call_next(request)
        finally:
            correlation_id.reset(token)
