"""Search keys: Danish names folded with their spellings, phone numbers compared on digits."""

from __future__ import annotations

import pytest

from services.projections import contacts_model as model
from shared.contract import contacts as c
from shared.folding import fold_name, phone_digits, phone_tails
from tests.unit.contact_events import created, next_event


def _finds(query: str, name: str) -> bool:
    """Whether a name search for the query finds the name (a prefix of the name or a word)."""
    key, q = fold_name(name), fold_name(query)
    return key.startswith(q) or f" {q}" in f" {key}"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("Jorgen", "Jørgen"),
        ("Joergen", "Jørgen"),
        ("Jørgen", "Joergen"),
        ("Jørgen", "Jorgen"),
        ("Osterg", "Østergaard"),
        ("Østergård", "Ostergaard"),
        ("Aase", "Åse"),
        ("Ase", "Åse"),
        ("Åse", "Aase"),
        ("Aerling", "Ærling"),
        ("Ærling", "Aerling"),
        ("STRASSE", "Straße"),
        ("jose", "José"),
    ],
)
def test_danish_letters_and_their_spellings_find_each_other(query: str, name: str) -> None:
    assert _finds(query, name)


@pytest.mark.parametrize(("query", "name"), [("Jens", "Jørgen"), ("Aerling", "Erling")])
def test_folding_does_not_make_different_names_alike(query: str, name: str) -> None:
    assert not _finds(query, name)


def test_folding_collapses_whitespace_and_case() -> None:
    assert fold_name("  ØSTERGAARD \t Ærø ") == "ostergard aero"


@pytest.mark.parametrize(
    ("phone", "digits"),
    [
        ("+45 12 34 56 78", "4512345678"),
        ("004512345678", "4512345678"),
        ("12 34 56 78", "12345678"),
        ("(0)20 7946-0958", "2079460958"),
    ],
)
def test_a_phone_number_is_its_digits_without_international_or_trunk_prefix(
    phone: str, digits: str
) -> None:
    assert phone_digits(phone) == digits


def test_a_number_with_a_country_code_has_tails_without_it_but_keeps_six_digits() -> None:
    assert phone_tails("4512345678") == ["512345678", "12345678", "2345678"]
    assert phone_tails("1234567") == ["234567"]
    assert phone_tails("123") == []


def test_a_row_keeps_folded_names_free_text_and_phone_keys_and_erasure_empties_them() -> None:
    row = model.apply(
        None,
        created(
            first_names="Jørgen",
            last_names="Østergaard",
            job_title="Indkøbschef",
            department=None,
            work_phone="+45 12 34 56 78",
            private_phone="0045 12345678",
        ),
    )
    assert row.search_text == "jorgen ostergard"
    assert row.free_text == "indkobschef acme a/s"
    assert row.phone_digits == ["4512345678"]
    assert row.phone_tails == ["12345678", "2345678", "512345678"]
    gone = c.ContactErasedData(reason="request")
    erased = model.apply(row, next_event(row, c.ContactErased, data=gone))
    assert erased.free_text == "acme a/s"
    assert (erased.phone_digits, erased.phone_tails) == ([], [])
