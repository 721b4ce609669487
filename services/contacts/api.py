"""HTTP adapter of the contacts service: thin routers and the one place errors become statuses."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import psycopg
from eventsourcing.persistence import OperationalError, PersistenceError
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import StringConstraints

from services.contacts import domain
from services.contacts import infotags as infotag_rules
from services.contacts.application import CommandResult, ContactsApp
from services.contacts.export import StoreReader
from services.contacts.infotags import InfotagCatalogue
from services.contacts.personal_data import PersonErasedError
from services.contacts.photos import (
    PhotoNotStoredError,
    PhotoTooLargeError,
    StoredPhoto,
    UnsupportedPhotoTypeError,
)
from services.contacts.schemas import (
    PHONE_PATTERN,
    ArchiveRequest,
    CommandResponse,
    ContactCreate,
    ContactDetailsChange,
    ContactView,
    EmploymentCorrection,
    EraseRequest,
    ErasureResponse,
    HistoryEntry,
    InfotagCatalogueView,
    InfotagChange,
    InfotagDefine,
    InfotagNode,
    InfotagPlace,
    JobChange,
    JobChangeResponse,
    JobChangeUndoResponse,
    OutlookSyncSwitch,
    OutlookSyncSwitchOff,
    PossibleDuplicates,
)
from shared.auth import ADMIN_ROLE, OUTLOOK_SYNC_ROLE, Principal
from shared.contract.contacts import DEFAULT_CHANNEL, JOB_DETAILS, Channel
from shared.http import (
    DuplicateCandidate,
    EdgeText,
    StrictJSONRoute,
    error_responses,
    get_principal,
    install_error_body,
)
from shared.observability import correlation_id, metrics
from shared.text import forbidden_character
from shared.views import Employment

log = logging.getLogger(__name__)

_IMAGES = ("image/jpeg", "image/png", "image/webp")
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')
#: What a date or ISO timestamp can look like (the domain judges the values).
_MOMENT = r"^[0-9][0-9T:.+\-Z ]{5,39}$"
_IF_MATCH = r'^\s*(?:\*|(?:W/)?"?[0-9]{1,18}"?)\s*$'


async def get_contacts(request: Request) -> ContactsApp:
    """The application built by the app factory."""
    app: ContactsApp = request.app.state.contacts
    return app


async def get_actor(
    request: Request,
    principal: Annotated[Principal, Depends(get_principal)],
    x_correlation_id: Annotated[
        EdgeText | None, Header(max_length=200, description="Given, or made for you")
    ] = None,
    x_kontakt_channel: Annotated[
        Channel,
        Header(
            description="Through which channel the change came: api (default), import,"
            " outlook-sync or service; recorded on every event"
        ),
    ] = DEFAULT_CHANNEL,
) -> domain.Actor:
    """Who acts (the token's subject), the request's correlation id and its channel."""
    return domain.Actor(principal.user_id, request.state.correlation_id, x_kontakt_channel)


async def get_expected_version(
    # Not "str | None": the document would call the header nullable, and "null" is no version.
    if_match: Annotated[
        str,
        Header(
            max_length=40,
            pattern=_IF_MATCH,
            description='The version you saw: "3", W/"3" or *',
        ),
    ] = "",
    expected_version: Annotated[int | None, Query(ge=1)] = None,
) -> int | None:
    """The version the client saw: If-Match ("3" or W/"3") or ?expected_version=3."""
    if not if_match or if_match.strip() == "*":
        return expected_version
    match = _ETAG.match(if_match)
    if not match:
        raise HTTPException(422, 'If-Match must be a contact version, e.g. "3"')
    return int(match.group(1))


Contacts = Annotated[ContactsApp, Depends(get_contacts)]
ActorDep = Annotated[domain.Actor, Depends(get_actor)]
ExpectedVersion = Annotated[int | None, Depends(get_expected_version)]

# Every operation can answer these (a bad token, a refused parameter, a failure, an outage).
router = APIRouter(
    prefix="/contacts",
    tags=["contacts"],
    route_class=StrictJSONRoute,
    responses=error_responses(401, 422, 500, 503),
)

# Questions about a company's contacts rather than one contact's: apart from /contacts/{id}.
companies = APIRouter(
    prefix="/companies",
    tags=["contacts"],
    route_class=StrictJSONRoute,
    responses=error_responses(401, 422, 500, 503),
)

#: Reads of one contact.
_READ = error_responses(404, 410)
#: Commands with a JSON body.
_ERRORS = error_responses(400, 404, 409, 410, 413)
#: Commands without a body.
_BODILESS = error_responses(404, 409, 410)


def _body(result: CommandResult) -> CommandResponse:
    return CommandResponse(
        contact_id=result.contact_id, person_id=result.person_id, version=result.version
    )


def _result(response: Response, result: CommandResult) -> CommandResponse:
    response.headers["ETag"] = f'"{result.version}"'
    return _body(result)


def _located(response: Response, result: CommandResult) -> dict[str, Any]:
    """The fields of a command's response whose contact the Location names."""
    response.headers["Location"] = f"/contacts/{result.contact_id}"
    return _result(response, result).model_dump()


@router.post("", status_code=201, response_model=CommandResponse, responses=_ERRORS)
def create_contact(
    body: ContactCreate, contacts: Contacts, actor: ActorDep, response: Response
) -> CommandResponse:
    """Create a contact."""
    details = body.model_dump(exclude={"company_id", "company_name", "started_on", "distinct_from"})
    result = contacts.create_contact(
        actor,
        company_id=body.company_id,
        company_name=body.company_name,
        details=details,
        started_on=body.started_on,
        distinct_from=body.distinct_from,
    )
    response.headers["Location"] = f"/contacts/{result.contact_id}"
    return _result(response, result)


@router.patch("/{contact_id}", response_model=CommandResponse, responses=_ERRORS)
def change_details(
    contact_id: UUID,
    body: ContactDetailsChange,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Change a contact's details (only the fields sent)."""
    result = contacts.change_details(
        actor, contact_id, body.changes(), expected, distinct_from=body.distinct_from
    )
    return _result(response, result)


@router.post(
    "/{contact_id}/job-changes",
    status_code=201,
    response_model=JobChangeResponse,
    responses=_ERRORS,
)
def change_job(
    contact_id: UUID,
    body: JobChange,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> JobChangeResponse:
    """Record a job change: this version becomes former, a new version starts."""
    old, new = contacts.change_job(
        actor,
        contact_id,
        company_id=body.company_id,
        company_name=body.company_name,
        job=body.model_dump(include=set(JOB_DETAILS)),
        effective_on=body.effective_on or datetime.now(UTC).date(),
        expected_version=expected,
    )
    return JobChangeResponse(**_located(response, new), predecessor=_body(old))


@router.post(
    "/{contact_id}/job-change-undo", response_model=JobChangeUndoResponse, responses=_ERRORS
)
def undo_job_change(
    contact_id: UUID,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> JobChangeUndoResponse:
    """Undo the job change that made this version: it is withdrawn, its former one current."""
    withdrawn, current = contacts.undo_job_change(actor, contact_id, expected)
    return JobChangeUndoResponse(**_located(response, current), withdrawn=_body(withdrawn))


@router.post(
    "/{contact_id}/employment-corrections", response_model=CommandResponse, responses=_ERRORS
)
def correct_employment(
    contact_id: UUID,
    body: EmploymentCorrection,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Correct the company id or name, or the start date, of an employment (current or former).

    Recorded as EmploymentCorrected, not as a job change; history shows it.
    """
    result = contacts.correct_employment(
        actor,
        contact_id,
        company_id=body.company_id,
        company_name=body.company_name,
        started_on=body.started_on,
        expected_version=expected,
    )
    return _result(response, result)


@router.put("/{contact_id}/outlook-sync/me", response_model=CommandResponse, responses=_ERRORS)
def switch_my_outlook_sync(
    contact_id: UUID,
    body: OutlookSyncSwitch,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Switch the caller's own Outlook sync for this contact on or off."""
    result = contacts.toggle_outlook_sync(
        actor,
        contact_id,
        user_id=actor.user_id,
        enabled=body.enabled,
        reason=body.reason,
        expected_version=expected,
    )
    return _result(response, result)


@router.put(
    "/{contact_id}/outlook-sync/users/{user_id}",
    response_model=CommandResponse,
    responses={**_ERRORS, **error_responses(403)},
)
def switch_users_outlook_sync_off(
    contact_id: UUID,
    user_id: Annotated[EdgeText, Path(max_length=200)],
    body: OutlookSyncSwitchOff,
    contacts: Contacts,
    principal: Annotated[Principal, Depends(get_principal)],
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Switch a named user's sync off with a reason: only the Outlook sync service may.

    Used when the user deleted the contact in their Outlook, so the history shows why.
    """
    if not principal.has_role(OUTLOOK_SYNC_ROLE):
        raise HTTPException(
            403, f"switching another user's sync needs the {OUTLOOK_SYNC_ROLE!r} role"
        )
    result = contacts.toggle_outlook_sync(
        actor,
        contact_id,
        user_id=user_id,
        enabled=False,
        reason=body.reason,
        expected_version=expected,
    )
    return _result(response, result)


@router.post("/{contact_id}/infotags", response_model=CommandResponse, responses=_ERRORS)
def add_infotag(
    contact_id: UUID,
    body: InfotagPlace,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Place an infotag on the contact (placing a placed tag changes nothing).

    By catalogue id, or by name path: the catalogue tag at that path, else (a name the
    catalogue does not know) a placement by name as before the catalogue. An inactive
    tag is refused with 409.
    """
    tag_id = body.tag_id
    if body.tag is not None:
        tag_id = contacts.infotag_catalogue().find_path(body.tag)
        if tag_id is None:
            return _result(response, contacts.add_infotag(actor, contact_id, body.tag, expected))
    assert tag_id is not None  # the body gives exactly one
    return _result(response, contacts.add_catalogue_infotag(actor, contact_id, tag_id, expected))


@router.delete("/{contact_id}/infotags/{tag}", response_model=CommandResponse, responses=_BODILESS)
def remove_infotag(
    contact_id: UUID,
    tag: Annotated[
        EdgeText, Path(max_length=100, description="A catalogue tag id, or a tag's name path")
    ],
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Take an infotag off the contact: by catalogue id, or by name path."""
    try:
        tag_id: UUID | None = UUID(tag)
    except ValueError:
        tag_id = contacts.infotag_catalogue().find_path(tag)
    if tag_id is not None:
        try:
            result = contacts.remove_catalogue_infotag(actor, contact_id, tag_id, expected)
            return _result(response, result)
        except domain.InfotagNotPlacedError:
            pass  # perhaps placed by that name before the catalogue
    return _result(response, contacts.remove_infotag(actor, contact_id, tag, expected))


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PhotoTooLargeError(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PhotoTooLargeError(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.put(
    "/{contact_id}/photo",
    response_model=CommandResponse,
    responses={**_BODILESS, **error_responses(413, 415)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/jpeg", "image/png", "image/webp")
            },
        }
    },
)
async def upload_photo(
    contact_id: UUID,
    request: Request,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Upload or replace the photo: the raw image bytes as the request body."""
    data = await _read_limited(request, contacts.photos.max_bytes)
    result = await run_in_threadpool(contacts.change_photo, actor, contact_id, data, expected)
    return _result(response, result)


@router.delete("/{contact_id}/photo", response_model=CommandResponse, responses=_BODILESS)
def remove_photo(
    contact_id: UUID,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Remove the current photo."""
    return _result(response, contacts.remove_photo(actor, contact_id, expected))


def _photo_responses(description: str, errors: dict[int | str, Any]) -> dict[int | str, Any]:
    """OpenAPI responses of a photo read: the image bytes, or the errors given."""
    content = {t: {"schema": {"type": "string", "format": "binary"}} for t in _IMAGES}
    return {200: {"description": description, "content": content}, **errors}


def _photo_response(stored: StoredPhoto, content_hash: str) -> Response:
    """A stored photo as the response body, tagged by its content hash."""
    return Response(
        stored.data,
        media_type=stored.media_type,
        # The type was judged from the bytes; browsers must not guess another one.
        headers={"ETag": f'"{content_hash}"', "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/{contact_id}/photo",
    responses=_photo_responses(
        "The photo's bytes (sent with X-Content-Type-Options: nosniff)", _READ
    ),
)
def get_photo(
    contact_id: UUID, contacts: Contacts, _: Annotated[Principal, Depends(get_principal)]
) -> Response:
    """The current photo's bytes."""
    contact = contacts.get_contact(contact_id)
    if contact.photo is None:
        raise domain.NoPhotoError()
    content_hash = contact.photo["content_hash"]
    return _photo_response(contacts.photos.get(contact.person_id, content_hash), content_hash)


@router.get(
    "/{contact_id}/photos/{photo_ref}",
    responses=_photo_responses(
        "An earlier or the current photo's bytes (sent with nosniff)",
        error_responses(404, 410, 422),
    ),
)
def get_earlier_photo(
    contact_id: UUID,
    photo_ref: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
    contacts: Contacts,
    _: Annotated[Principal, Depends(get_principal)],
) -> Response:
    """A photo the person has had, by its content hash, until the person is erased."""
    contact = contacts.get_contact(contact_id)
    # Photos are kept by person, so any hash stored under the person is one of theirs.
    return _photo_response(contacts.photos.get(contact.person_id, photo_ref), photo_ref)


@router.post("/{contact_id}/archive", response_model=CommandResponse, responses=_ERRORS)
def archive(
    contact_id: UUID,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
    body: ArchiveRequest | None = None,
) -> CommandResponse:
    """Archive the contact: it leaves the current contacts and refuses edits."""
    reason = body.reason if body else None
    return _result(response, contacts.archive(actor, contact_id, reason, expected))


@router.post("/{contact_id}/restore", response_model=CommandResponse, responses=_BODILESS)
def restore(
    contact_id: UUID,
    contacts: Contacts,
    actor: ActorDep,
    expected: ExpectedVersion,
    response: Response,
) -> CommandResponse:
    """Restore an archived contact."""
    return _result(response, contacts.restore(actor, contact_id, expected))


@router.post(
    "/{contact_id}/erase",
    response_model=ErasureResponse,
    responses={**_ERRORS, **error_responses(403)},
)
def erase_person(
    contact_id: UUID,
    body: EraseRequest,
    contacts: Contacts,
    principal: Annotated[Principal, Depends(get_principal)],
    actor: ActorDep,
) -> ErasureResponse:
    """Erase the contact's person, every version (admin role only): GDPR right to be forgotten.

    Personal data becomes unreadable in the event store and the photo bytes are
    deleted; the fact of the erasure, who did it, when and the reason stay.
    """
    if not principal.has_role(ADMIN_ROLE):
        raise HTTPException(403, f"erasure needs the {ADMIN_ROLE!r} role")
    results = contacts.erase_person(actor, contact_id, body.reason)
    return ErasureResponse(
        person_id=results[0].person_id,
        erased=[
            CommandResponse(contact_id=r.contact_id, person_id=r.person_id, version=r.version)
            for r in results
        ],
    )


def _candidates(found: list[domain.NearDuplicate]) -> PossibleDuplicates:
    return PossibleDuplicates(
        candidates=[DuplicateCandidate.model_validate(asdict(c)) for c in found]
    )


@router.get("/{contact_id}/possible-duplicates", response_model=PossibleDuplicates, responses=_READ)
def possible_duplicates(
    contact_id: UUID, contacts: Contacts, _: Annotated[Principal, Depends(get_principal)]
) -> PossibleDuplicates:
    """Current contacts at the contact's company that may be the same person, and why."""
    return _candidates(contacts.possible_duplicates(contact_id))


@router.get("/{contact_id}", response_model=ContactView, responses=_READ)
def get_contact(
    contact_id: UUID,
    contacts: Contacts,
    _: Annotated[Principal, Depends(get_principal)],
    response: Response,
) -> dict[str, Any]:
    """The contact's current state, from the event store."""
    contact = contacts.get_contact(contact_id)
    response.headers["ETag"] = f'"{contact.version}"'
    state = contact.state()
    state["infotags"] = contacts.infotags_as_now(state["infotags"])
    return state


@router.get("/{contact_id}/history", response_model=list[HistoryEntry], responses=_READ)
def history(
    contact_id: UUID, contacts: Contacts, _: Annotated[Principal, Depends(get_principal)]
) -> list[dict[str, Any]]:
    """Every event of the contact: type, who, when, what changed."""
    return contacts.history(contact_id)


@router.get("/{contact_id}/as-of", response_model=ContactView, responses=_READ)
def as_of(
    contact_id: UUID,
    contacts: Contacts,
    _: Annotated[Principal, Depends(get_principal)],
    at: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=_MOMENT,
            description="A date (the end of that day, UTC, as `kontakt as-of` reads it)"
            " or an ISO timestamp (UTC unless it has an offset)",
        ),
    ] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """The contact as it was at a moment or at a version (time travel)."""
    if version is not None and at is None:
        return contacts.get_contact(contact_id, version).state()
    if at is None or version is not None:
        raise HTTPException(422, "give exactly one of 'at' or 'version'")
    moment = domain.as_of_moment(at)
    contact = contacts.get_contact_as_of(contact_id, moment)
    if contact is None:
        raise HTTPException(404, f"contact {contact_id} did not exist yet at {moment.isoformat()}")
    return contact.state()


@router.get("/{contact_id}/employments", response_model=list[Employment], responses=_READ)
def employments(
    contact_id: UUID, contacts: Contacts, _: Annotated[Principal, Depends(get_principal)]
) -> list[Employment]:
    """All versions of the contact's person, oldest first."""
    return [
        Employment.model_validate({**c.state(), "contact_id": c.id})
        for c in contacts.employments(contact_id)
    ]


@router.get("/{contact_id}/events", responses=_READ)
def contract_events(
    contact_id: UUID,
    contacts: Contacts,
    _: Annotated[Principal, Depends(get_principal)],
    after_version: Annotated[int, Query(ge=0, description="Only events after this version")] = 0,
) -> list[dict[str, Any]]:
    """The contact's events in the shape of the public contract, as published on Kafka.

    A consumer that missed some of a contact's events (dead-lettered, say) repairs
    its copy from these. Oldest first; personal fields read [erased] after an erasure.
    """
    contacts.get_contact(contact_id)  # 404 for an unknown id
    return [
        e.model_dump(mode="json")
        for e in StoreReader(contacts).contact_events(contact_id, after_version)
    ]


@companies.get("/{company_id}/possible-duplicates", response_model=PossibleDuplicates)
def possible_duplicates_of(
    company_id: UUID,
    contacts: Contacts,
    _: Annotated[Principal, Depends(get_principal)],
    first_names: Annotated[EdgeText | None, Query(max_length=200)] = None,
    last_names: Annotated[EdgeText | None, Query(max_length=200)] = None,
    phone: Annotated[
        list[Annotated[str, StringConstraints(max_length=40, pattern=PHONE_PATTERN)]] | None,
        Query(max_length=2, description="A phone number (up to two: work and private)"),
    ] = None,
) -> PossibleDuplicates:
    """Ask before creating: current contacts at the company a contact with these would look like.

    The same rules as the 409 possible_duplicate of a create: names equal after folding, or
    the same phone number.
    """
    if not phone and not (first_names and last_names):
        raise HTTPException(422, "give first_names and last_names, or a phone, to compare")
    found = contacts.possible_duplicates_of(company_id, first_names, last_names, tuple(phone or ()))
    return _candidates(found)


# ------------------------------------------------------------- infotag catalogue

infotags = APIRouter(
    prefix="/infotags",
    tags=["infotags"],
    route_class=StrictJSONRoute,
    responses=error_responses(401, 422, 500, 503),
)
#: Catalogue commands: admins only.
_CATALOGUE = error_responses(400, 403, 404, 409, 413)
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _node(catalogue: InfotagCatalogue, tag_id: UUID) -> InfotagNode:
    state = catalogue.tag(tag_id)
    return InfotagNode(
        tag_id=tag_id,
        name=state["name"],
        path=catalogue.path(tag_id),
        parent_id=state["parent_id"],
        active=state["active"],
        defined_by=state["defined_by"],
        defined_at=datetime.fromisoformat(state["defined_at"]),
    )


@infotags.get("", response_model=InfotagCatalogueView)
def list_infotags(contacts: Contacts, _: PrincipalDep) -> InfotagCatalogueView:
    """Every catalogue infotag (active or not), sorted by path."""
    catalogue = contacts.infotag_catalogue()
    nodes = [_node(catalogue, tag_id) for tag_id in catalogue.tags]
    return InfotagCatalogueView(infotags=sorted(nodes, key=lambda n: n.path.casefold()))


@infotags.get("/{tag_id}", response_model=InfotagNode, responses=error_responses(404))
def get_infotag(tag_id: UUID, contacts: Contacts, _: PrincipalDep) -> InfotagNode:
    """One catalogue infotag."""
    return _node(contacts.infotag_catalogue(), tag_id)


@infotags.post("", status_code=201, response_model=InfotagNode, responses=_CATALOGUE)
def define_infotag(
    body: InfotagDefine, contacts: Contacts, actor: ActorDep, principal: PrincipalDep
) -> InfotagNode:
    """Define an infotag (admins): its name free among its siblings, compared case-insensitively."""
    tag_id = contacts.define_infotag(actor, principal.roles, body.name, body.parent_id)
    return _node(contacts.infotag_catalogue(), tag_id)


@infotags.patch("/{tag_id}", response_model=InfotagNode, responses=_CATALOGUE)
def change_infotag(
    tag_id: UUID,
    body: InfotagChange,
    contacts: Contacts,
    actor: ActorDep,
    principal: PrincipalDep,
) -> InfotagNode:
    """Rename and/or move an infotag (admins); parent_id null moves it to the root."""
    contacts.change_infotag(
        actor,
        principal.roles,
        tag_id,
        name=body.name,
        parent_id=body.parent_id,
        move="parent_id" in body.model_fields_set,
    )
    return _node(contacts.infotag_catalogue(), tag_id)


@infotags.post(
    "/{tag_id}/{action}", response_model=InfotagNode, responses=error_responses(403, 404, 409)
)
def set_infotag_active(
    tag_id: UUID,
    action: Literal["deactivate", "reactivate"],
    contacts: Contacts,
    actor: ActorDep,
    principal: PrincipalDep,
) -> InfotagNode:
    """Deactivate (it stays on contacts and in search, refuses placements) or reactivate a tag.

    Admins only; doing it twice changes nothing.
    """
    contacts.set_infotag_active(actor, principal.roles, tag_id, active=action == "reactivate")
    return _node(contacts.infotag_catalogue(), tag_id)


# ------------------------------------------------------------- error mapping

_STATUS: list[tuple[type[Exception], int]] = [
    (domain.ContactNotFoundError, 404),
    (domain.InfotagNotPlacedError, 404),
    (infotag_rules.InfotagNotFoundError, 404),
    (infotag_rules.AdminRequiredError, 403),
    (infotag_rules.InfotagNameTakenError, 409),
    (infotag_rules.InfotagCycleError, 409),
    (infotag_rules.InactiveInfotagError, 409),
    (domain.NoPhotoError, 404),
    (PhotoNotStoredError, 404),
    (domain.VersionConflictError, 409),
    (domain.ConcurrentModificationError, 409),
    (domain.DuplicateContactError, 409),
    (domain.PossibleDuplicateError, 409),
    (domain.ContactArchivedError, 409),
    (domain.ContactNotArchivedError, 409),
    (domain.FormerEmploymentError, 409),
    (domain.SameCompanyJobChangeError, 409),
    (domain.ContactWithdrawnError, 409),
    (domain.NotAJobChangeError, 409),
    (domain.ContactErasedError, 410),
    (PersonErasedError, 410),
    (domain.NothingToChangeError, 422),
    (domain.InvalidValueError, 422),
    (infotag_rules.InvalidInfotagNameError, 422),
    (PhotoTooLargeError, 413),
    (UnsupportedPhotoTypeError, 415),
]


def _error_body(exc: Exception) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, domain.DuplicateContactError):
        body["field"] = exc.field
        body["existing_contact_id"] = str(exc.existing_id)
    elif isinstance(exc, domain.PossibleDuplicateError):
        body["error"] = exc.code
        body["candidates"] = [
            DuplicateCandidate.model_validate(asdict(c)).model_dump(mode="json")
            for c in exc.candidates
        ]
    elif isinstance(exc, domain.VersionConflictError):
        body["current_version"] = exc.actual
    elif isinstance(exc, domain.FormerEmploymentError) and exc.successor_id:
        body["successor_id"] = str(exc.successor_id)
    return body


def install_error_handlers(app: FastAPI) -> None:
    """Map named errors to HTTP statuses, in this one place; every body has the one shape."""
    install_error_body(app, "kontakt.contacts")
    for exc_type, status in _STATUS:

        def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            request.state.error = type(exc).__name__
            return JSONResponse(_error_body(exc), status_code=status)

        app.add_exception_handler(exc_type, handler)

    def unavailable(request: Request, exc: Exception) -> JSONResponse:
        request.state.error = type(exc).__name__
        log.warning("database unavailable: %s", exc)
        return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)

    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(PersistenceError, unavailable)
    # The person keys and photos have a pool of their own, outside the library: its
    # connections broken by a restart (admin shutdown) or none to be had are an outage too.
    app.add_exception_handler(psycopg.OperationalError, unavailable)
    app.add_exception_handler(PoolTimeout, unavailable)


class ObservabilityMiddleware:
    """Gives each request a correlation id (logs, events) and counts commands by outcome.

    A plain ASGI middleware: Starlette's decorator-style middleware costs a task and
    a stream per request, a measurable share of a command's CPU.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        # A refused id is answered 422 by the route; it is never echoed or logged.
        usable = 0 < len(given) <= 200 and forbidden_character(given) is None
        cid = given if usable else str(uuid4())
        state = scope.setdefault("state", {})
        state["correlation_id"] = cid
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-correlation-id", cid.encode("latin-1")),
                ]
            await send(message)

        token = correlation_id.set(cid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)
            route = scope.get("route")
            if (
                scope["method"] != "GET"
                and route is not None
                and scope["path"].startswith("/contacts")
            ):
                self._count(getattr(route, "name", "unknown"), status, state, started)

    @staticmethod
    def _count(command: str, status: int, state: dict[str, Any], started: float) -> None:
        m = metrics()
        outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
        m.commands.labels(command=command, outcome=outcome).inc()
        m.command_seconds.labels(command=command).observe(time.perf_counter() - started)
        if status >= 400:
            error = state.get("error") or ("InvalidInput" if status == 422 else f"HTTP{status}")
            m.command_errors.labels(command=command, error=error).inc()


def install_observability(app: FastAPI) -> None:
    """Correlation ids and command metrics for every request."""
    app.add_middleware(ObservabilityMiddleware)
