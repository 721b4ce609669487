"""Near duplicates on in-memory persistence: the folding, the rules, distinct_from."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from services.contacts.application import ContactsApp
from services.contacts.domain import (
    Actor,
    Contact,
    DuplicateContactError,
    PossibleDuplicateError,
)
from services.contacts.integration import to_integration_event
from shared.folding import fold_name, phone_key
from tests.support import save_as_before_near_keys

ALICE = Actor("alice", "corr")
ACME, BETA = uuid4(), uuid4()


def create(
    app: ContactsApp,
    first: str,
    last: str = "Hansen",
    company: UUID = ACME,
    distinct_from: list[UUID] | None = None,
    **more: str,
):
    details: dict[str, str | None] = {"first_names": first, "last_names": last, **more}
    return app.create_contact(
        ALICE, company_id=company, company_name="Acme", details=details, distinct_from=distinct_from
    )


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Jørgen", "Joergen"),
        ("Åse", "Aase"),
        ("Ærling", "Aerling"),
        ("Strauß", "Strauss"),
        ("Østergaard", "OESTERGAARD"),
        ("José", "Jose"),
        ("Mary  Ann", "mary ann"),
    ],
)
def test_names_that_fold_alike(one: str, other: str) -> None:
    assert fold_name(one) == fold_name(other)


@pytest.mark.parametrize(("one", "other"), [("Ane", "Anne"), ("Jørgen", "Jürgen")])
def test_names_that_stay_apart(one: str, other: str) -> None:
    assert fold_name(one) != fold_name(other)


@pytest.mark.parametrize(
    "spelling", ["+45 12 34 56 78", "0045 12345678", "12 34 56 78", "(12) 34-56.78", "12345678"]
)
def test_a_phone_number_is_one_number_in_every_format(spelling: str) -> None:
    assert phone_key(spelling) == "12345678"


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        ("Jørgen", "Joergen"),
        ("Åse", "Aase"),
        ("Ærling", "Aerling"),
        ("Jørgen", "Jorgen"),
        ("Jørgen Strauß", "Joergen Strauss"),
        ("Jørgen", "Jo\u200bergen"),
    ],
)
def test_a_create_that_folds_to_a_current_name_is_a_possible_duplicate(
    app: ContactsApp, existing: str, new: str
) -> None:
    first = create(app, existing)
    with pytest.raises(PossibleDuplicateError) as err:
        create(app, new)
    [candidate] = err.value.candidates
    assert candidate.contact_id == first.contact_id and candidate.first_names == existing
    assert candidate.matched == ("name",)


def test_the_same_phone_in_another_format_is_a_possible_duplicate(app: ContactsApp) -> None:
    first = create(app, "Karen", work_phone="+45 12 34 56 78")
    with pytest.raises(PossibleDuplicateError) as err:
        create(app, "Bente", private_phone="12345678")
    assert [(c.contact_id, c.matched) for c in err.value.candidates] == [
        (first.contact_id, ("phone",))
    ]


def test_both_rules_are_named_when_both_match(app: ContactsApp) -> None:
    first = create(app, "Jørgen", work_phone="12345678")
    with pytest.raises(PossibleDuplicateError) as err:
        create(app, "Joergen", work_phone="+4512345678")
    assert [(c.contact_id, c.matched) for c in err.value.candidates] == [
        (first.contact_id, ("name", "phone"))
    ]


def test_at_another_company_nothing_is_a_near_duplicate(app: ContactsApp) -> None:
    create(app, "Jørgen", work_phone="12345678")
    create(app, "Joergen", company=BETA, work_phone="12345678")


@pytest.mark.parametrize(
    ("existing", "new"), [("Jørgen", " JØRGEN "), ("Strauß", "Strauss"), ("Ole", "O\u200ble")]
)
def test_an_exact_duplicate_is_still_refused_as_one(
    app: ContactsApp, existing: str, new: str
) -> None:
    first = create(app, existing)
    with pytest.raises(DuplicateContactError) as err:
        create(app, new, distinct_from=[first.contact_id])
    assert err.value.field == "name" and err.value.existing_id == first.contact_id


def test_distinct_from_accepts_the_create_and_the_event_records_it(app: ContactsApp) -> None:
    first = create(app, "Jørgen")
    second = create(app, "Joergen", distinct_from=[first.contact_id])
    [created] = list(app.events.get(second.contact_id))
    assert isinstance(created, Contact.Created)
    assert created.distinct_from == [first.contact_id]
    published = to_integration_event(created, 1)
    assert published.data.distinct_from == [first.contact_id]  # type: ignore[attr-defined]
    # A third look-alike must name both.
    with pytest.raises(PossibleDuplicateError) as err:
        create(app, "Jörgen", distinct_from=[first.contact_id])
    assert [c.contact_id for c in err.value.candidates] == [second.contact_id]
    create(app, "Jörgen", distinct_from=[first.contact_id, second.contact_id])


def test_a_rename_into_a_near_duplicate_is_refused_unless_declared(app: ContactsApp) -> None:
    first = create(app, "Åse")
    other = create(app, "Bodil")
    with pytest.raises(PossibleDuplicateError):
        app.change_details(ALICE, other.contact_id, {"first_names": "Aase"})
    app.change_details(
        ALICE, other.contact_id, {"first_names": "Aase"}, distinct_from=[first.contact_id]
    )
    changed = list(app.events.get(other.contact_id))[-1]
    assert isinstance(changed, Contact.DetailsChanged)
    assert changed.distinct_from == [first.contact_id]
    # Changing something else is no rename: it asks nothing.
    app.change_details(ALICE, other.contact_id, {"job_title": "Buyer"})


def test_archiving_leaves_the_keys_and_the_listing_follows(app: ContactsApp) -> None:
    first = create(app, "Ærling", work_phone="11223344")
    second = create(app, "Aerling", distinct_from=[first.contact_id])
    listed = app.possible_duplicates(second.contact_id)
    assert [(c.contact_id, c.matched, c.declared_distinct) for c in listed] == [
        (first.contact_id, ("name",), True)
    ]
    assert [c.contact_id for c in app.possible_duplicates(first.contact_id)] == [second.contact_id]
    asked = app.possible_duplicates_of(ACME, None, None, ("+45 11 22 33 44",))
    assert [(c.contact_id, c.matched) for c in asked] == [(first.contact_id, ("phone",))]
    app.archive(ALICE, first.contact_id)
    assert app.possible_duplicates(second.contact_id) == []
    create(app, "Ærling", "Hansen", distinct_from=[second.contact_id])


def test_the_backfill_gives_contacts_stored_before_near_keys_theirs(app: ContactsApp) -> None:
    earlier = save_as_before_near_keys(app, ACME, "Søren", "Kierkegaard")
    create(app, "Soeren", "Kierkegaard")
    assert app.backfill_near_keys() == 2
    assert app.backfill_near_keys() == 2  # again: nothing more joins
    with pytest.raises(PossibleDuplicateError) as err:
        create(app, "Sören", "Kierkegaard")
    assert earlier in {c.contact_id for c in err.value.candidates}


def test_a_company_id_correction_moves_the_near_keys_with_it(app: ContactsApp) -> None:
    first = create(app, "Jørgen")
    app.correct_employment(ALICE, first.contact_id, company_id=BETA)
    create(app, "Joergen")  # nobody looks like him at the company he never worked for
    with pytest.raises(PossibleDuplicateError) as err:
        create(app, "Joergen", company=BETA)
    assert [c.contact_id for c in err.value.candidates] == [first.contact_id]
