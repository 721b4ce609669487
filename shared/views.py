"""Response models both HTTP APIs show for a contact (the write side's reads and the query API)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from pydantic import BaseModel, Field

from shared.contract.contacts import ContactStatus, InfotagPlacement, PhotoRef, detail_annotations

#: What is known of a contact's current photo: the contract's shape.
PhotoView = PhotoRef


class InfotagView(InfotagPlacement):
    """An infotag on a contact, who placed it and when, under the tag's current path."""

    tag: str = Field(description="The tag's current path (`Kunde/Guld`), renamed or moved")
    placed_as: str | None = Field(
        default=None, description="The path it was placed under (the key of the placement)"
    )
    active: bool = Field(default=True, description="False: the tag takes no new placements")


class ContactFields(BaseModel):
    """A contact's details, status and place among the person's versions."""

    person_id: UUID
    version: int
    status: ContactStatus
    company_id: UUID
    company_name: str
    # The detail fields are the contract's, so a new one needs no edit here.
    __annotations__.update(detail_annotations())
    started_on: date | None
    ended_on: date | None
    predecessor_id: UUID | None
    successor_id: UUID | None


class Employment(BaseModel):
    """One version of a person: an employment."""

    contact_id: UUID
    company_id: UUID
    company_name: str
    job_title: str | None
    department: str | None
    started_on: date | None
    ended_on: date | None
    status: ContactStatus
    version: int
