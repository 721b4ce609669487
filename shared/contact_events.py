"""Fetching one contact's events from the contacts API, for consumers repairing a gap."""

from __future__ import annotations

from uuid import UUID

import httpx
from pydantic import ValidationError

from shared.contract.contacts import ContactEvent, contact_event_adapter


class ContactEventsUnavailableError(Exception):
    """The contacts API could not be reached or failed: an outage, to be waited out."""


async def fetch_contact_events(
    http: httpx.AsyncClient, contact_id: UUID, after_version: int = 0
) -> list[ContactEvent]:
    """The contact's events after a version, oldest first ([] for an unknown contact).

    `http` has the contacts API as its base URL and a bearer token.
    """
    try:
        response = await http.get(
            f"/contacts/{contact_id}/events", params={"after_version": after_version}
        )
    except httpx.HTTPError as exc:
        raise ContactEventsUnavailableError(f"contacts API: {exc!r}") from None
    if response.status_code == 404:
        return []
    if response.status_code != 200:
        raise ContactEventsUnavailableError(f"contacts API events: {response.status_code}")
    try:
        return [contact_event_adapter.validate_python(e) for e in response.json()]
    except (ValueError, ValidationError) as exc:
        raise ContactEventsUnavailableError(f"contacts API events unreadable: {exc}") from None
