"""Per-person sync keys: what the Outlook sync worker encrypts its copy of a person under.

A sync key is derived from the person's data key (HKDF-SHA256 with a fixed label),
so erasing the person (deleting the data key) makes it impossible to obtain again:
the worker's stored copy becomes unreadable once its cached key expires.
"""

from __future__ import annotations

import base64
from typing import Annotated
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from services.contacts.application import ContactsApp
from services.contacts.personal_data import PersonKeyMissingError
from shared.auth import OUTLOOK_SYNC_ROLE, Principal
from shared.http import StrictJSONRoute, error_responses, get_principal

#: The HKDF label: a different label gives an unrelated key from the same data key.
SYNC_KEY_INFO = b"kontakt/outlook-sync/v1"


def derive_sync_key(data_key: bytes) -> bytes:
    """The person's 256-bit sync key, derived from their data key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SYNC_KEY_INFO).derive(
        data_key
    )


class SyncKey(BaseModel):
    """A person's sync key (base64 of 32 bytes)."""

    person_id: UUID
    key: str = Field(description="base64 of the 32-byte AES-GCM key")


# Every operation can answer these (a bad token, a refused parameter, a failure, an outage).
router = APIRouter(
    prefix="/persons",
    tags=["outlook-sync"],
    route_class=StrictJSONRoute,
    responses=error_responses(401, 422, 500, 503),
)


async def _contacts(request: Request) -> ContactsApp:
    contacts: ContactsApp = request.app.state.contacts
    return contacts


@router.get(
    "/{person_id}/sync-key",
    response_model=SyncKey,
    responses=error_responses(403, 404, 410),
)
def sync_key(
    person_id: UUID,
    response: Response,
    contacts: Annotated[ContactsApp, Depends(_contacts)],
    principal: Annotated[Principal, Depends(get_principal)],
) -> SyncKey:
    """The person's sync key, for the Outlook sync service only; 410 once erased."""
    if not principal.has_role(OUTLOOK_SYNC_ROLE):
        raise HTTPException(403, f"sync keys need the {OUTLOOK_SYNC_ROLE!r} role")
    try:
        # Read fresh, not from the cache: an erasure anywhere shows here at once.
        data_key = contacts.cipher.keys.get(person_id)
    except PersonKeyMissingError:
        raise HTTPException(404, f"unknown person {person_id}") from None
    if data_key is None:
        raise HTTPException(410, f"person {person_id} was erased")
    response.headers["Cache-Control"] = "no-store"
    return SyncKey(person_id=person_id, key=base64.b64encode(derive_sync_key(data_key)).decode())
