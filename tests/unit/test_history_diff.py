"""The history read model's field diff: what each event changed, and what erasure leaves."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from services.projections import contacts_model as model
from services.projections.history_model import entry, field_changes, redact_changes
from shared.contract import contacts as c
from tests.unit.contact_events import PHOTO, created, next_event


def test_a_creation_lists_the_fields_it_set_and_nothing_empty() -> None:
    first = created(department=None, infotags=[])
    row = model.apply(None, first)
    changes = field_changes(None, row)
    fields = [ch["field"] for ch in changes]
    assert "department" not in fields and "infotags" not in fields and "photo" not in fields
    assert {"field": "first_names", "old": None, "new": "Karen"} in changes
    assert {"field": "started_on", "old": None, "new": "2020-01-01"} in changes
    assert {"field": "company_id", "old": None, "new": str(first.data.company_id)} in changes
    assert {"field": "status", "old": None, "new": "current"} in changes


def test_each_event_lists_only_what_it_changed_old_to_new() -> None:
    row = model.apply(None, created(job_title="Buyer"))
    renamed = next_event(
        row,
        c.ContactDetailsChanged,
        data=c.ContactDetailsChangedData(changes={"last_names": "Holm", "job_title": "Buyer"}),
    )
    after = model.apply(row, renamed)
    assert field_changes(row, after) == [{"field": "last_names", "old": "Jensen", "new": "Holm"}]

    tagged = next_event(after, c.InfotagAdded, data=c.InfotagData(tag="Kunde/Guld"))
    tags = model.apply(after, tagged)
    assert field_changes(after, tags) == [
        {"field": "infotags", "old": ["vip"], "new": ["Kunde/Guld", "vip"]}
    ]

    photo = next_event(tags, c.PhotoChanged, data=PHOTO)
    pictured = model.apply(tags, photo)
    assert field_changes(tags, pictured) == [{"field": "photo", "old": None, "new": "h1"}]
    made = entry(tags, pictured, photo)
    assert made.photo == PHOTO.model_dump() and made.actor == "alice" and made.channel == "api"

    moved = next_event(
        pictured,
        c.JobChanged,
        data=c.JobChangedData(
            ended_on=date(2026, 11, 15),
            successor_id=uuid4(),
            new_company_id=uuid4(),
            new_company_name="Beta ApS",
        ),
        channel="import",
    )
    former = model.apply(pictured, moved)
    assert field_changes(pictured, former) == [
        {"field": "ended_on", "old": None, "new": "2026-11-15"},
        {"field": "status", "old": "current", "new": "former"},
    ]
    moved_entry = entry(pictured, former, moved)
    assert moved_entry.channel == "import" and moved_entry.photo is None


def test_an_erasure_leaves_no_personal_value_in_its_entry_or_earlier_ones() -> None:
    first = created()
    row = model.apply(None, first)
    photo = next_event(row, c.PhotoChanged, data=PHOTO)
    pictured = model.apply(row, photo)
    erasure = next_event(
        pictured, c.ContactErased, data=c.ContactErasedData(reason="gdpr", address_hashes=[])
    )
    erased = model.apply(pictured, erasure)
    earlier = [entry(None, row, first).redacted(), entry(row, pictured, photo).redacted()]
    last = entry(pictured, erased, erasure)
    for made in (*earlier, last):
        text = repr(made)
        for value in ("Karen", "Jensen", "karen@home.example", "KJ@acme.example", "+45 2", "h1"):
            assert value not in text
    # The erasure names every detail field, and the photo it took.
    assert [ch["field"] for ch in last.changes] == [*c.DETAIL_FIELDS, "photo", "status"]
    assert {"field": "first_names", "old": c.ERASED, "new": c.ERASED} in last.changes
    assert {"field": "photo", "old": c.ERASED, "new": None} in last.changes
    assert {"field": "status", "old": "current", "new": "erased"} in last.changes
    # Earlier entries keep what is not the person's: who, when, the employer, the tags.
    assert [ch["field"] for ch in earlier[0].changes] == [
        "company_id",
        "company_name",
        "started_on",
        "infotags",
        "status",
    ]
    assert earlier[1].changes == [] and earlier[1].photo is None
    assert earlier[1].actor == "alice"


def test_the_erased_store_redacts_to_the_same_entries() -> None:
    # Once erased, the store reads every personal value of the person's events as [erased]:
    # a rebuild folds those, and must end with the entries the worker made.
    first = created()
    readable = [model.apply(None, first)]
    unreadable_first = first.model_copy(
        update={"data": first.data.model_copy(update=dict.fromkeys(c.DETAIL_FIELDS, c.ERASED))}
    )
    unreadable = [model.apply(None, unreadable_first)]
    rename = next_event(
        readable[0],
        c.ContactDetailsChanged,
        data=c.ContactDetailsChangedData(changes={"last_names": "Holm"}),
    )
    unreadable_rename = rename.model_copy(
        update={"data": c.ContactDetailsChangedData(changes={"last_names": c.ERASED})}
    )
    readable.append(model.apply(readable[0], rename))
    unreadable.append(model.apply(unreadable[0], unreadable_rename))
    erasure = next_event(
        readable[1], c.ContactErased, data=c.ContactErasedData(reason=None, address_hashes=[])
    )
    worker = [
        entry(None, readable[0], first).redacted(),
        entry(readable[0], readable[1], rename).redacted(),
        entry(readable[1], model.apply(readable[1], erasure), erasure),
    ]
    rebuild = [
        entry(None, unreadable[0], unreadable_first).redacted(),
        entry(unreadable[0], unreadable[1], unreadable_rename).redacted(),
        entry(unreadable[1], model.apply(unreadable[1], erasure), erasure),
    ]
    assert rebuild == worker


def test_redaction_drops_personal_fields_and_keeps_the_others() -> None:
    changes: list[dict[str, Any]] = [
        {"field": "private_phone", "old": None, "new": "+45 2"},
        {"field": "photo", "old": "h1", "new": None},
        {"field": "infotags", "old": [], "new": ["vip"]},
        {"field": "company_name", "old": "Acme", "new": "Acme A/S"},
    ]
    assert redact_changes(changes) == [
        {"field": "infotags", "old": [], "new": ["vip"]},
        {"field": "company_name", "old": "Acme", "new": "Acme A/S"},
    ]


def _reference_changes(before: model.ContactRow, after: model.ContactRow) -> list[dict[str, Any]]:
    """The diff as the JSON values of every compared field say it (field_changes' meaning)."""
    from services.projections.history_model import HISTORY_FIELDS, field_values

    old, new = field_values(before), field_values(after)
    return [
        {"field": name, "old": old[name], "new": new[name]}
        for name in HISTORY_FIELDS
        if old[name] != new[name]
    ]


def test_the_diff_of_changed_fields_equals_the_diff_of_every_fields_json_value() -> None:
    row = model.apply(None, created(job_title="Buyer"))
    steps: list[Any] = [
        (c.ContactDetailsChanged, c.ContactDetailsChangedData(changes={"job_title": None})),
        (c.InfotagAdded, c.InfotagData(tag="Kunde/Guld")),
        (c.PhotoChanged, PHOTO),
        (
            c.EmploymentCorrected,
            c.EmploymentCorrectedData(
                company_id=uuid4(),
                company_name="Other",
                started_on=date(2021, 2, 3),
                ended_on=None,
            ),
        ),
        (c.ContactArchived, c.ReasonData(reason=None)),
        (c.InfotagRemoved, c.InfotagData(tag="vip")),
        (c.ContactRestored, c.EmptyData()),
        (c.PhotoRemoved, c.EmptyData()),
    ]
    for kind, data in steps:
        after = model.apply(row, next_event(row, kind, data=data))
        assert field_changes(row, after) == _reference_changes(row, after)
        row = after


def test_a_rows_copy_refuses_a_field_it_does_not_have() -> None:
    row = model.apply(None, created())
    with pytest.raises(TypeError):
        model._with(row, no_such_field=1)
