"""Contract contact events for unit tests: a creation, and any event after a row."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

from services.projections import contacts_model as model
from shared.contract import contacts as c

AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PHOTO = c.PhotoRef(content_hash="h1", media_type="image/png", byte_size=10, width=4, height=4)


def created(actor: str = "alice", **data: Any) -> c.ContactCreated:
    """A ContactCreated at version 1 by `actor`, the data's fields overridable."""
    fields: dict[str, Any] = {
        "company_id": uuid4(),
        "company_name": "Acme A/S",
        "first_names": "Karen",
        "last_names": "Jensen",
        "job_title": "Buyer",
        "department": "Sales",
        "work_email": "KJ@acme.example",
        "private_email": "karen@home.example",
        "work_phone": "+45 1",
        "private_phone": "+45 2",
        "started_on": date(2020, 1, 1),
        "predecessor_id": None,
        "infotags": [c.InfotagPlacement(tag="vip", added_by="bob", added_at=AT)],
        "outlook_sync_users": ["zoe", "al"],
        "photo": None,
        **data,
    }
    return c.ContactCreated(
        event_id=uuid4(),
        occurred_at=AT,
        actor=actor,
        correlation_id="corr",
        contact_id=uuid4(),
        person_id=uuid4(),
        aggregate_version=1,
        global_position=10,
        data=c.ContactCreatedData(**fields),
    )


def next_event(row: model.ContactRow, kind: type[c.ContactEventBase], **kw: Any) -> Any:
    """An event of `kind` on the row's contact at the row's next version."""
    return kind(
        event_id=uuid4(),
        occurred_at=AT + timedelta(minutes=row.version),
        actor=kw.pop("actor", "alice"),
        correlation_id="corr",
        contact_id=row.contact_id,
        person_id=row.person_id,
        aggregate_version=row.version + 1,
        global_position=row.position + 1,
        **kw,
    )
