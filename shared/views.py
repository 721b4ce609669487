"""Response fields both HTTP APIs show for a contact (the write side's reads and the query API)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from pydantic import BaseModel


class ContactFields(BaseModel):
    """A contact's details, status and place among the person's versions."""

    person_id: UUID
    version: int
    status: str
    company_id: UUID
    company_name: str
    first_names: str
    last_names: str
    job_title: str | None
    department: str | None
    work_email: str | None
    private_email: str | None
    work_phone: str | None
    private_phone: str | None
    started_on: date | None
    ended_on: date | None
    predecessor_id: UUID | None
    successor_id: UUID | None
