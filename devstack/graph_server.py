"""A Graph-compatible server for tests and local runs (in memory, one process).

It implements what the sync worker uses, as strictly as Graph does: the client-credentials
token endpoint (`/{tenant}/oauth2/v2.0/token`, client secret and a `.default` scope
required), contact folders, contacts CRUD (whole item in answers, `@odata.etag`,
`If-Match` -> 412, unknown properties or wrong JSON types -> 400, malformed ids -> 400),
paging (10 items by default, `$top`, `$skip`, `@odata.nextLink`), `photo/$value` (GET and
PUT only, as for Graph contacts), the single-value extended-property `$filter`, `$batch`
(at most 20, unique ids, Content-Type with a body, `dependsOn` to known ids, 424 after a
failed dependency), at most 4 concurrent requests per app and mailbox (429
ApplicationThrottled beyond), at most 3 e-mail addresses and 2 business phones (400),
request bodies up to 4 MB (413 beyond), `request-id`/`client-request-id` headers.
Mailboxes exist only once provisioned (`PUT /_admin/users/{upn}` or `--mailboxes`);
any other mailbox is 404 ErrorInvalidUser.

Fault injection (settable at run time): at `rate`, a Graph request gets one of
429 with Retry-After, 503, a slow response, or a dropped connection (the request is
applied, then the connection closes before the response is complete: the ambiguous
case a client must survive without duplicates).

Inspection and test control under `/_admin` (no auth, no faults): stats, faults,
a user's items, deleting an item as the user would in Outlook, forbidding a mailbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_EMAILS = 3
MAX_BUSINESS_PHONES = 2
MAX_PHOTO_BYTES = 4 * 1024 * 1024
MAX_BATCH = 20
MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_PAGE = 10
MAX_PAGE = 1000
ID_PATTERN = re.compile(r"[A-Za-z0-9_=+/-]{16,}")
MAILBOX_CONCURRENCY = 4
FAULT_KINDS = ("429", "503", "slow", "drop")

CONTACT_FIELDS = {
    "givenName",
    "surname",
    "displayName",
    "middleName",
    "nickName",
    "companyName",
    "jobTitle",
    "department",
    "emailAddresses",
    "businessPhones",
    "homePhones",
    "mobilePhone",
    "categories",
    "personalNotes",
    "singleValueExtendedProperties",
}
STRING_FIELDS = {
    "givenName",
    "surname",
    "displayName",
    "middleName",
    "nickName",
    "companyName",
    "jobTitle",
    "department",
    "mobilePhone",
    "personalNotes",
}
STRING_LIST_FIELDS = {"businessPhones", "homePhones", "categories"}


@dataclass
class Faults:
    """Fault injection: the share of Graph requests that get one of `kinds`."""

    rate: float = 0.0
    kinds: list[str] = field(default_factory=lambda: list(FAULT_KINDS))
    retry_after: float = 1.0
    slow_seconds: float = 2.0
    seed: int | None = None
    #: Faults for the next requests, in order, before the dice decide again.
    script: list[str] = field(default_factory=list)


@dataclass
class Reply:
    """A response to send: status, JSON (or raw bytes) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


def _etag(item: dict[str, Any]) -> str:
    return f'W/"{item["changeKey"]}"'


def _type_error(data: dict[str, Any]) -> str | None:
    """The first property whose JSON type Graph would refuse, if any."""
    for key, value in data.items():
        if value is None:
            continue
        if key in STRING_FIELDS and not isinstance(value, str):
            return key
        if key in STRING_LIST_FIELDS and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return key
        if key == "emailAddresses" and not (
            isinstance(value, list)
            and all(
                isinstance(e, dict)
                and set(e) <= {"address", "name"}
                and all(isinstance(v, str) for v in e.values())
                for e in value
            )
        ):
            return key
        if key == "singleValueExtendedProperties" and not isinstance(value, list):
            return key
    return None


def graph_error(status: int, code: str, message: str, **headers: str) -> Reply:
    """An error in Graph's shape."""
    return Reply(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        },
        headers,
    )


class GraphState:
    """The mailboxes' folders, contacts and photos, plus tokens and counters."""

    def __init__(self, token_ttl: int = 3599, client_secret: str | None = None) -> None:
        self.token_ttl = token_ttl
        self.client_secret = client_secret
        #: token -> (expiry, client id): throttling counts per app and mailbox.
        self.tokens: dict[str, tuple[float, str]] = {}
        self.mailboxes: set[str] = set()
        self.base_url = "http://localhost/v1.0"
        self.folders: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.contacts: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.photos: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.forbidden: set[str] = set()
        self.stats: Counter[str] = Counter()
        self.inflight: Counter[str] = Counter()
        self.max_inflight: Counter[str] = Counter()
        self.faults = Faults()
        self.rng = random.Random()

    def reset(self) -> None:
        """Forget every mailbox and counter (tokens stay valid)."""
        self.folders.clear()
        self.contacts.clear()
        self.photos.clear()
        self.forbidden.clear()
        self.mailboxes.clear()
        self.stats.clear()
        self.max_inflight.clear()

    def set_faults(self, faults: Faults) -> None:
        """Change fault injection."""
        unknown = (set(faults.kinds) | set(faults.script)) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.faults = faults
        self.rng = random.Random(faults.seed)

    def pick_fault(self, allowed: tuple[str, ...] = FAULT_KINDS) -> str | None:
        """The fault to inject into this request, if any."""
        if self.faults.script and self.faults.script[0] in allowed:
            return self.faults.script.pop(0)
        kinds = [k for k in self.faults.kinds if k in allowed]
        if kinds and self.rng.random() < self.faults.rate:
            return self.rng.choice(kinds)
        return None

    # ------------------------------------------------------------------ token

    def issue_token(self, form: dict[str, str]) -> Reply:
        """The client-credentials grant."""
        self.stats["token_requests"] += 1
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        if not form.get("client_id"):
            return Reply(400, {"error": "invalid_request", "error_description": "client_id"})
        secret = form.get("client_secret")
        if not secret or (self.client_secret is not None and secret != self.client_secret):
            return Reply(
                401, {"error": "invalid_client", "error_description": "AADSTS7000215: secret"}
            )
        # Client credentials take only a resource's `.default` scope.
        if not form.get("scope", "").endswith("/.default"):
            return Reply(
                400, {"error": "invalid_scope", "error_description": "AADSTS1002012: .default"}
            )
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (time.time() + self.token_ttl, form["client_id"])
        return Reply(
            200, {"token_type": "Bearer", "expires_in": self.token_ttl, "access_token": token}
        )

    def authorized(self, header: str | None) -> str | None:
        """The app (client id) of a bearer token this server issued that has not expired."""
        if not header or not header.startswith("Bearer "):
            return None
        issued = self.tokens.get(header[7:])
        return issued[1] if issued is not None and issued[0] > time.time() else None

    # ------------------------------------------------------------------ Graph API

    def dispatch(
        self, method: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> Reply:
        """One Graph request (outside $batch or inside it)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 2 or parts[0] != "users":
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        user = parts[1].lower()
        if user in self.forbidden:
            return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials.")
        if user not in self.mailboxes:
            return graph_error(
                404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid."
            )
        rest = parts[2:]
        ctype = headers.get("content-type", "")
        if_match = headers.get("if-match")
        ids = rest[1:2] if rest[:1] in (["contacts"], ["contactFolders"]) else []
        if rest[:1] == ["contactFolders"] and rest[2:3] == ["contacts"]:
            ids += rest[3:4]
        if any(not ID_PATTERN.fullmatch(i) for i in ids):
            return graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        if method in ("POST", "PATCH", "PUT", "DELETE"):
            self.stats["writes"] += 1
            self.stats[f"writes_{method}"] += 1
        try:
            data = json.loads(body) if body and "json" in ctype else None
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid JSON body.")
        if data is not None and not isinstance(data, dict):
            return graph_error(400, "BadRequest", "The body must be a JSON object.")
        match rest:
            case ["contactFolders"]:
                if method == "GET":
                    return self._list_folders(user, query)
                if method == "POST":
                    return self._create_folder(user, data or {})
            case ["contactFolders", folder_id, "contacts"]:
                if folder_id not in self.folders[user]:
                    return graph_error(404, "ErrorItemNotFound", "The folder was not found.")
                if method == "GET":
                    return self._list_contacts(user, query, folder_id)
                if method == "POST":
                    return self._create_contact(user, folder_id, data or {})
            case ["contacts"] if method == "GET":
                return self._list_contacts(user, query, None)
            case ["contacts", item_id] | ["contactFolders", _, "contacts", item_id]:
                item = self.contacts[user].get(item_id)
                if item is None:
                    return graph_error(404, "ErrorItemNotFound", "The item was not found.")
                if method in ("PATCH", "DELETE") and if_match not in (None, "*", _etag(item)):
                    return graph_error(
                        412,
                        "ErrorIrresolvableConflict",
                        "The change key passed in the request does not match the current "
                        "change key of the item.",
                    )
                if method == "GET":
                    return Reply(200, self._view(item, query))
                if method == "PATCH":
                    return self._update_contact(user, item, data or {})
                if method == "DELETE":
                    del self.contacts[user][item_id]
                    self.photos.pop((user, item_id), None)
                    return Reply(204)
            case ["contacts", item_id, "photo", "$value"]:
                if item_id not in self.contacts[user]:
                    return graph_error(404, "ErrorItemNotFound", "The item was not found.")
                return self._photo(user, item_id, method, body, ctype)
        return graph_error(405, "Request_BadRequest", f"{method} is not supported on {path}.")

    def _list_folders(self, user: str, query: dict[str, str]) -> Reply:
        folders = list(self.folders[user].values())
        flt = query.get("$filter", "")
        m = re.fullmatch(r"\s*displayName eq '((?:[^']|'')*)'\s*", flt)
        if flt and not m:
            return graph_error(400, "ErrorInvalidUrlQueryFilter", "Unsupported $filter.")
        if m:
            name = m.group(1).replace("''", "'")
            folders = [f for f in folders if f["displayName"] == name]
        return self._page("contactFolders", user, None, folders, query)

    def _page(
        self,
        kind: str,
        user: str,
        folder_id: str | None,
        items: list[dict[str, Any]],
        query: dict[str, str],
    ) -> Reply:
        """One page of a collection, with `@odata.nextLink` when more follow."""
        try:
            top = int(query.get("$top", DEFAULT_PAGE))
            skip = int(query.get("$skip", 0))
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid $top or $skip.")
        if not 1 <= top <= MAX_PAGE or skip < 0:
            return graph_error(400, "BadRequest", f"$top must be 1..{MAX_PAGE}, $skip >= 0.")
        page = items[skip : skip + top]
        out: dict[str, Any] = {"value": page}
        if skip + top < len(items):
            path = f"/users/{quote(user, safe='@.')}/"
            path += f"contactFolders/{folder_id}/contacts" if folder_id else kind
            rest = {k: v for k, v in query.items() if k not in ("$top", "$skip")}
            link = urlencode({**rest, "$top": top, "$skip": skip + top}, quote_via=quote)
            out["@odata.nextLink"] = f"{self.base_url}{path}?{link}"
        return Reply(200, out)

    def _create_folder(self, user: str, data: dict[str, Any]) -> Reply:
        name = data.get("displayName")
        if not isinstance(name, str) or not name:
            return graph_error(400, "ErrorInvalidArgument", "displayName is required.")
        if any(f["displayName"] == name for f in self.folders[user].values()):
            return graph_error(409, "ErrorFolderExists", "A folder with this name exists.")
        folder = {"id": _graph_id(), "displayName": name, "parentFolderId": "contacts-root"}
        self.folders[user][folder["id"]] = folder
        return Reply(201, folder)

    @staticmethod
    def _check_limits(data: dict[str, Any]) -> Reply | None:
        unknown = set(data) - CONTACT_FIELDS
        if unknown:
            return graph_error(
                400,
                "RequestBodyRead",
                f"The property '{sorted(unknown)[0]}' does not exist on type "
                "'microsoft.graph.contact'.",
            )
        wrong = _type_error(data)
        if wrong:
            return graph_error(
                400, "RequestBodyRead", f"Cannot convert the value of property '{wrong}'."
            )
        if len(data.get("emailAddresses") or []) > MAX_EMAILS:
            return graph_error(
                400,
                "ErrorInvalidArgument",
                f"A contact can have at most {MAX_EMAILS} e-mail addresses.",
            )
        if len(data.get("businessPhones") or []) > MAX_BUSINESS_PHONES:
            return graph_error(
                400,
                "ErrorInvalidArgument",
                f"A contact can have at most {MAX_BUSINESS_PHONES} business phones.",
            )
        for prop in data.get("singleValueExtendedProperties") or []:
            if not isinstance(prop, dict) or not {"id", "value"} <= set(prop):
                return graph_error(
                    400, "ErrorInvalidProperty", "Extended property needs id, value."
                )
        return None

    def _create_contact(self, user: str, folder_id: str, data: dict[str, Any]) -> Reply:
        error = self._check_limits(data)
        if error:
            return error
        now = datetime.now(UTC).isoformat()
        item = {
            **data,
            "id": _graph_id(),
            "parentFolderId": folder_id,
            "createdDateTime": now,
            "lastModifiedDateTime": now,
            "changeKey": _graph_id()[:16],
        }
        self.contacts[user][item["id"]] = item
        return Reply(201, self._view(item, {}))

    def _update_contact(self, user: str, item: dict[str, Any], data: dict[str, Any]) -> Reply:
        error = self._check_limits(data)
        if error:
            return error
        props = {p["id"]: p for p in item.get("singleValueExtendedProperties", [])}
        for p in data.pop("singleValueExtendedProperties", None) or []:
            props[p["id"]] = p
        item.update(data)
        item["singleValueExtendedProperties"] = list(props.values())
        item["lastModifiedDateTime"] = datetime.now(UTC).isoformat()
        item["changeKey"] = _graph_id()[:16]
        return Reply(200, self._view(item, {}))

    def _list_contacts(self, user: str, query: dict[str, str], folder_id: str | None) -> Reply:
        items = [
            c
            for c in self.contacts[user].values()
            if folder_id is None or c["parentFolderId"] == folder_id
        ]
        flt = query.get("$filter", "")
        if flt:
            if "singleValueExtendedProperties/Any" not in flt:
                return graph_error(400, "ErrorInvalidUrlQueryFilter", "Unsupported $filter.")
            ids = re.findall(r"ep/id eq '([^']*)'", flt)
            values = set(re.findall(r"ep/value eq '([^']*)'", flt))
            if len(ids) != 1 or not values:
                return graph_error(400, "ErrorInvalidUrlQueryFilter", "Unsupported $filter.")
            items = [
                c
                for c in items
                if any(
                    p["id"].lower() == ids[0].lower() and p["value"] in values
                    for p in c.get("singleValueExtendedProperties", [])
                )
            ]
        items.sort(key=lambda c: c["id"])
        return self._page("contacts", user, folder_id, [self._view(c, query) for c in items], query)

    @staticmethod
    def _view(item: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        # Graph returns extended properties only when asked with $expand.
        view = {k: v for k, v in item.items() if k != "singleValueExtendedProperties"}
        view["@odata.etag"] = _etag(item)
        if "singleValueExtendedProperties" in query.get("$expand", ""):
            view["singleValueExtendedProperties"] = item.get("singleValueExtendedProperties", [])
        select = query.get("$select")
        if select:
            keep = {s.strip() for s in select.split(",")}
            keep |= {"id", "@odata.etag", "singleValueExtendedProperties"}
            view = {k: v for k, v in view.items() if k in keep}
        return view

    def _photo(self, user: str, item_id: str, method: str, body: bytes, ctype: str) -> Reply:
        key = (user, item_id)
        if method == "GET":
            if key not in self.photos:
                return graph_error(404, "ErrorItemNotFound", "The photo wasn't found.")
            data, media_type = self.photos[key]
            return Reply(200, raw=data, content_type=media_type)
        if method == "PUT":
            if not body:
                return graph_error(400, "ErrorInvalidArgument", "The photo is empty.")
            if len(body) >= MAX_PHOTO_BYTES:
                return graph_error(400, "ErrorInvalidArgument", "The photo must be under 4 MB.")
            self.photos[key] = (body, ctype or "application/octet-stream")
            return Reply(200)
        # Graph has no DELETE for a contact's photo (only for a user's or a group's).
        return graph_error(
            405, "ErrorInvalidRequest", f"{method} is not supported on a contact's photo."
        )

    # ------------------------------------------------------------------ inspection

    def items_of(self, user: str) -> list[dict[str, Any]]:
        """Every contact of a mailbox with its folder name, extended properties and photo."""
        folders = self.folders[user.lower()]
        out = []
        for c in sorted(self.contacts[user.lower()].values(), key=lambda c: c["id"]):
            photo = self.photos.get((user.lower(), c["id"]))
            out.append(
                {
                    **c,
                    "folderName": folders.get(c["parentFolderId"], {}).get("displayName"),
                    "photoSha256": hashlib.sha256(photo[0]).hexdigest() if photo else None,
                    "photoBytes": len(photo[0]) if photo else 0,
                }
            )
        return out


def _graph_id() -> str:
    return "AAMk" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


class DropConnectionError(Exception):
    """Raised after a partial response, so the server closes the connection."""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _encode(reply: Reply) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    if reply.raw is not None:
        payload, ctype = reply.raw, reply.content_type
    elif reply.body is None:
        payload, ctype = b"", ""
    else:
        payload, ctype = json.dumps(reply.body).encode(), "application/json"
    headers = [(k.lower().encode(), str(v).encode()) for k, v in reply.headers.items()]
    if ctype:
        headers.append((b"content-type", ctype.encode()))
    headers.append((b"content-length", str(len(payload)).encode()))
    return payload, headers


class GraphServer:
    """The ASGI app of the Graph-compatible server."""

    def __init__(self, state: GraphState | None = None) -> None:
        self.state = state or GraphState()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection event."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        path: str = scope["path"]
        method: str = scope["method"]
        drop = False
        if path.startswith("/_admin/"):
            reply = self.admin(method, path[len("/_admin/") :], body)
        elif path.endswith("/oauth2/v2.0/token") and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            reply = self.state.issue_token(form)
        elif path.startswith("/v1.0/"):
            self.state.base_url = f"{scope.get('scheme', 'http')}://{headers.get('host')}/v1.0"
            reply, drop = await self.graph(method, path[len("/v1.0") :], query, body, headers)
            # Every Graph answer names the request; the client's own id comes back as sent.
            request_id = str(uuid.uuid4())
            client_request_id = headers.get("client-request-id") or request_id
            reply.headers = {
                **reply.headers,
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
            if isinstance(reply.body, dict) and isinstance(reply.body.get("error"), dict):
                inner = reply.body["error"].setdefault("innerError", {})
                inner["request-id"] = request_id
                inner["client-request-id"] = client_request_id
        else:
            reply = graph_error(404, "NotFound", f"No route for {path}.")
        payload, raw_headers = _encode(reply)
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        if drop:
            # Half a response, then the connection closes: the client cannot know the outcome.
            await send({"type": "http.response.body", "body": payload[:1], "more_body": True})
            raise DropConnectionError("fault injection: connection dropped")
        await send({"type": "http.response.body", "body": payload})

    async def graph(
        self, method: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> tuple[Reply, bool]:
        """A Graph request: auth, fault injection, the mailbox's concurrency limit, dispatch."""
        state = self.state
        state.stats["requests"] += 1
        app = state.authorized(headers.get("authorization"))
        if app is None:
            return graph_error(401, "InvalidAuthenticationToken", "Access token is invalid."), False
        if len(body) > MAX_REQUEST_BYTES:
            return graph_error(
                413, "RequestEntityTooLarge", "The request body is larger than 4 MB."
            ), False
        # The MailboxConcurrency limit holds per app and mailbox.
        mailbox = f"{app}|{_mailbox(path)}" if _mailbox(path) else ""
        if mailbox and state.inflight[mailbox] >= MAILBOX_CONCURRENCY:
            state.stats["concurrency_rejections"] += 1
            return graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                **{"Retry-After": "1"},
            ), False
        # A request is in flight from its arrival to its answer, slow or not.
        state.inflight[mailbox] += 1
        if mailbox:
            state.max_inflight[mailbox] = max(state.max_inflight[mailbox], state.inflight[mailbox])
        try:
            fault = state.pick_fault()
            if fault:
                state.stats[f"fault_{fault}"] += 1
                state.stats["faults"] += 1
            if fault == "429":
                retry = f"{state.faults.retry_after:g}"
                return graph_error(
                    429, "TooManyRequests", "Too many requests.", **{"Retry-After": retry}
                ), False
            if fault == "503":
                return graph_error(503, "ServiceUnavailable", "Service unavailable."), False
            if fault == "slow":
                await asyncio.sleep(state.faults.slow_seconds)
            if path == "/$batch" and method == "POST":
                return await self.batch(body), fault == "drop"
            # A real service takes a moment; it lets concurrent requests overlap.
            await asyncio.sleep(0.002)
            reply = state.dispatch(method, path, query, body, headers)
        finally:
            state.inflight[mailbox] -= 1
        return reply, fault == "drop"

    async def batch(self, body: bytes) -> Reply:
        """JSON $batch: at most 20 requests, run in order, honouring dependsOn."""
        state = self.state
        try:
            requests = json.loads(body)["requests"]
        except (ValueError, KeyError, TypeError):
            return graph_error(400, "BadRequest", "Invalid batch payload.")
        invalid = _batch_error(requests)
        if invalid:
            return graph_error(400, *invalid)
        state.stats["batches"] += 1
        statuses: dict[str, int] = {}
        responses = []
        for r in requests:
            rid = str(r["id"])
            failed_dep = [d for d in r.get("dependsOn") or [] if statuses.get(str(d), 0) >= 400]
            if failed_dep:
                reply = graph_error(424, "FailedDependency", "A dependency failed.")
            else:
                fault = state.pick_fault(("429", "503"))
                if fault:
                    state.stats[f"fault_{fault}"] += 1
                    state.stats["faults"] += 1
                if fault == "429":
                    reply = graph_error(
                        429,
                        "TooManyRequests",
                        "Too many requests.",
                        **{"Retry-After": f"{state.faults.retry_after:g}"},
                    )
                elif fault == "503":
                    reply = graph_error(503, "ServiceUnavailable", "Service unavailable.")
                else:
                    url = str(r["url"])
                    path, _, qs = url.partition("?")
                    query = {k: v[-1] for k, v in parse_qs(qs).items()}
                    sub_headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
                    sub_body = json.dumps(r["body"]).encode() if "body" in r else b""
                    path = path if path.startswith("/") else f"/{path}"
                    state.stats["requests"] += 1
                    reply = state.dispatch(
                        str(r["method"]).upper(), path, query, sub_body, sub_headers
                    )
            statuses[rid] = reply.status
            responses.append(
                {"id": rid, "status": reply.status, "headers": reply.headers, "body": reply.body}
            )
        return Reply(200, {"responses": responses})

    def admin(self, method: str, path: str, body: bytes) -> Reply:
        """Inspection and test control."""
        state = self.state
        parts = [unquote(p) for p in path.strip("/").split("/")]
        match parts:
            case ["stats"] if method == "GET":
                counters = dict.fromkeys(("requests", "writes", "faults", "batches"), 0)
                counters["concurrency_rejections"] = 0
                counters.update(state.stats)
                inflight = max(state.max_inflight.values(), default=0)
                return Reply(200, {**counters, "max_inflight": inflight})
            case ["stats", "reset"] if method == "POST":
                state.stats.clear()
                state.max_inflight.clear()
                return Reply(200, {})
            case ["faults"] if method == "GET":
                return Reply(200, asdict(state.faults))
            case ["faults"] if method == "PUT":
                try:
                    state.set_faults(Faults(**json.loads(body or b"{}")))
                except (TypeError, ValueError) as exc:
                    return Reply(400, {"detail": str(exc)})
                return Reply(200, asdict(state.faults))
            case ["token-ttl", seconds] if method == "PUT":
                state.token_ttl = int(seconds)
                return Reply(204)
            case ["reset"] if method == "POST":
                state.reset()
                return Reply(200, {})
            case ["users", user] if method == "PUT":
                # Provision a mailbox: only provisioned mailboxes answer.
                state.mailboxes.add(user.lower())
                return Reply(204)
            case ["users", user, "contacts"] if method == "GET":
                return Reply(200, {"value": state.items_of(user)})
            case ["users", user, "contacts", item_id] if method == "DELETE":
                # As the user would in Outlook.
                if state.contacts[user.lower()].pop(item_id, None) is None:
                    return Reply(404, {"detail": "no such item"})
                state.photos.pop((user.lower(), item_id), None)
                return Reply(204)
            case ["forbidden", user] if method == "PUT":
                state.forbidden.add(user.lower())
                return Reply(204)
            case ["forbidden", user] if method == "DELETE":
                state.forbidden.discard(user.lower())
                return Reply(204)
        return Reply(404, {"detail": f"no admin route {method} {path}"})


def _batch_error(requests: Any) -> tuple[str, str] | None:
    """Why Graph refuses the $batch as a whole (code, message), if it does."""
    if not isinstance(requests, list) or not all(
        isinstance(r, dict) and {"id", "method", "url"} <= set(r) for r in requests
    ):
        return "BadRequest", "Each request needs id, method and url."
    if len(requests) > MAX_BATCH:
        return "MaximumValueExceeded", f"Number of batch request steps exceeds {MAX_BATCH}."
    ids = [str(r["id"]) for r in requests]
    if len(set(ids)) != len(ids):
        return "BadRequest", "Batch request ids must be unique."
    for r in requests:
        headers = {k.lower() for k in r.get("headers") or {}}
        if "body" in r and "content-type" not in headers:
            return "BadRequest", f"Request {r['id']}: a body needs a Content-Type header."
        for dep in r.get("dependsOn") or []:
            if str(dep) not in ids:
                return "BadRequest", f"Request {r['id']} depends on unknown id {dep}."
    return None


def _mailbox(path: str) -> str:
    parts = path.strip("/").split("/")
    return unquote(parts[1]).lower() if len(parts) > 1 and parts[0] == "users" else ""
