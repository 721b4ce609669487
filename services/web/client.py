"""HTTP clients of the two APIs the web UI talks to, with the signed-in user's token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx

from shared.settings import KontaktSettings


@dataclass
class ApiError(Exception):
    """An API answered with an error status; body is its documented error body."""

    status: int
    body: dict[str, Any]

    @property
    def detail(self) -> str:
        """The error body's message."""
        return str(self.body.get("detail", ""))

    def field_errors(self) -> dict[str, str]:
        """A 422's refused fields by name (`work_email`), with their messages."""
        errors: dict[str, str] = {}
        for item in self.body.get("errors") or []:
            name = str(item.get("field", "")).rsplit(".", 1)[-1]
            errors.setdefault(name, str(item.get("message", "")))
        return errors


class ApiUnavailableError(Exception):
    """An API could not be reached."""


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    raise ApiError(response.status_code, body if isinstance(body, dict) else {})


class Apis:
    """The contacts API (commands) and the query API (read models) over HTTP."""

    def __init__(self, settings: KontaktSettings) -> None:
        self.contacts = httpx.AsyncClient(base_url=settings.contacts_api_url, timeout=30)
        self.query = httpx.AsyncClient(base_url=settings.query_api_url, timeout=30)

    async def aclose(self) -> None:
        """Close both clients."""
        await self.contacts.aclose()
        await self.query.aclose()

    async def _send(
        self, client: httpx.AsyncClient, token: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        try:
            response = await client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiUnavailableError(str(exc)) from None
        _raise_for(response)
        return response

    async def read(self, token: str, url: str, **params: Any) -> Any:
        """GET a query API resource as JSON (None parameters are left out)."""
        given = {k: v for k, v in params.items() if v is not None and v != ""}
        response = await self._send(self.query, token, "GET", url, params=given)
        return response.json()

    async def photo(
        self, token: str, contact_id: UUID, content_hash: str | None = None
    ) -> httpx.Response:
        """The contact's current photo (query API), or an earlier one by its content hash.

        Earlier photos' bytes are kept by the contacts service alone, so they come from there.
        """
        if content_hash is None:
            return await self._send(self.query, token, "GET", f"/contacts/{contact_id}/photo")
        url = f"/contacts/{contact_id}/photos/{content_hash}"
        return await self._send(self.contacts, token, "GET", url)

    async def command_get(self, token: str, url: str) -> Any:
        """GET a contacts API resource as JSON."""
        return (await self._send(self.contacts, token, "GET", url)).json()

    async def command(
        self,
        token: str,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Send a command to the contacts API; its response body (contact_id, version)."""
        headers: dict[str, str] = {}
        if expected_version is not None:
            headers["If-Match"] = f'"{expected_version}"'
        if content_type:
            headers["Content-Type"] = content_type
        kwargs: dict[str, Any] = {"headers": headers}
        if json is not None:
            kwargs["json"] = json
        if content is not None:
            kwargs["content"] = content
        response = await self._send(self.contacts, token, method, url, **kwargs)
        body: dict[str, Any] = response.json()
        return body
