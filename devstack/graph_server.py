"""A Graph-compatible server for tests and local runs (in memory, one process).

It implements what the sync worker uses, as strictly as Graph does: the client-credentials
token endpoint (`/{tenant}/oauth2/v2.0/token`, client secret and a `.default` scope
required); contact folders (the default folder's children, by id, child folders, a
`displayName eq` filter); contacts CRUD in a folder or the default one (whole item in
answers, `@odata.etag`, `If-Match` -> 412, unknown properties or wrong JSON types -> 400,
malformed ids -> 400); paging (10 items by default, `$top`, `$skip`, `@odata.nextLink`);
`$select` (an unknown property -> 400); the extended-property `$filter` only in its
documented form `singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq
'{value}')` (Name case-sensitive, GUID, type and value not, `''` escapes a quote; any
other filter -> 400 ErrorInvalidUrlQueryFilter) and `$expand` of one property by its id;
`contacts/delta` of a folder (pages, a deltaLink, `@removed` for items deleted or moved
out, `Prefer: odata.maxpagesize`, 410 SyncStateNotFound for an unknown token);
`photo/$value` (GET and PUT only, as for Graph contacts) and the photo's metadata;
`$batch` (at most 20, unique ids, Content-Type with a body, `dependsOn` to known ids, 424
after a failed dependency); per app and mailbox at most 4 concurrent requests and 10,000
requests in 10 minutes (429 ApplicationThrottled with Retry-After beyond; the rate limit
and its window are constructor and CLI options); at most 3 e-mail addresses and 2
business phones (400); request bodies up to 4 MB (413 beyond);
`request-id`/`client-request-id` headers. Mailboxes exist only once provisioned
(`PUT /_admin/users/{upn}` or `--mailboxes`); any other mailbox is 404 ErrorInvalidUser.
docs/sync.md lists what it models and what not, each with its Graph documentation page.

Fault injection (settable at run time): at `rate`, a Graph request gets one of
429 with Retry-After, 503, a slow response, or a dropped connection (the request is
applied, then the connection closes before the response is complete: the ambiguous
case a client must survive without duplicates).

Inspection and test control under `/_admin` (no auth, no faults): stats, faults,
a user's items, deleting or moving an item as the user would in Outlook, expiring
every delta token, forbidding a mailbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import random
import re
import secrets
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from PIL import Image

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
MAILBOX_REQUEST_LIMIT = 10_000
MAILBOX_REQUEST_WINDOW = 600.0
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

FOLDER_FIELDS = frozenset({"id", "displayName", "parentFolderId"})
#: What `$select` may name on a contact (its extended properties come with `$expand`).
CONTACT_SELECTABLE = frozenset(
    (CONTACT_FIELDS - {"singleValueExtendedProperties"})
    | {"id", "parentFolderId", "createdDateTime", "lastModifiedDateTime", "changeKey"}
)
EXTENDED = "singleValueExtendedProperties"

# OData tokens of the filters this server understands: quoted literals ('' escapes a
# quote), property paths, and the punctuation of a lambda.
_ODATA_TOKEN = re.compile(
    r"\s*(?:'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*|[():])"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def odata_tokens(text: str) -> list[str] | None:
    """The tokens of an OData expression, or None when it holds anything else."""
    tokens, at, text = [], 0, text.rstrip()
    while at < len(text):
        m = _ODATA_TOKEN.match(text, at)
        if m is None:
            return None
        tokens.append(m.group(0).strip())
        at = m.end()
    return tokens


def odata_literal(token: str) -> str | None:
    """The string a quoted OData literal stands for, or None when the token is none."""
    if len(token) < 2 or token[0] != "'" or token[-1] != "'":
        return None
    return token[1:-1].replace("''", "'")


def property_filter(flt: str) -> tuple[str, str] | None:
    """(id, value) of the documented extended-property filter, or None for any other filter.

    `singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq '{value}')`.
    """
    tokens = odata_tokens(flt)
    if tokens is None or len(tokens) != 12:
        return None
    head, open_, var, colon, id_path, eq1, id_lit, and_, value_path, eq2, value_lit, close = tokens
    if (
        head not in (f"{EXTENDED}/Any", f"{EXTENDED}/any")
        or (open_, colon, close, eq1, and_, eq2) != ("(", ":", ")", "eq", "and", "eq")
        or not _IDENTIFIER.fullmatch(var)
        or (id_path, value_path) != (f"{var}/id", f"{var}/value")
    ):
        return None
    prop_id, value = odata_literal(id_lit), odata_literal(value_lit)
    return None if prop_id is None or value is None else (prop_id, value)


def property_key(prop_id: str) -> tuple[str, ...]:
    """An extended property's id as Graph compares it: all but the Name case-insensitive."""
    parts = prop_id.split()
    if len(parts) == 4 and parts[2].lower() == "name":
        return parts[0].lower(), parts[1].lower(), "name", parts[3]
    return tuple(p.lower() for p in parts)


@dataclass(frozen=True)
class Shape:
    """What a read returns: the `$select`ed properties and the `$expand`ed property."""

    select: frozenset[str] | None = None
    expand: tuple[str, ...] | None = None


def _shape(
    query: dict[str, str], allowed: frozenset[str], expandable: bool = True
) -> Shape | Reply:
    """The shape `$select` and `$expand` ask for; 400 for anything Graph would refuse."""
    select: frozenset[str] | None = None
    if "$select" in query:
        names = [s.strip() for s in query["$select"].split(",")]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            return graph_error(
                400,
                "RequestBroken",
                f"Could not find a property named '{unknown[0] if unknown else ''}'.",
            )
        select = frozenset(names)
    expand: tuple[str, ...] | None = None
    if "$expand" in query:
        m = re.fullmatch(rf"\s*{EXTENDED}\(\$filter=(.*)\)\s*", query["$expand"])
        tokens = odata_tokens(m.group(1)) if m and expandable else None
        prop_id = odata_literal(tokens[2]) if tokens and len(tokens) == 3 else None
        if tokens is None or tokens[:2] != ["id", "eq"] or prop_id is None:
            return graph_error(
                400,
                "BadRequest",
                f"Parsing OData Select and Expand failed: $expand={query['$expand']}",
            )
        expand = property_key(prop_id)
    return Shape(select, expand)


def _select(entity: dict[str, Any], shape: Shape) -> dict[str, Any]:
    if shape.select is None:
        return entity
    keep = shape.select | {"id", "@odata.etag", EXTENDED}
    return {k: v for k, v in entity.items() if k in keep}


def _view(item: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """An item as Graph answers it: extended properties only as `$expand`ed."""
    view = {k: v for k, v in item.items() if k != EXTENDED}
    view["@odata.etag"] = _etag(item)
    if shape.expand is not None:
        props = [p for p in item.get(EXTENDED, []) if property_key(p["id"]) == shape.expand]
        if props:
            view[EXTENDED] = props
    return _select(view, shape)


def _bad_filter() -> Reply:
    return graph_error(400, "ErrorInvalidUrlQueryFilter", "The $filter is not supported.")


def _sync_reset(restart: str) -> Reply:
    """410: the token is not (or no longer) known; start again from the initial query."""
    return graph_error(
        410,
        "SyncStateNotFound",
        "The sync state is not found. The delta token is expired or invalid; synchronize again.",
        Location=restart,
    )


def _max_page_size(prefer: str) -> int | None:
    """The page size a `Prefer: odata.maxpagesize=N` asks for (capped), if any."""
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(int(value), MAX_PAGE))
    return None


def _dimensions(data: bytes) -> tuple[int | None, int | None]:
    """Width and height of an image, when it can be read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError):
        return None, None


@dataclass(frozen=True)
class DeltaPages:
    """The rest of a delta round: entries still to page out, and where the round ends."""

    scope: tuple[str, str]
    entries: list[dict[str, Any]]
    until: int
    select: str | None
    size: int | None


@dataclass(frozen=True)
class DeltaLink:
    """What a delta token stands for: changes of a folder after a point in its history."""

    scope: tuple[str, str]
    since: int
    select: str | None


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

    def __init__(
        self,
        token_ttl: int = 3599,
        client_secret: str | None = None,
        *,
        request_limit: int = MAILBOX_REQUEST_LIMIT,
        request_window: float = MAILBOX_REQUEST_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if request_limit < 1 or request_window <= 0:
            raise ValueError("the request limit and its window must be positive")
        self.token_ttl = token_ttl
        self.client_secret = client_secret
        #: Requests per app and mailbox in a sliding window (Graph: 10,000 in 10 minutes).
        self.request_limit = request_limit
        self.request_window = request_window
        self.clock = clock
        self.recent: dict[str, deque[float]] = defaultdict(deque)
        #: Change history for delta queries: a counter, each item's last change, removals.
        self.sequence = 0
        self.changed: dict[str, dict[str, int]] = defaultdict(dict)
        self.removed: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        self.delta_links: dict[str, DeltaLink] = {}
        self.delta_pages: dict[str, DeltaPages] = {}
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
        self.recent.clear()
        self.changed.clear()
        self.removed.clear()
        self.expire_delta_tokens()

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

    def admit(self, key: str) -> float | None:
        """Count a request of an app on a mailbox; the seconds to wait when over the limit."""
        now, recent = self.clock(), self.recent[key]
        while recent and recent[0] <= now - self.request_window:
            recent.popleft()
        if len(recent) >= self.request_limit:
            return recent[0] + self.request_window - now
        recent.append(now)
        return None

    def throttled(self, app: str, path: str) -> Reply | None:
        """429 when the app is over its request limit on the path's mailbox."""
        mailbox = _mailbox(path)
        wait = self.admit(f"{app}|{mailbox}") if mailbox else None
        if wait is None:
            return None
        self.stats["rate_rejections"] += 1
        return graph_error(
            429,
            "ApplicationThrottled",
            "Application is over its MailboxRequests limit.",
            **{"Retry-After": str(max(1, math.ceil(wait)))},
        )

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
        where = "/" + "/".join(quote(p, safe="@.$") for p in parts)
        resolved = self._resolve(user, parts[2:])
        if isinstance(resolved, Reply):
            return resolved
        folder_id, tail = resolved
        item_id = tail[1] if tail[:1] == ["contacts"] and len(tail) > 1 else None
        is_delta = folder_id is not None and tail == ["contacts", "delta"]
        if item_id is not None and not is_delta and not ID_PATTERN.fullmatch(item_id):
            return graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        ctype = headers.get("content-type", "")
        if method in ("POST", "PATCH", "PUT", "DELETE"):
            self.stats["writes"] += 1
            self.stats[f"writes_{method}"] += 1
        try:
            data = json.loads(body) if body and "json" in ctype else None
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid JSON body.")
        if data is not None and not isinstance(data, dict):
            return graph_error(400, "BadRequest", "The body must be a JSON object.")
        match tail:
            case [] if folder_id is not None and method == "GET":
                return self._shaped(FOLDER_FIELDS, query, self.folders[user][folder_id])
            # The mailbox's folders are the default folder's children.
            case ["contactFolders"] | ["childFolders"] if (folder_id is None) == (
                tail == ["contactFolders"]
            ):
                parent = folder_id or self.root_folder(user)
                if method == "GET":
                    return self._list_folders(user, parent, query, where)
                if method == "POST":
                    return self._create_folder(user, parent, data or {})
            case ["contacts"]:
                if method == "GET":
                    return self._list_contacts(user, query, folder_id, where)
                if method == "POST":
                    return self._create_contact(user, folder_id, data or {})
            case ["contacts", "delta"] if folder_id is not None and method == "GET":
                return self._delta(user, folder_id, query, headers, where)
            case ["contacts", item_id, *more]:
                item = self.contacts[user].get(item_id)
                if item is None or folder_id not in (None, item["parentFolderId"]):
                    return graph_error(404, "ErrorItemNotFound", "The item was not found.")
                return self._item(user, item, method, more, query, body, headers, data)
        return graph_error(405, "Request_BadRequest", f"{method} is not supported on {path}.")

    def root_folder(self, user: str) -> str:
        """The id of the mailbox's default contacts folder (the parent of its top folders)."""
        return "AAMk" + hashlib.sha256(f"root|{user}".encode()).hexdigest()[:40]

    def _resolve(self, user: str, rest: list[str]) -> tuple[str | None, list[str]] | Reply:
        """The folder a path names (None: the default one) and the segments after it."""
        if rest[:1] != ["contactFolders"] or len(rest) < 2:
            return None, rest
        folder_id, at = rest[1], 2
        while True:
            if not ID_PATTERN.fullmatch(folder_id):
                return graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
            if folder_id not in self.folders[user]:
                return graph_error(404, "ErrorItemNotFound", "The folder was not found.")
            if rest[at : at + 1] != ["childFolders"] or len(rest) < at + 2:
                return folder_id, rest[at:]
            child = rest[at + 1]
            if self.folders[user].get(child, {}).get("parentFolderId") not in (None, folder_id):
                return graph_error(404, "ErrorItemNotFound", "The folder was not found.")
            folder_id, at = child, at + 2

    def _item(
        self,
        user: str,
        item: dict[str, Any],
        method: str,
        more: list[str],
        query: dict[str, str],
        body: bytes,
        headers: dict[str, str],
        data: dict[str, Any] | None,
    ) -> Reply:
        """A request on one contact: the item itself, its photo or the photo's bytes."""
        item_id = item["id"]
        if more == ["photo"] and method == "GET":
            return self._photo_metadata(user, item_id, query)
        if more == ["photo", "$value"]:
            return self._photo(user, item_id, method, body, headers.get("content-type", ""))
        if more:
            return graph_error(405, "Request_BadRequest", f"{method} is not supported here.")
        if_match = headers.get("if-match")
        if method in ("PATCH", "DELETE") and if_match not in (None, "*", _etag(item)):
            return graph_error(
                412,
                "ErrorIrresolvableConflict",
                "The change key passed in the request does not match the current "
                "change key of the item.",
            )
        if method == "GET":
            shape = _shape(query, CONTACT_SELECTABLE)
            return shape if isinstance(shape, Reply) else Reply(200, _view(item, shape))
        if method == "PATCH":
            return self._update_contact(user, item, data or {})
        if method == "DELETE":
            self.remove_contact(user, item_id)
            return Reply(204)
        return graph_error(405, "Request_BadRequest", f"{method} is not supported on a contact.")

    @staticmethod
    def _shaped(allowed: frozenset[str], query: dict[str, str], entity: dict[str, Any]) -> Reply:
        shape = _shape(query, allowed, expandable=False)
        return shape if isinstance(shape, Reply) else Reply(200, _select(entity, shape))

    def _list_folders(self, user: str, parent: str, query: dict[str, str], where: str) -> Reply:
        shape = _shape(query, FOLDER_FIELDS, expandable=False)
        if isinstance(shape, Reply):
            return shape
        folders = [f for f in self.folders[user].values() if f["parentFolderId"] == parent]
        flt = query.get("$filter", "")
        if flt:
            tokens = odata_tokens(flt)
            if tokens is None or len(tokens) != 3 or tokens[:2] != ["displayName", "eq"]:
                return _bad_filter()
            name = odata_literal(tokens[2])
            if name is None:
                return _bad_filter()
            folders = [f for f in folders if f["displayName"] == name]
        return self._page(where, [_select(f, shape) for f in folders], query)

    def _page(self, where: str, items: list[dict[str, Any]], query: dict[str, str]) -> Reply:
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
            rest = {k: v for k, v in query.items() if k not in ("$top", "$skip")}
            link = urlencode({**rest, "$top": top, "$skip": skip + top}, quote_via=quote)
            out["@odata.nextLink"] = f"{self.base_url}{where}?{link}"
        return Reply(200, out)

    def _create_folder(self, user: str, parent: str, data: dict[str, Any]) -> Reply:
        name = data.get("displayName")
        if not isinstance(name, str) or not name:
            return graph_error(400, "ErrorInvalidArgument", "displayName is required.")
        siblings = (f for f in self.folders[user].values() if f["parentFolderId"] == parent)
        if any(f["displayName"] == name for f in siblings):
            return graph_error(409, "ErrorFolderExists", "A folder with this name exists.")
        folder = {"id": _graph_id(), "displayName": name, "parentFolderId": parent}
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
            if (
                not isinstance(prop, dict)
                or set(prop) != {"id", "value"}
                or not all(isinstance(v, str) for v in prop.values())
            ):
                return graph_error(
                    400, "ErrorInvalidProperty", "Extended property needs id, value."
                )
        return None

    def _create_contact(self, user: str, folder_id: str | None, data: dict[str, Any]) -> Reply:
        error = self._check_limits(data)
        if error:
            return error
        now = datetime.now(UTC).isoformat()
        item = {
            **data,
            "id": _graph_id(),
            "parentFolderId": folder_id or self.root_folder(user),
            "createdDateTime": now,
            "lastModifiedDateTime": now,
            "changeKey": _graph_id()[:16],
        }
        self.contacts[user][item["id"]] = item
        self._touch(user, item["id"])
        return Reply(201, _view(item, Shape()))

    def _update_contact(self, user: str, item: dict[str, Any], data: dict[str, Any]) -> Reply:
        error = self._check_limits(data)
        if error:
            return error
        props = {property_key(p["id"]): p for p in item.get("singleValueExtendedProperties", [])}
        for p in data.pop("singleValueExtendedProperties", None) or []:
            props[property_key(p["id"])] = p
        item.update(data)
        item["singleValueExtendedProperties"] = list(props.values())
        item["lastModifiedDateTime"] = datetime.now(UTC).isoformat()
        item["changeKey"] = _graph_id()[:16]
        self._touch(user, item["id"])
        return Reply(200, _view(item, Shape()))

    def _list_contacts(
        self, user: str, query: dict[str, str], folder_id: str | None, where: str
    ) -> Reply:
        shape = _shape(query, CONTACT_SELECTABLE)
        if isinstance(shape, Reply):
            return shape
        folder_id = folder_id or self.root_folder(user)
        items = [c for c in self.contacts[user].values() if c["parentFolderId"] == folder_id]
        flt = query.get("$filter", "")
        if flt:
            wanted = property_filter(flt)
            if wanted is None:
                return _bad_filter()
            key, value = property_key(wanted[0]), wanted[1].casefold()
            items = [
                c
                for c in items
                if any(
                    property_key(p["id"]) == key and p["value"].casefold() == value
                    for p in c.get("singleValueExtendedProperties", [])
                )
            ]
        items.sort(key=lambda c: c["id"])
        return self._page(where, [_view(c, shape) for c in items], query)

    # ------------------------------------------------------------------ delta

    def _touch(self, user: str, item_id: str) -> None:
        """Record that an item was created, changed or moved in (for delta queries)."""
        self.sequence += 1
        self.changed[user][item_id] = self.sequence

    def _removed_from(self, user: str, folder_id: str, item_id: str) -> None:
        self.sequence += 1
        self.changed[user].pop(item_id, None)
        self.removed[user].append((self.sequence, folder_id, item_id))

    def remove_contact(self, user: str, item_id: str) -> bool:
        """Delete an item and its photo; False when there was none."""
        item = self.contacts[user].pop(item_id, None)
        if item is None:
            return False
        self.photos.pop((user, item_id), None)
        self._removed_from(user, item["parentFolderId"], item_id)
        return True

    def move_contact(self, user: str, item_id: str, folder_id: str) -> bool:
        """Move an item to another folder, as the user would in Outlook."""
        item = self.contacts[user].get(item_id)
        if item is None or folder_id not in (*self.folders[user], self.root_folder(user)):
            return False
        self._removed_from(user, item["parentFolderId"], item_id)
        item["parentFolderId"] = folder_id
        self._touch(user, item_id)
        return True

    def _delta(
        self,
        user: str,
        folder_id: str,
        query: dict[str, str],
        headers: dict[str, str],
        where: str,
    ) -> Reply:
        """contact: delta. A round of pages, then a deltaLink that returns what changed since."""
        unknown = set(query) - {"$select", "$deltatoken", "$skiptoken"}
        if unknown:
            return graph_error(
                400,
                "ErrorInvalidUrlQuery",
                f"The query option '{sorted(unknown)[0]}' is not supported with change tracking.",
            )
        if "$deltatoken" in query and "$skiptoken" in query:
            return graph_error(400, "ErrorInvalidUrlQuery", "Use $deltatoken or $skiptoken.")
        restart = f"{self.base_url}{where}"
        size = _max_page_size(headers.get("prefer", ""))
        skip, delta = query.get("$skiptoken"), query.get("$deltatoken")
        if skip is not None:
            pending = self.delta_pages.get(skip)
            if pending is None or pending.scope != (user, folder_id):
                return _sync_reset(restart)
            return self._delta_page(pending, where, size)
        since, select = 0, query.get("$select")
        if delta:  # an empty $deltatoken is the initial query
            known = self.delta_links.get(delta)
            if known is None or known.scope != (user, folder_id):
                return _sync_reset(restart)
            since, select = known.since, known.select
            self.stats["delta_followed"] += 1
        shape = _shape({"$select": select} if select else {}, CONTACT_SELECTABLE, False)
        if isinstance(shape, Reply):
            return shape
        entries: list[tuple[int, dict[str, Any]]] = []
        present = {i for i, c in self.contacts[user].items() if c["parentFolderId"] == folder_id}
        for item_id in present:
            seq = self.changed[user].get(item_id, 0)
            if seq > since:
                entries.append((seq, _view(self.contacts[user][item_id], shape)))
        if since:  # items removed before the first round are not reported
            gone: dict[str, int] = {}
            for seq, old_folder, item_id in self.removed[user]:
                if seq > since and old_folder == folder_id and item_id not in present:
                    gone[item_id] = seq
            entries += [(s, {"id": i, "@removed": {"reason": "deleted"}}) for i, s in gone.items()]
        entries.sort(key=lambda e: e[0])
        pending = DeltaPages(
            (user, folder_id), [e for _, e in entries], self.sequence, select, size
        )
        return self._delta_page(pending, where, size)

    def _delta_page(self, pending: DeltaPages, where: str, size: int | None) -> Reply:
        size = size or pending.size or DEFAULT_PAGE
        page, rest = pending.entries[:size], pending.entries[size:]
        out: dict[str, Any] = {"value": page}
        if rest:
            token = secrets.token_urlsafe(16)
            self.delta_pages[token] = replace(pending, entries=rest)
            out["@odata.nextLink"] = f"{self.base_url}{where}?$skiptoken={token}"
        else:
            token = secrets.token_urlsafe(16)
            self.delta_links[token] = DeltaLink(pending.scope, pending.until, pending.select)
            out["@odata.deltaLink"] = f"{self.base_url}{where}?$deltatoken={token}"
        return Reply(200, out, {"Preference-Applied": f"odata.maxpagesize={size}"})

    def expire_delta_tokens(self) -> None:
        """Forget every delta and skip token, as Graph does when its token cache overflows."""
        self.delta_links.clear()
        self.delta_pages.clear()

    # ------------------------------------------------------------------ photos

    def _photo_metadata(self, user: str, item_id: str, query: dict[str, str]) -> Reply:
        stored = self.photos.get((user, item_id))
        if stored is None:
            return graph_error(404, "ErrorItemNotFound", "The photo wasn't found.")
        data, media_type = stored
        width, height = _dimensions(data)
        metadata = {
            "@odata.context": f"{self.base_url}/$metadata#users('{user}')/contacts('{item_id}')"
            "/photo/$entity",
            "@odata.mediaContentType": media_type,
            "@odata.mediaEtag": f'W/"{hashlib.sha256(data).hexdigest()[:32]}"',
            "id": f"{width}X{height}" if width and height else "default",
            "height": height,
            "width": width,
        }
        return Reply(200, metadata)

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
        throttled = state.throttled(app, path)
        if throttled is not None:
            return throttled, False
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
                return await self.batch(app, body), fault == "drop"
            # A real service takes a moment; it lets concurrent requests overlap.
            await asyncio.sleep(0.002)
            reply = state.dispatch(method, path, query, body, headers)
        finally:
            state.inflight[mailbox] -= 1
        return reply, fault == "drop"

    async def batch(self, app: str, body: bytes) -> Reply:
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
            url = str(r["url"])
            path, _, qs = url.partition("?")
            path = path if path.startswith("/") else f"/{path}"
            throttled = None if failed_dep else state.throttled(app, path)
            if failed_dep:
                reply = graph_error(424, "FailedDependency", "A dependency failed.")
            elif throttled is not None:
                reply = throttled
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
                    query = {k: v[-1] for k, v in parse_qs(qs).items()}
                    sub_headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
                    sub_body = json.dumps(r["body"]).encode() if "body" in r else b""
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
                if not state.remove_contact(user.lower(), item_id):
                    return Reply(404, {"detail": "no such item"})
                return Reply(204)
            case ["users", user, "contacts", item_id, "move"] if method == "POST":
                # As the user would in Outlook: to another folder of the mailbox.
                # To the folder named, or by default to the mailbox's default folder.
                try:
                    target = json.loads(body or b"{}").get("destinationId")
                except (ValueError, AttributeError):
                    return Reply(400, {"detail": "a JSON object is required"})
                target = str(target or state.root_folder(user.lower()))
                if not state.move_contact(user.lower(), item_id, target):
                    return Reply(404, {"detail": "no such item or folder"})
                return Reply(204)
            case ["delta", "expire"] if method == "POST":
                state.expire_delta_tokens()
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
