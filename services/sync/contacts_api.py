"""The contacts service as the sync worker uses it: photos, sync keys, switching a user off."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote
from uuid import UUID

import httpx

from services.sync.domain import SyncError
from shared.auth import OUTLOOK_SYNC_ROLE, mint_token
from shared.settings import KontaktSettings


class ContactsUnavailableError(SyncError):
    """The contacts service could not be reached or failed (try again later)."""


class ContactMovedError(SyncError):
    """The contact is a former employment: the person goes on as successor_id."""

    def __init__(self, successor_id: UUID) -> None:
        super().__init__(f"the person moved to contact {successor_id}")
        self.successor_id = successor_id


class ContactNotSwitchableError(SyncError):
    """The contact refuses the switch (archived, erased or unknown): nothing left to do."""


class PersonUnknownError(SyncError):
    """The contacts service knows no key of this person (no such person)."""


@dataclass(frozen=True)
class Photo:
    """A contact's current photo."""

    data: bytes
    media_type: str
    content_hash: str


def service_token(settings: KontaktSettings) -> str:
    """The sync service's bearer token: configured, or minted from the JWT key for local runs."""
    if settings.sync_service_token is not None:
        return settings.sync_service_token.get_secret_value()
    return mint_token(
        settings, settings.sync_service_subject, [OUTLOOK_SYNC_ROLE], ttl_seconds=365 * 24 * 3600
    )


class ContactsClient:
    """HTTP client of the contacts API, authenticated as the sync service's principal."""

    def __init__(self, settings: KontaktSettings, http: httpx.AsyncClient | None = None) -> None:
        self.http = http or httpx.AsyncClient(
            base_url=settings.contacts_api_url.rstrip("/"),
            timeout=httpx.Timeout(30.0),
            headers={"Authorization": f"Bearer {service_token(settings)}"},
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    async def photo(self, contact_id: UUID) -> Photo | None:
        """The contact's current photo, or None when it has none (or was erased)."""
        try:
            response = await self.http.get(f"/contacts/{contact_id}/photo")
        except httpx.HTTPError as exc:
            raise ContactsUnavailableError(f"contacts API: {exc!r}") from None
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200:
            raise ContactsUnavailableError(f"contacts API photo: {response.status_code}")
        etag = response.headers.get("ETag", "").strip('"')
        media_type = response.headers.get("Content-Type", "application/octet-stream")
        return Photo(response.content, media_type.split(";")[0], etag)

    async def sync_key(self, person_id: UUID) -> bytes | None:
        """The person's sync key, or None once the person was erased (410)."""
        try:
            response = await self.http.get(f"/persons/{person_id}/sync-key")
        except httpx.HTTPError as exc:
            raise ContactsUnavailableError(f"contacts API: {exc!r}") from None
        if response.status_code == 410:
            return None
        if response.status_code == 404:
            raise PersonUnknownError(f"no sync key for person {person_id}")
        if response.status_code != 200:
            raise ContactsUnavailableError(f"contacts API sync key: {response.status_code}")
        try:
            key = base64.b64decode(response.json()["key"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise ContactsUnavailableError(f"contacts API sync key unreadable: {exc}") from None
        if len(key) != 32:
            raise ContactsUnavailableError("contacts API sync key: not 32 bytes")
        return key

    async def switch_off(self, contact_id: UUID, user_id: str, reason: str) -> int:
        """Switch a user's sync off with a reason; the contact's version afterwards."""
        try:
            response = await self.http.put(
                f"/contacts/{contact_id}/outlook-sync/users/{quote(user_id, safe='')}",
                json={"enabled": False, "reason": reason},
            )
        except httpx.HTTPError as exc:
            raise ContactsUnavailableError(f"contacts API: {exc!r}") from None
        if response.status_code == 200:
            return int(response.json()["version"])
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        if response.status_code == 409 and body.get("successor_id"):
            raise ContactMovedError(UUID(body["successor_id"]))
        if response.status_code in (404, 409, 410):
            raise ContactNotSwitchableError(f"{response.status_code}: {body.get('detail')}")
        raise ContactsUnavailableError(
            f"contacts API switch-off: {response.status_code} {body.get('detail', '')}"
        )
