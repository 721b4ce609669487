"""Microsoft Graph client: client-credentials token, contact folders, contacts, photos, $batch.

Limits it keeps: at most `sync_graph_mailbox_concurrency` (<= 4) requests in flight per
mailbox, `$batch` of at most 20. On 429 it waits at least what Retry-After says; 5xx,
timeouts and dropped connections are retried with jittered exponential backoff; other
4xx are permanent (GraphPermanentError) and 404 is GraphNotFoundError. A POST is not
retried after an ambiguous failure (it may have been applied): the caller looks the
item up by its extended property before creating it again. One level of retry per
request: a `$batch` is sent once per round, and its rounds are the retries (of the
whole batch, or of the requests in it that Graph answered 424, 429 or 5xx).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
)

from services.sync.domain import CATEGORIES_PROPERTY, CONTACT_ID_PROPERTY, SyncError
from shared.observability import metrics
from shared.retrying import error_of, jittered_wait, next_wait
from shared.settings import KontaktSettings

log = logging.getLogger("kontakt.sync.graph")

#: Graph's cap on the requests of one $batch.
MAX_BATCH = 20
#: Renew the token when less than this share of its lifetime is left.
RENEW_FRACTION = 0.2

RETRIED_STATUSES = frozenset({500, 502, 503, 504})


class GraphError(SyncError):
    """Graph answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class GraphNotFoundError(GraphError):
    """404: the item (or folder) is gone."""


class GraphPermanentError(GraphError):
    """An error retrying cannot fix (e.g. 403 for a mailbox the app may not touch)."""


class GraphTransientError(GraphError):
    """Retries were exhausted (throttling, 5xx, timeouts); try again later."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(status, code, message)
        #: Seconds Graph asked to wait (Retry-After), if it said.
        self.retry_after = retry_after


class GraphAmbiguousError(GraphTransientError):
    """A request that was sent failed on the way: it may have been applied, so not retried."""


class GraphSyncResetError(GraphPermanentError):
    """Graph refused a delta token (410, or 400): the folder must be read in full again."""


class _TokenRefusedError(GraphPermanentError):
    """Graph refused the token (401): renew it and try again at once, once."""


def _is_retried(exc: BaseException) -> bool:
    return isinstance(exc, GraphTransientError | _TokenRefusedError) and not isinstance(
        exc, GraphAmbiguousError
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        err = response.json().get("error", {})
        return str(err.get("code", "")), str(err.get("message", ""))
    except (ValueError, AttributeError):
        return "", response.text[:200]


def _depending_only_on(request: dict[str, Any], ids: set[str]) -> dict[str, Any]:
    """The request with its dependsOn cut to the ids of this round."""
    out = {k: v for k, v in request.items() if k != "dependsOn"}
    kept = [d for d in request.get("dependsOn") or [] if d in ids]
    return {**out, "dependsOn": kept} if kept else out


def odata_string(value: str) -> str:
    """A string as an OData literal: quoted, a quote inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def _expanding(property_id: str) -> str:
    """The `$expand` that returns one extended property of an item."""
    return f"singleValueExtendedProperties($filter=id eq {odata_string(property_id)})"


def _raise_for(response: httpx.Response) -> NoReturn:
    code, message = _error_of(response)
    if response.status_code == 404:
        raise GraphNotFoundError(404, code or "ErrorItemNotFound", message)
    if response.status_code == 429 or response.status_code in RETRIED_STATUSES:
        raise GraphTransientError(response.status_code, code, message)
    raise GraphPermanentError(response.status_code, code, message)


class TokenProvider:
    """OAuth2 client credentials against the configured authority; cached, renewed early."""

    def __init__(self, settings: KontaktSettings, http: httpx.AsyncClient) -> None:
        self.url = (
            f"{settings.sync_graph_authority.rstrip('/')}/"
            f"{settings.sync_graph_tenant_id}/oauth2/v2.0/token"
        )
        self.form = {
            "grant_type": "client_credentials",
            "client_id": settings.sync_graph_client_id,
            "client_secret": settings.sync_graph_client_secret.get_secret_value(),
            "scope": settings.sync_graph_scope,
        }
        self.http = http
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0

    def invalidate(self) -> None:
        """Forget the token (Graph refused it)."""
        self._token = None

    async def token(self) -> str:
        """A valid access token, fetched once for all concurrent callers."""
        if self._token and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._renew_at:
                return self._token
            response = await self.http.post(self.url, data=self.form)
            if response.status_code >= 400:
                code, message = _error_of(response)
                if response.status_code == 429 or response.status_code >= 500:
                    raise GraphTransientError(response.status_code, code, message)
                raise GraphPermanentError(response.status_code, code or "token", message)
            body = response.json()
            lifetime = float(body.get("expires_in", 3600))
            self._token = str(body["access_token"])
            self._renew_at = time.monotonic() + lifetime * (1 - RENEW_FRACTION)
            self.fetched += 1
            return self._token


@dataclass(frozen=True)
class DeltaChanges:
    """One round of a folder's delta query: what changed, what went, and the next link."""

    changed: list[str]
    removed: list[str]
    delta_link: str


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one request of a $batch."""

    status: int
    body: Any


class GraphClient:
    """The Graph operations the worker uses, with Graph's limits kept."""

    def __init__(
        self,
        settings: KontaktSettings,
        *,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.base = settings.sync_graph_base_url.rstrip("/")
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.sync_graph_timeout_seconds),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self.tokens = TokenProvider(settings, self.http)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.max_attempts = settings.sync_graph_max_attempts
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.sync_graph_mailbox_concurrency)
        )
        self._folders: dict[str, str] = {}
        self._folder_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: Waits taken because of Retry-After (seconds), for tests and logs.
        self.retry_after_waits: list[float] = []

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the attempt (1-based)."""
        return jittered_wait(
            attempt - 1,
            self.settings.sync_graph_backoff_seconds,
            self.settings.sync_graph_backoff_max_seconds,
            self.rng,
        )

    def _wait(self, state: RetryCallState) -> float:
        # Never less than Graph asked; jitter only on top of it. A refused token is
        # renewed at once.
        exc = error_of(state)
        if isinstance(exc, _TokenRefusedError):
            return 0.0
        asked = exc.retry_after if isinstance(exc, GraphTransientError) else None
        if asked is not None:
            return asked + self.rng.uniform(0, min(1.0, asked * 0.1 + 0.05))
        return self.backoff(state.attempt_number)

    async def request(
        self,
        mailbox: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        retry_ambiguous: bool = True,
        attempts: int | None = None,
    ) -> httpx.Response:
        """One Graph request for a mailbox, retried as Graph asks; raises GraphError otherwise."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        tried = 0
        # One id for all attempts of this request, so Graph's logs and ours correlate.
        request_id = str(uuid.uuid4())

        async def attempt() -> httpx.Response:
            nonlocal tried
            tried += 1
            try:
                token = await self.tokens.token()
                async with self._slots[mailbox]:
                    response = await self.http.request(
                        method,
                        url,
                        json=json,
                        content=content,
                        params=params,
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Prefer": 'IdType="ImmutableId"',
                            "client-request-id": request_id,
                            **(headers or {}),
                        },
                    )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                error = GraphAmbiguousError if sent and not retry_ambiguous else GraphTransientError
                raise error(0, type(exc).__name__, str(exc) or "transport error") from None
            m = metrics()
            m.graph_calls.labels(method=method, status=str(response.status_code)).inc()
            if response.status_code == 429:
                m.graph_throttles.inc()
            if response.status_code < 400:
                return response
            if response.status_code == 401 and tried == 1:
                self.tokens.invalidate()
                raise _TokenRefusedError(401, *_error_of(response))
            if response.status_code == 429 or response.status_code in RETRIED_STATUSES:
                code, message = _error_of(response)
                asked = retry_after_seconds(response.headers.get("Retry-After"))
                if asked is not None:
                    self.retry_after_waits.append(asked)
                raise GraphTransientError(response.status_code, code, message, retry_after=asked)
            metrics().graph_failures.inc()
            _raise_for(response)

        def say(state: RetryCallState) -> None:
            log.info(
                "graph %s %s: %s; retry in %.2fs", method, path, error_of(state), next_wait(state)
            )

        policy = AsyncRetrying(
            retry=retry_if_exception(_is_retried),
            stop=stop_after_attempt(attempts or self.max_attempts),
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=say,
            reraise=True,
        )
        try:
            response: httpx.Response = await policy(attempt)
        except GraphAmbiguousError:
            raise
        except (GraphTransientError, _TokenRefusedError):
            metrics().graph_failures.inc()
            raise
        return response

    # ------------------------------------------------------------------ operations

    @staticmethod
    def _user(user_id: str) -> str:
        return f"/users/{quote(user_id, safe='@.')}"

    async def ensure_folder(self, user_id: str) -> str:
        """The id of the user's sync folder, created on demand."""
        if user_id in self._folders:
            return self._folders[user_id]
        async with self._folder_locks[user_id]:
            if user_id in self._folders:
                return self._folders[user_id]
            url: str | None = f"{self._user(user_id)}/contactFolders"
            params: dict[str, str] | None = {
                "$filter": f"displayName eq {odata_string(self.settings.sync_folder_name)}",
                "$select": "id,displayName",
            }
            ids: list[str] = []
            while url:
                response = await self.request(user_id, "GET", url, params=params)
                body = response.json()
                ids.extend(f["id"] for f in body.get("value", []))
                url, params = body.get("@odata.nextLink"), None
            found = sorted(ids)
            if found:
                folder_id = found[0]
            else:
                response = await self.request(
                    user_id,
                    "POST",
                    f"{self._user(user_id)}/contactFolders",
                    json={"displayName": self.settings.sync_folder_name},
                    retry_ambiguous=False,
                )
                folder_id = response.json()["id"]
            self._folders[user_id] = folder_id
            return folder_id

    def forget_folder(self, user_id: str) -> None:
        """Drop the cached folder id (the user deleted the folder)."""
        self._folders.pop(user_id, None)

    async def find_contacts(self, user_id: str, folder_id: str, crm_ids: list[str]) -> list[str]:
        """Graph ids of the folder's items whose extended property holds one of the CRM ids."""
        ids: list[str] = []
        # Graph documents one id and one value per filter: one query per CRM id.
        for crm_id in dict.fromkeys(crm_ids):
            flt = (
                "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{odata_string(CONTACT_ID_PROPERTY)} and ep/value eq {odata_string(crm_id)})"
            )
            url: str | None = f"{self._user(user_id)}/contactFolders/{folder_id}/contacts"
            params: dict[str, str] | None = {"$filter": flt, "$select": "id"}
            while url:
                response = await self.request(user_id, "GET", url, params=params)
                body = response.json()
                ids.extend(item["id"] for item in body.get("value", []))
                url, params = body.get("@odata.nextLink"), None
        return sorted(set(ids))

    async def list_items(self, user_id: str, folder_id: str) -> dict[str, str | None]:
        """Every item in the folder (paged): Graph id -> the CRM contact id it carries."""
        url: str | None = f"{self._user(user_id)}/contactFolders/{folder_id}/contacts"
        params: dict[str, str] | None = {
            "$select": "id",
            "$top": "999",
            "$expand": _expanding(CONTACT_ID_PROPERTY),
        }
        items: dict[str, str | None] = {}
        while url:
            response = await self.request(user_id, "GET", url, params=params)
            body = response.json()
            for item in body.get("value", []):
                props = item.get("singleValueExtendedProperties") or []
                items[item["id"]] = next(
                    (p["value"] for p in props if p["id"] == CONTACT_ID_PROPERTY), None
                )
            url, params = body.get("@odata.nextLink"), None
        return items

    async def create_contact(self, user_id: str, folder_id: str, body: dict[str, Any]) -> str:
        """Create a contact in the folder; its Graph id."""
        response = await self.request(
            user_id,
            "POST",
            f"{self._user(user_id)}/contactFolders/{folder_id}/contacts",
            json=body,
            retry_ambiguous=False,
        )
        return str(response.json()["id"])

    async def _with_property(
        self, user_id: str, graph_id: str, select: str, property_id: str
    ) -> tuple[dict[str, Any], str | None]:
        """The item's selected fields, and the value of one of its extended properties."""
        response = await self.request(
            user_id,
            "GET",
            f"{self._user(user_id)}/contacts/{graph_id}",
            params={"$select": select, "$expand": _expanding(property_id)},
        )
        body = response.json()
        props = body.get("singleValueExtendedProperties") or []
        return body, next((p["value"] for p in props if p["id"] == property_id), None)

    async def categories(self, user_id: str, graph_id: str) -> tuple[list[str], str | None]:
        """The item's categories, and the value of Kontakt's own categories property."""
        body, ours = await self._with_property(
            user_id, graph_id, "id,categories", CATEGORIES_PROPERTY
        )
        return list(body.get("categories") or []), ours

    async def crm_id_of(self, user_id: str, graph_id: str) -> str | None:
        """The CRM contact id an item carries, if it carries one."""
        return (await self._with_property(user_id, graph_id, "id", CONTACT_ID_PROPERTY))[1]

    async def delta(self, user_id: str, folder_id: str, link: str | None) -> DeltaChanges:
        """A round of the folder's delta query: from `link`, or (None) the initial one.

        Raises GraphSyncResetError when Graph refuses the link: start again with None.
        """
        initial = f"{self._user(user_id)}/contactFolders/{folder_id}/contacts/delta"
        url = link or initial
        params: dict[str, str] | None = None if link else {"$select": "id"}
        # Graph honours the page size asked for up to its own cap.
        prefer = {"Prefer": 'IdType="ImmutableId", odata.maxpagesize=200'}
        changed: dict[str, None] = {}
        removed: dict[str, None] = {}
        while True:
            try:
                response = await self.request(user_id, "GET", url, params=params, headers=prefer)
            except GraphPermanentError as exc:
                # 410 Gone, or a token refused as bad: the state behind it is lost.
                if exc.status == 410 or (exc.status == 400 and url != initial):
                    raise GraphSyncResetError(exc.status, exc.code, exc.message) from exc
                raise
            body = response.json()
            for item in body.get("value", []):
                # An item may come more than once in a round; its last mention counts.
                changed.pop(item["id"], None)
                removed.pop(item["id"], None)
                (removed if "@removed" in item else changed)[item["id"]] = None
            if "@odata.nextLink" not in body:
                return DeltaChanges(list(changed), list(removed), str(body["@odata.deltaLink"]))
            url, params = str(body["@odata.nextLink"]), None

    async def update_contact(self, user_id: str, graph_id: str, body: dict[str, Any]) -> None:
        """Replace the fields the body names."""
        await self.request(
            user_id, "PATCH", f"{self._user(user_id)}/contacts/{graph_id}", json=body
        )

    async def delete_contact(self, user_id: str, graph_id: str) -> bool:
        """Delete a contact; False when it was already gone."""
        try:
            await self.request(user_id, "DELETE", f"{self._user(user_id)}/contacts/{graph_id}")
        except GraphNotFoundError:
            return False
        return True

    async def put_photo(self, user_id: str, graph_id: str, data: bytes, media_type: str) -> None:
        """Upload the contact's photo (PUT .../photo/$value)."""
        await self.request(
            user_id,
            "PUT",
            f"{self._user(user_id)}/contacts/{graph_id}/photo/$value",
            content=data,
            headers={"Content-Type": media_type},
        )

    async def has_photo(self, user_id: str, graph_id: str) -> bool:
        """Whether the contact shows a photo (Graph has no DELETE for a contact's photo)."""
        try:
            await self.request(
                user_id, "GET", f"{self._user(user_id)}/contacts/{graph_id}/photo/$value"
            )
        except GraphNotFoundError:
            return False
        return True

    async def batch(self, mailbox: str, requests: list[dict[str, Any]]) -> dict[str, BatchResult]:
        """Run up to 20 requests as one $batch, each as given (dependsOn only if it says so).

        Requests answered 424 (a request they depend on failed), 429 or 5xx are sent again in a next
        round, after the longest Retry-After; the final result of each is returned by id.
        At most `sync_graph_max_attempts` HTTP requests in all.
        """
        if len(requests) > MAX_BATCH:
            raise ValueError(f"a $batch holds at most {MAX_BATCH} requests")
        order = [r["id"] for r in requests]
        results: dict[str, BatchResult] = {}
        pending = list(requests)
        asked: list[float] = []

        async def send() -> list[dict[str, Any]]:
            # One level of retry: the $batch itself is sent once per round.
            # A dependsOn on a request answered in an earlier round is dropped:
            # Graph refuses ids the batch does not hold.
            ids = {r["id"] for r in pending}
            sent = [_depending_only_on(r, ids) for r in pending]
            response = await self.request(
                mailbox, "POST", "/$batch", json={"requests": sent}, attempts=1
            )
            retry: list[dict[str, Any]] = []
            by_id = {r["id"]: r for r in pending}
            asked.clear()
            for answer in response.json().get("responses", []):
                rid, status = str(answer["id"]), int(answer["status"])
                if status in (424, 429) or status in RETRIED_STATUSES:
                    retry.append(by_id[rid])
                    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
                    wait = retry_after_seconds(headers.get("retry-after"))
                    if wait is not None:
                        asked.append(wait)
                        self.retry_after_waits.append(wait)
                else:
                    results[rid] = BatchResult(status, answer.get("body"))
            pending[:] = sorted(retry, key=lambda r: order.index(r["id"]))
            return pending

        def wait(state: RetryCallState) -> float:
            # After a round answered in part: the longest Retry-After, if it is longer.
            backoff = self.backoff(state.attempt_number)
            return max([backoff, *asked]) if error_of(state) is None else self._wait(state)

        policy = AsyncRetrying(
            retry=retry_if_result(bool) | retry_if_exception(_is_retried),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait,
            sleep=self.sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        await policy(send)
        for r in pending:
            results[r["id"]] = BatchResult(503, None)
        return results

    async def delete_contacts(self, user_id: str, graph_ids: list[str]) -> dict[str, int]:
        """Delete items of one mailbox in $batch requests of at most 20; HTTP status per id."""
        out: dict[str, int] = {}
        for start in range(0, len(graph_ids), MAX_BATCH):
            chunk = graph_ids[start : start + MAX_BATCH]
            requests = [
                {"id": str(i), "method": "DELETE", "url": f"{self._user(user_id)}/contacts/{g}"}
                for i, g in enumerate(chunk)
            ]
            results = await self.batch(user_id, requests)
            for i, g in enumerate(chunk):
                out[g] = results[str(i)].status
        return out
