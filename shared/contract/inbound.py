"""Events Kontakt consumes from other services (the contract we expect them to keep).

- `activities.events`: EmailLogged.
- `opportunities.events`, `campaigns.events`, `projects.events`: the same family
  of item events (an opportunity, campaign or project is an "item"); the topic
  says which kind of item.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_id: UUID = Field(description="Unique per event; re-deliveries keep it")
    occurred_at: datetime


#: What an address field of EmailLogged may carry, as its schema says.
_ADDRESS_FIELD = (
    "Addresses as in an e-mail header: bare (`karen@acme.example`), in display-name form"
    ' (`Karen Jensen <karen@acme.example>`, `"Jensen, Karen" <karen@acme.example>`), or'
    " several separated by commas; any case. Display names are dropped; addresses are"
    " compared NFKC-normalised and case-folded. A value that holds no readable address"
    " is kept for display (case-folded) and matches no contact."
)


class EmailLogged(_Inbound):
    """An e-mail was logged by the activities service.

    It shows on the Activities tab of each contact that held one of its addresses
    (sender, To or Cc) when it was sent (`sent_at`); one sent while nobody held the
    address shows on the next contact that takes it.
    """

    type: Literal["EmailLogged"] = "EmailLogged"
    schema_version: Literal[1] = 1
    message_id: str = Field(min_length=1, max_length=998)
    from_address: str = Field(
        alias="from", min_length=3, max_length=998, description=f"The sender. {_ADDRESS_FIELD}"
    )
    to: list[str] = Field(
        default_factory=list, description=f"The To recipients, one field per item. {_ADDRESS_FIELD}"
    )
    cc: list[str] = Field(
        default_factory=list, description=f"The Cc recipients, one field per item. {_ADDRESS_FIELD}"
    )
    subject: str = Field(default="", max_length=2000)
    sent_at: datetime = Field(
        description="When it was sent: decides which holder of an address it belongs to"
    )


class ItemCreated(_Inbound):
    """An item (opportunity, campaign or project) was created."""

    type: Literal["Created"] = "Created"
    schema_version: Literal[1] = 1
    item_id: UUID
    title: str = Field(max_length=500)
    status: str = Field(max_length=100)


class ItemRenamed(_Inbound):
    """An item got a new title."""

    type: Literal["Renamed"] = "Renamed"
    schema_version: Literal[1] = 1
    item_id: UUID
    title: str = Field(max_length=500)


class ItemStatusChanged(_Inbound):
    """An item's status changed."""

    type: Literal["StatusChanged"] = "StatusChanged"
    schema_version: Literal[1] = 1
    item_id: UUID
    status: str = Field(max_length=100)


class ItemClosed(_Inbound):
    """An item was closed (won, lost, done, cancelled...)."""

    type: Literal["Closed"] = "Closed"
    schema_version: Literal[1] = 1
    item_id: UUID
    outcome: str | None = Field(default=None, max_length=100)


class ContactLinked(_Inbound):
    """A contact was linked to an item, or its role there changed."""

    type: Literal["ContactLinked"] = "ContactLinked"
    schema_version: Literal[1] = 1
    item_id: UUID
    contact_id: UUID
    role: str | None = Field(default=None, max_length=100)


class ContactUnlinked(_Inbound):
    """A contact was unlinked from an item."""

    type: Literal["ContactUnlinked"] = "ContactUnlinked"
    schema_version: Literal[1] = 1
    item_id: UUID
    contact_id: UUID


ItemEvent = Annotated[
    ItemCreated | ItemRenamed | ItemStatusChanged | ItemClosed | ContactLinked | ContactUnlinked,
    Field(discriminator="type"),
]

activity_event_adapter: TypeAdapter[EmailLogged] = TypeAdapter(EmailLogged)
item_event_adapter: TypeAdapter[ItemEvent] = TypeAdapter(ItemEvent)
