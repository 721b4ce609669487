"""Events the Outlook sync service publishes on `outlook-sync.events` (JSON, key = person id).

Each message tells what happened to one user's Outlook copy of one person:
linked (the item was created or found again), updated, unlinked (deleted, by
the worker or by the user in Outlook), or failed (a permanent Graph error; the
link is parked until the contact changes again). Delivery is at-least-once:
deduplicate by `event_id`; `sequence` grows per (user_id, person_id), so a read
model keeps the highest it has seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

SyncStatus = Literal["linked", "updated", "unlinked", "failed"]


class OutlookSyncStatusChanged(BaseModel):
    """One user's Outlook copy of a person changed status."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: UUID = Field(description="Unique per outcome; stable across re-deliveries")
    type: Literal["OutlookSyncStatusChanged"] = "OutlookSyncStatusChanged"
    schema_version: Literal[1] = 1
    occurred_at: datetime
    user_id: str = Field(description="The CRM user whose Outlook (mailbox) this is")
    person_id: UUID = Field(description="The person (message key); stable across job changes")
    contact_id: UUID = Field(description="The contact version the Outlook item belongs to")
    status: SyncStatus
    reason: str | None = Field(
        default=None, description="Why: the error of a failure, or who deleted the item"
    )
    sequence: int = Field(ge=1, description="Grows per (user_id, person_id): keep the highest")


def parse_sync_event(raw: bytes | str) -> OutlookSyncStatusChanged:
    """Parse and validate one message of `outlook-sync.events`."""
    return OutlookSyncStatusChanged.model_validate_json(raw)
