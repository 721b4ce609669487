"""The web UI: the contact page as server-rendered HTML, over the contacts and query APIs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.web.client import ApiError, Apis, ApiUnavailableError
from services.web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    MESSAGES,
    choose_language,
    format_when,
    translator,
)
from services.web.session import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    CsrfError,
    Session,
    check_csrf,
    dump_session,
    load_session,
)
from shared.auth import ADMIN_ROLE, AuthError, mint_token, verify_token
from shared.contract.contacts import DETAIL_FIELDS, JOB_DETAILS, REQUIRED_DETAILS
from shared.lifecycle import serve_app
from shared.observability import configure_logging, install_health
from shared.settings import KontaktSettings
from shared.text import forbidden_character

log = logging.getLogger("kontakt.web")

HERE = FilePath(__file__).parent

#: The contact window's tabs, in the page's order: key, label.
TABS = [
    ("details", "tab_details"),
    ("infotags", "tab_infotags"),
    ("photo", "tab_photo"),
    ("opportunities", "tab_opportunities"),
    ("campaigns", "tab_campaigns"),
    ("projects", "tab_projects"),
    ("more", "tab_more"),
    ("employments", "tab_employments"),
]
TAB_KEYS = {key for key, _ in TABS}
STATUSES = ("current", "former", "archived")
PAGE_SIZE = 20
#: History entries ("Mere...") per page.
HISTORY_PAGE = 25
#: Activities (e-mails on Detaljer) per page.
ACTIVITY_PAGE = 20
#: Every label key, for templates that show a value's label only when there is one.
LABELS = frozenset(MESSAGES["en"])


class SignInRequiredError(Exception):
    """The page needs a signed-in user and there is none."""


@dataclass
class Ui:
    """One request's view of the user: session, language, labels and API token."""

    session: Session
    language: str
    t: Callable[..., str]
    user: str | None
    roles: list[str]
    token: str | None
    dev: bool
    cookies: dict[str, str] = field(default_factory=dict)

    def need_token(self) -> str:
        """The bearer token for the APIs; SignInRequiredError without one."""
        if self.token is None:
            raise SignInRequiredError()
        return self.token


def _settings(request: Request) -> KontaktSettings:
    settings: KontaktSettings = request.app.state.settings
    return settings


def _apis(request: Request) -> Apis:
    apis: Apis = request.app.state.apis
    return apis


def get_ui(request: Request) -> Ui:
    """The request's session, language and credentials."""
    settings = _settings(request)
    session = load_session(settings, request.cookies.get(SESSION_COOKIE))
    language = choose_language(
        request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language")
    )
    dev = settings.uses_dev_secrets()
    user, roles, token = None, [], None
    if dev and session.user:
        user, roles = session.user, session.roles
        token = mint_token(settings, user, roles, SESSION_SECONDS)
    elif not dev:
        # In production a proxy in front signs the user in and passes their token on.
        given = request.headers.get(settings.web_token_header, "")
        given = given.removeprefix("Bearer ").strip()
        if given:
            try:
                principal = verify_token(given, settings)
            except AuthError:
                principal = None
            if principal is not None:
                user, roles, token = principal.user_id, sorted(principal.roles), given
    return Ui(session, language, translator(language), user, roles, token, dev)


UiDep = Annotated[Ui, Depends(get_ui)]


async def checked_form(request: Request, ui: UiDep) -> FormData:
    """The POSTed form, once its CSRF token proved it came from one of our pages."""
    form = await request.form()
    check_csrf(ui.session, form.get("csrf"))
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def _finish(request: Request, ui: Ui, response: Response) -> Response:
    # Every page re-signs the session: a first visit gets one (its forms need the CSRF
    # token), and a day's work keeps it alive.
    response.set_cookie(
        SESSION_COOKIE,
        dump_session(_settings(request), ui.session),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    for name, value in ui.cookies.items():
        response.set_cookie(
            name, value, max_age=365 * 86400, httponly=True, samesite="lax", path="/"
        )
    return response


def render(request: Request, ui: Ui, template: str, status: int = 200, **context: Any) -> Response:
    """A page (or an htmx fragment) in the user's language."""
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": ui.t,
            "lang": ui.language,
            "languages": LANGUAGES,
            "csrf": ui.session.csrf,
            "user": ui.user,
            "roles": ui.roles,
            "dev": ui.dev,
            **context,
        },
        status_code=status,
    )
    return _finish(request, ui, response)


def redirect(request: Request, ui: Ui, url: str) -> Response:
    """See other: where a form's result is shown (POST, redirect, GET)."""
    return _finish(request, ui, RedirectResponse(url, status_code=303))


def _local(url: object) -> str:
    """A same-site path to go back to; anything else becomes the contact list."""
    if (
        isinstance(url, str)
        and url.startswith("/")
        and not url.startswith("//")
        and "\\" not in url
        and forbidden_character(url) is None
    ):
        return url
    return "/contacts"


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _int(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def contact_url(contact_id: object, tab: str = "details", version: int | None = None) -> str:
    """The contact window at a tab, waiting for a version when one is given."""
    params: dict[str, Any] = {"tab": tab}
    if version is not None:
        params["v"] = version
    return f"/contacts/{contact_id}?{urlencode(params)}"


# ------------------------------------------------------------------ pages


async def sign_in_page(request: Request, ui: UiDep) -> Response:
    """The sign-in form of local runs (development secrets); else where to sign in."""
    return render(request, ui, "sign_in.html", status=200 if ui.dev else 401)


async def sign_in(request: Request, ui: UiDep, form: FormDep) -> Response:
    """Sign in as the user named (local runs only)."""
    if not ui.dev:
        return render(request, ui, "sign_in.html", status=404)
    name = _text(form, "user") or ""
    error = None
    if not name or len(name) > 200 or forbidden_character(name) is not None:
        error = "user_name"
    if error:
        return render(request, ui, "sign_in.html", status=422, error=error, name=name)
    roles = [ADMIN_ROLE] if form.get("admin") == "on" else []
    # A new CSRF token with every sign-in, so a token seen before it is of no use after.
    ui.session = Session(user=name, roles=roles)
    return redirect(request, ui, "/contacts")


async def sign_out(request: Request, ui: UiDep, form: FormDep) -> Response:
    """Forget the signed-in user."""
    ui.session = Session()
    return redirect(request, ui, "/sign-in")


async def switch_language(request: Request, ui: UiDep, form: FormDep) -> Response:
    """Remember the language chosen and go back to the page."""
    lang = form.get("lang")
    if isinstance(lang, str) and lang in LANGUAGES:
        ui.cookies[LANGUAGE_COOKIE] = lang
    return redirect(request, ui, _local(form.get("next")))


async def home(request: Request, ui: UiDep) -> Response:
    """The contact list."""
    return redirect(request, ui, "/contacts")


async def contact_list(
    request: Request,
    ui: UiDep,
    name: Annotated[str | None, Query(max_length=200)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    infotag: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[list[str] | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Contacts by name, e-mail, phone, free text, infotag and status, a page at a time."""
    token = ui.need_token()
    chosen = [s for s in status or [] if s in STATUSES] or ["current"]
    criteria = {"name": name, "email": email, "phone": phone, "q": q, "infotag": infotag}
    error = None
    page: dict[str, Any] = {"total": 0, "items": [], "limit": PAGE_SIZE, "offset": offset}
    try:
        page = await _apis(request).read(
            token, "/contacts", **criteria, status=chosen, limit=PAGE_SIZE, offset=offset
        )
    except ApiError as exc:
        if exc.status >= 500:
            raise
        error = exc.detail
    given = {k: v for k, v in criteria.items() if v}

    def page_url(at: int) -> str:
        return "/contacts?" + urlencode({**given, "status": chosen, "offset": at}, doseq=True)

    context = {
        "criteria": criteria,
        "statuses": STATUSES,
        "chosen": chosen,
        "page": page,
        "error": error,
        "previous_url": page_url(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next_url": page_url(offset + PAGE_SIZE) if offset + PAGE_SIZE < page["total"] else None,
    }
    # htmx asks for the results alone; restoring its history it wants the whole page.
    fragment = (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )
    status_code = 422 if error else 200
    return render(request, ui, "_results.html" if fragment else "list.html", status_code, **context)


def _create_fields() -> list[str]:
    return ["company_name", "company_id", *DETAIL_FIELDS, "started_on"]


async def new_contact_page(request: Request, ui: UiDep) -> Response:
    """The form that creates a contact."""
    ui.need_token()
    return render(request, ui, "new.html", values={"company_id": str(uuid4())}, errors={})


async def create_contact(request: Request, ui: UiDep, form: FormDep) -> Response:
    """Create a contact; a duplicate shows the existing one."""
    token = ui.need_token()
    values = {name: _text(form, name) for name in _create_fields()}
    body: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    # The user said the look-alikes shown are other people (a possible duplicate's 409).
    distinct = [v for v in form.getlist("distinct_from") if isinstance(v, str)]
    if distinct:
        body["distinct_from"] = distinct
    try:
        result = await _apis(request).command(token, "POST", "/contacts", json=body)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return render(
            request,
            ui,
            "new.html",
            status=exc.status,
            values=values,
            errors=exc.field_errors(),
            problem=exc,
            distinct_from=distinct,
        )
    return redirect(request, ui, contact_url(result["contact_id"], version=result["version"]))


def _employment_of(employments: list[dict[str, Any]], contact_id: UUID) -> dict[str, Any] | None:
    """The row of the Employments list that is this contact version."""
    return next((e for e in employments if e["contact_id"] == str(contact_id)), None)


async def contact_page(
    request: Request,
    ui: Ui,
    contact_id: UUID,
    tab: str = "details",
    version: int | None = None,
    status: int = 200,
    before: int | None = None,
    activity_offset: int = 0,
    **context: Any,
) -> Response:
    """The contact window: header and every tab, read from the query API.

    `before` pages the history ("Mere..."): its entries older than that version;
    `activity_offset` pages the activities on Detaljer.
    """
    token = ui.need_token()
    apis = _apis(request)
    base = f"/contacts/{contact_id}"
    notice = context.pop("notice", None)
    try:
        details = await apis.read(token, base, min_version=version)
    except ApiError as exc:
        if exc.status != 412:
            raise
        # Saved, but the read model is behind: show what it has, and say so.
        notice = "not_yet"
        details = await apis.read(token, base)
        version = None
    parts = await asyncio.gather(
        apis.read(token, f"{base}/activities", limit=ACTIVITY_PAGE, offset=activity_offset),
        apis.read(token, f"{base}/infotags"),
        apis.read(token, f"{base}/opportunities"),
        apis.read(token, f"{base}/campaigns"),
        apis.read(token, f"{base}/projects"),
        apis.read(token, f"{base}/employments"),
        apis.read(token, f"{base}/history", limit=HISTORY_PAGE, before_version=before),
        apis.read(token, f"{base}/provenance"),
        apis.read(token, f"{base}/photos"),
        apis.command_get(token, "/infotags"),
    )
    (activities, tags, opportunities, campaigns, projects, employments, history, provenance,
     photos, catalogue) = parts  # fmt: skip
    placed = {t.get("tag_id") for t in tags}
    current = next((e for e in employments if e["status"] == "current"), None)
    this = _employment_of(employments, contact_id)
    mine = next((s for s in details["outlook_sync"] if s["user_id"] == ui.user), None)
    return render(
        request,
        ui,
        "contact.html",
        status=status,
        c=details,
        tab=tab if tab in TAB_KEYS else "details",
        tabs=TABS,
        activities=activities,
        tags=tags,
        catalogue=[n for n in catalogue["infotags"] if n["active"] and n["tag_id"] not in placed],
        items={"opportunities": opportunities, "campaigns": campaigns, "projects": projects},
        employments=employments,
        employment=this,
        history=history["items"],
        history_next=history["next_before_version"],
        history_paged=before is not None,
        provenance=provenance,
        earlier_photos=[p for p in photos if not p["current"]],
        current_version=current if current and current["contact_id"] != str(contact_id) else None,
        my_sync=mine,
        labels=LABELS,
        admin=ADMIN_ROLE in ui.roles,
        detail_fields=DETAIL_FIELDS,
        required=REQUIRED_DETAILS,
        job_fields=JOB_DETAILS,
        notice=notice,
        errors=context.pop("errors", {}),
        values=context.pop("values", None),
        problem=context.pop("problem", None),
        **context,
    )


async def show_contact(
    request: Request,
    ui: UiDep,
    contact_id: UUID,
    tab: Annotated[str, Query(max_length=20)] = "details",
    v: Annotated[int | None, Query(ge=1)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    a: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """The contact window, waiting for version v when a command just made it.

    `before` pages the history, `a` (an offset) the activities.
    """
    notice = "saved" if v else None
    return await contact_page(
        request, ui, contact_id, tab, v, before=before, activity_offset=a, notice=notice
    )


async def _command(
    request: Request,
    ui: Ui,
    contact_id: UUID,
    tab: str,
    method: str,
    path: str,
    **kwargs: Any,
) -> Response:
    """Send a command; show its result (read your writes), or the page with the API's error."""
    token = ui.need_token()
    try:
        result = await _apis(request).command(token, method, path, **kwargs)
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        return await contact_page(
            request,
            ui,
            contact_id,
            tab,
            status=exc.status,
            problem=exc,
            errors=exc.field_errors(),
            values=kwargs.get("json") if tab == "details" else None,
        )
    target = result.get("contact_id", contact_id)
    return redirect(request, ui, contact_url(target, tab, result["version"]))


async def _form_command(
    request: Request,
    ui: Ui,
    form: FormData,
    contact_id: UUID,
    tab: str,
    method: str,
    path: str,
    json: Any = None,
) -> Response:
    """_command against the version the form showed (its `version` field, sent as If-Match)."""
    expected = _int(form.get("version"))
    return await _command(
        request, ui, contact_id, tab, method, path, json=json, expected_version=expected
    )


async def change_details(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Save the Details form: only the fields that changed, against the version shown."""
    token = ui.need_token()
    current = await _apis(request).command_get(token, f"/contacts/{contact_id}")
    changes = {}
    for name in DETAIL_FIELDS:
        value = _text(form, name)
        if name in REQUIRED_DETAILS and value is None:
            value = ""  # the API says why a name cannot be empty
        if value != current.get(name):
            changes[name] = value
    if not changes:
        return redirect(request, ui, contact_url(contact_id))
    return await _form_command(
        request, ui, form, contact_id, "details", "PATCH", f"/contacts/{contact_id}", json=changes
    )


async def switch_outlook_sync(
    request: Request, ui: UiDep, form: FormDep, contact_id: UUID
) -> Response:
    """Switch the signed-in user's Outlook sync of the contact on or off."""
    return await _command(
        request,
        ui,
        contact_id,
        "details",
        "PUT",
        f"/contacts/{contact_id}/outlook-sync/me",
        json={"enabled": form.get("enabled") == "true"},
    )


async def place_infotag(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Place a catalogue infotag on the contact."""
    tag_id = _text(form, "tag_id")
    try:
        body = {"tag_id": str(UUID(tag_id or ""))}
    except ValueError:
        body = {"tag_id": tag_id or ""}  # the API says what is wrong with it
    return await _command(
        request, ui, contact_id, "infotags", "POST", f"/contacts/{contact_id}/infotags", json=body
    )


async def remove_infotag(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Take an infotag off the contact (by catalogue id, or by the name it was placed as)."""
    tag = _text(form, "tag") or "-"
    return await _command(
        request,
        ui,
        contact_id,
        "infotags",
        "DELETE",
        f"/contacts/{contact_id}/infotags/{quote(tag, safe='')}",
    )


async def upload_photo(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Upload the photo chosen; the API judges its type and size."""
    upload = form.get("photo")
    limit = _settings(request).photo_max_bytes
    if not isinstance(upload, UploadFile):
        data, media_type = b"", "application/octet-stream"
    else:
        data = await upload.read(limit + 1)
        media_type = upload.content_type or "application/octet-stream"
    return await _command(
        request,
        ui,
        contact_id,
        "photo",
        "PUT",
        f"/contacts/{contact_id}/photo",
        content=data,
        content_type=media_type,
    )


async def remove_photo(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Remove the contact's photo."""
    return await _command(
        request, ui, contact_id, "photo", "DELETE", f"/contacts/{contact_id}/photo"
    )


def _image(upstream: Any) -> Response:
    return Response(
        upstream.content,
        media_type=upstream.headers.get("content-type"),
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"},
    )


async def photo(request: Request, ui: UiDep, contact_id: UUID) -> Response:
    """The contact's photo, from the query API with the user's token."""
    return _image(await _apis(request).photo(ui.need_token(), contact_id))


async def earlier_photo(
    request: Request,
    ui: UiDep,
    contact_id: UUID,
    content_hash: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
) -> Response:
    """A photo the contact had, by its content hash, from the contacts API."""
    return _image(await _apis(request).photo(ui.need_token(), contact_id, content_hash))


async def archive(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Archive the contact."""
    return await _form_command(
        request, ui, form, contact_id, "details", "POST", f"/contacts/{contact_id}/archive"
    )


async def restore(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Restore an archived contact."""
    return await _form_command(
        request, ui, form, contact_id, "details", "POST", f"/contacts/{contact_id}/restore"
    )


#: The most companies a job change's company field suggests.
COMPANY_SUGGESTIONS = 10


async def _companies(request: Request, token: str, name: str | None) -> list[dict[str, Any]]:
    """The companies whose name, or one of its words, begins with the name given."""
    if not name or len(name) > 200:
        return []
    try:
        found: list[dict[str, Any]] = await _apis(request).read(
            token, "/companies", q=name, limit=COMPANY_SUGGESTIONS
        )
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        return []  # a name the API refuses (a control character) matches no company
    return found


async def company_suggestions(
    request: Request, ui: UiDep, company_name: str | None = None
) -> Response:
    """The company field's suggestions as typed: the options of its datalist (htmx)."""
    name = (company_name or "").strip()
    found = await _companies(request, ui.need_token(), name)
    return render(request, ui, "_companies.html", companies=found)


async def _company_id_for(request: Request, token: str, name: str) -> str:
    """The id of the company of that name (case aside), or a new company's id if none."""
    same = [
        c
        for c in await _companies(request, token, name)
        if c["company_name"].casefold() == name.casefold()
    ]
    # Of several companies of one name, the one with the most contacts is the likely one.
    best = max(same, key=lambda c: int(c["contacts"]), default=None)
    return str(best["company_id"]) if best else str(uuid4())


async def change_job(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Record a job change: the new version opens on its Employments tab.

    A company picked from the suggestions comes with its id; a name typed without one is
    that company if one has the name, else a new company.
    """
    names = ["company_id", "company_name", *JOB_DETAILS, "effective_on"]
    body = {n: v for n in names if (v := _text(form, n)) is not None}
    if "company_id" not in body and "company_name" in body:
        body["company_id"] = await _company_id_for(request, ui.need_token(), body["company_name"])
    return await _form_command(
        request,
        ui,
        form,
        contact_id,
        "employments",
        "POST",
        f"/contacts/{contact_id}/job-changes",
        json=body,
    )


async def undo_job_change(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Undo the job change that made this version: the former version is current again."""
    return await _form_command(
        request,
        ui,
        form,
        contact_id,
        "employments",
        "POST",
        f"/contacts/{contact_id}/job-change-undo",
    )


async def correct_employment(
    request: Request, ui: UiDep, form: FormDep, contact_id: UUID
) -> Response:
    """Correct this version's employment: only the fields the user changed are sent."""
    token = ui.need_token()
    shown = await _apis(request).read(token, f"/contacts/{contact_id}/employments")
    this = _employment_of(shown, contact_id) or {}
    body = {
        name: value
        for name in ("company_name", "company_id", "started_on")
        if (value := _text(form, name)) is not None and value != (this.get(name) or None)
    }
    return await _form_command(
        request,
        ui,
        form,
        contact_id,
        "employments",
        "POST",
        f"/contacts/{contact_id}/employment-corrections",
        json=body,
    )


async def _erase_page(
    request: Request, ui: Ui, contact_id: UUID, status: int = 200, **context: Any
) -> Response:
    if ADMIN_ROLE not in ui.roles:
        return render(request, ui, "error.html", status=403, message="admins_only")
    token = ui.need_token()
    apis = _apis(request)
    details, versions = await asyncio.gather(
        apis.read(token, f"/contacts/{contact_id}"),
        apis.read(token, f"/contacts/{contact_id}/employments"),
    )
    context.setdefault("errors", {})
    return render(request, ui, "erase.html", status=status, c=details, versions=versions, **context)


async def erase_page(request: Request, ui: UiDep, contact_id: UUID) -> Response:
    """What an erasure does, for an admin to confirm with a reason."""
    return await _erase_page(request, ui, contact_id)


async def erase(request: Request, ui: UiDep, form: FormDep, contact_id: UUID) -> Response:
    """Erase the person (admins): every version, after the confirmation form."""
    if ADMIN_ROLE not in ui.roles:
        return render(request, ui, "error.html", status=403, message="admins_only")
    reason = _text(form, "reason")
    if reason is None or form.get("confirm") != "yes":
        missing = (
            {"reason": ui.t("reason_needed")}
            if reason is None
            else {"confirm": ui.t("confirm_needed")}
        )
        return await _erase_page(request, ui, contact_id, 422, errors=missing, reason=reason)
    try:
        result = await _apis(request).command(
            ui.need_token(), "POST", f"/contacts/{contact_id}/erase", json={"reason": reason}
        )
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        errors = {"reason": msg} if (msg := exc.field_errors().get("reason")) else {}
        return await _erase_page(
            request, ui, contact_id, exc.status, problem=exc, errors=errors, reason=reason
        )
    version = next(
        (e["version"] for e in result["erased"] if e["contact_id"] == str(contact_id)), None
    )
    return redirect(request, ui, contact_url(contact_id, version=version))


# ------------------------------------------------------------------ the app


def _install_error_pages(app: FastAPI) -> None:
    async def sign_in_first(request: Request, exc: Exception) -> Response:
        ui = get_ui(request)
        if ui.dev:
            return redirect(request, ui, "/sign-in")
        return render(request, ui, "sign_in.html", status=401)

    async def csrf_failed(request: Request, exc: Exception) -> Response:
        return render(request, get_ui(request), "error.html", status=403, message="csrf_failed")

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        ui = get_ui(request)
        if exc.status == 401:
            return await sign_in_first(request, exc)
        if exc.status >= 500:
            log.warning("API error %s: %s", exc.status, exc.detail)
            return render(request, ui, "error.html", status=503, message="unavailable")
        message = "not_found" if exc.status in (404, 410) else None
        return render(
            request, ui, "error.html", status=exc.status, message=message, detail=exc.detail
        )

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("API unreachable: %s", exc)
        return render(request, get_ui(request), "error.html", status=503, message="unavailable")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = "page_not_found" if exc.status_code == 404 else None
        return render(
            request,
            get_ui(request),
            "error.html",
            status=exc.status_code,
            message=message,
            detail=str(exc.detail),
        )

    async def invalid(request: Request, exc: Exception) -> Response:
        return render(
            request, get_ui(request), "error.html", status=422, message=None, detail=str(exc)
        )

    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(SignInRequiredError, sign_in_first)
    app.add_exception_handler(CsrfError, csrf_failed)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ApiUnavailableError, unavailable)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


#: Every response's security headers: only our own scripts, styles and images, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self';"
    " script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class ResponseHeadersMiddleware:
    """Adds SECURITY_HEADERS and a `Server-Timing` header to every response (plain ASGI).

    Server-Timing says how long the server took to the response's start; pages are
    rendered whole before they start, so it is their server time (what browsers'
    developer tools and the benchmarks read).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                given = {k.lower() for k, _ in message.get("headers", [])}
                took = (time.perf_counter() - started) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    *[
                        (k.lower().encode(), v.encode())
                        for k, v in SECURITY_HEADERS.items()
                        if k.lower().encode() not in given
                    ],
                    (b"server-timing", f"app;dur={took:.2f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_web_app(settings: KontaktSettings | None = None) -> FastAPI:
    """The web UI; settings come from the environment unless given."""
    settings = settings or KontaktSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.apis = Apis(settings)
        try:
            yield
        finally:
            await app.state.apis.aclose()

    app = FastAPI(
        title="Kontakt web", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["contact_url"] = contact_url
    zone = ZoneInfo(settings.web_time_zone)

    @pass_context
    def when(context: Any, value: object) -> str:
        return format_when(value, context.get("lang", LANGUAGES[0]), zone)

    templates.env.filters["when"] = when
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    html: dict[str, Any] = {"response_class": HTMLResponse}
    app.add_api_route("/", home, methods=["GET"], **html)
    app.add_api_route("/sign-in", sign_in_page, methods=["GET"], **html)
    app.add_api_route("/sign-in", sign_in, methods=["POST"], **html)
    app.add_api_route("/sign-out", sign_out, methods=["POST"], **html)
    app.add_api_route("/language", switch_language, methods=["POST"], **html)
    app.add_api_route("/contacts", contact_list, methods=["GET"], **html)
    app.add_api_route("/contacts/new", new_contact_page, methods=["GET"], **html)
    app.add_api_route("/contacts/new", create_contact, methods=["POST"], **html)
    app.add_api_route("/companies", company_suggestions, methods=["GET"], **html)
    one = "/contacts/{contact_id}"
    app.add_api_route(one, show_contact, methods=["GET"], **html)
    app.add_api_route(f"{one}/photo", photo, methods=["GET"])
    app.add_api_route(f"{one}/photos/{{content_hash}}", earlier_photo, methods=["GET"])
    app.add_api_route(f"{one}/erase", erase_page, methods=["GET"], **html)
    for path, endpoint in [
        ("details", change_details),
        ("outlook-sync", switch_outlook_sync),
        ("infotags", place_infotag),
        ("infotags/remove", remove_infotag),
        ("photo", upload_photo),
        ("photo/remove", remove_photo),
        ("archive", archive),
        ("restore", restore),
        ("job-change", change_job),
        ("job-change-undo", undo_job_change),
        ("employment-correction", correct_employment),
        ("erase", erase),
    ]:
        app.add_api_route(f"{one}/{path}", endpoint, methods=["POST"], **html)
    _install_error_pages(app)
    app.add_middleware(ResponseHeadersMiddleware)

    async def ready() -> None:
        # Ready when both APIs the pages are made from answer.
        apis: Apis = app.state.apis
        for client in (apis.contacts, apis.query):
            (await client.get("/health/live", timeout=3)).raise_for_status()

    async def status() -> dict[str, Any]:
        return {
            "contacts_api": settings.contacts_api_url,
            "query_api": settings.query_api_url,
            "sign_in": "local (development secrets)" if settings.uses_dev_secrets() else "proxy",
        }

    install_health(app, "web", ready, status=status)
    return app


def main(host: str | None = None, port: int | None = None) -> None:
    """Run the web UI in the foreground (host and port default to settings)."""
    settings = KontaktSettings()
    configure_logging("web", settings.log_level, settings.log_json)
    app = create_web_app(settings)
    asyncio.run(serve_app(app, host or settings.web_host, port or settings.web_port))
