"""Validation at the edge, pure: refused characters, e-mail addresses, the error body, strict
JSON, name-search escaping, photo decoding and look-alike uniqueness keys."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel, ValidationError

from services.contacts import domain
from services.contacts.domain import DETAIL_FIELDS
from services.contacts.photos import UnsupportedPhotoTypeError, sniff
from services.contacts.schemas import (
    ArchiveRequest,
    ContactCreate,
    ContactDetailsChange,
    EraseRequest,
    InfotagPlace,
    JobChange,
    OutlookSyncSwitch,
    OutlookSyncSwitchOff,
)
from services.projections.sql.contacts import like_prefix
from shared.contract.contacts import DETAILS, FieldKind
from shared.http import printable, strict_json, validation_body
from tests.images import image_bytes

COMPANY = str(uuid4())

#: Every command model with a valid body, and the text fields each one has.
COMMANDS: list[tuple[type[BaseModel], dict[str, Any], list[str]]] = [
    (
        ContactCreate,
        {"company_id": COMPANY, "company_name": "Acme", "first_names": "A", "last_names": "B"},
        ["company_name", *DETAIL_FIELDS],
    ),
    (
        ContactDetailsChange,
        {},
        [
            "first_names",
            "last_names",
            "job_title",
            "department",
            "work_email",
            "private_email",
            "work_phone",
            "private_phone",
        ],
    ),
    (
        JobChange,
        {"company_id": COMPANY, "company_name": "Beta"},
        ["company_name", "job_title", "department", "work_email", "work_phone"],
    ),
    (OutlookSyncSwitch, {"enabled": True}, ["reason"]),
    (OutlookSyncSwitchOff, {"enabled": False, "reason": "gone"}, ["reason"]),
    (InfotagPlace, {"tag": "vip"}, ["tag"]),
    (ArchiveRequest, {}, ["reason"]),
    (EraseRequest, {"reason": "asked"}, ["reason"]),
]

#: A valid value per kind of field, into which a bad character is put.
_BY_KIND = {FieldKind.EMAIL: "kj@other.example", FieldKind.PHONE: "+45 11 22 33 44"}
VALID = {name: _BY_KIND[d.kind] for name, d in DETAILS.items() if d.kind in _BY_KIND}
VALID |= {"work_email": "kj@acme.example", "private_email": "kj@home.example"}
VALID |= {"work_phone": "+45 12 34 56 78", "private_phone": "+45 87 65 43 21"}

BAD_CHARACTERS = {
    "NUL": "\x00",
    "lone surrogate": "\ud800",
    "C1 control": "\x85",
    "DEL": "\x7f",
    "unpaired bidi override": "\u202e",
}

CASES = [
    pytest.param(model, base, field, char, id=f"{model.__name__}.{field}-{name}")
    for model, base, fields in COMMANDS
    for field in fields
    for name, char in BAD_CHARACTERS.items()
]


@pytest.mark.parametrize(("model", "base", "field", "char"), CASES)
def test_every_text_field_of_every_command_refuses_the_character(
    model: type[BaseModel], base: dict[str, Any], field: str, char: str
) -> None:
    value = VALID.get(field, "Karen")
    bad = value[:2] + char + value[2:]
    with pytest.raises(ValidationError) as info:
        model.model_validate({**base, field: bad})
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


@pytest.mark.parametrize(("model", "base", "fields"), [c for c in COMMANDS])
def test_the_valid_bodies_are_accepted(
    model: type[BaseModel], base: dict[str, Any], fields: list[str]
) -> None:
    model.model_validate({**base, **{f: VALID.get(f, "Karen") for f in fields}})


def test_zero_width_characters_are_removed_and_an_invisible_only_value_refused() -> None:
    body = ContactCreate.model_validate(
        {
            "company_id": COMPANY,
            "company_name": "Acme\u200b",
            "first_names": "Ka\u200bren\u00ad",
            "last_names": "\ufeffJensen",
        }
    )
    assert (body.first_names, body.last_names, body.company_name) == ("Karen", "Jensen", "Acme")
    with pytest.raises(ValidationError):
        InfotagPlace.model_validate({"tag": "\u200b\u200d"})


@pytest.mark.parametrize(
    "invisible", ["\u034f", "\u061c", "\u115f", "\u3164", "\uffa0", "\ufe0f", "\U000e0041"]
)
def test_every_default_ignorable_character_is_removed_and_kept_out_of_the_schema(
    invisible: str,
) -> None:
    import re

    from shared.text import VISIBLE_TEXT_PATTERN, clean_text

    body = ContactCreate.model_validate(
        {
            "company_id": COMPANY,
            "company_name": "Acme",
            "first_names": f"Ka{invisible}ren",
            "last_names": "Jensen",
        }
    )
    assert body.first_names == "Karen" and clean_text(f"Ka{invisible}ren") == "Karen"
    assert domain.normalise_text(f"Karen{invisible}") == domain.normalise_text("Karen")
    if invisible <= "\uffff":
        assert re.fullmatch(VISIBLE_TEXT_PATTERN, f"Ka{invisible}ren") is None


def test_balanced_bidi_controls_are_accepted() -> None:
    assert InfotagPlace.model_validate({"tag": "a\u2067b\u2069"}).tag == "a\u2067b\u2069"


@pytest.mark.parametrize(
    "address",
    [
        "<script>alert(1)</script>@x.example",
        "<script>@x.example",
        "a..b@x.example",
        "a" * 65 + "@x.example",
        "a@localhost",
        "not-an-email",
        "a@[127.0.0.1]",
    ],
)
def test_e_mail_addresses_are_validated_by_email_validator(address: str) -> None:
    with pytest.raises(ValidationError) as info:
        ContactDetailsChange.model_validate({"work_email": address})
    assert info.value.errors()[0]["loc"] == ("work_email",)


def test_a_64_character_local_part_and_international_addresses_are_accepted() -> None:
    for address in ("a" * 64 + "@x.example", "æøå@bücher.example", " kj@acme.example "):
        body = ContactDetailsChange.model_validate({"private_email": address})
        assert body.private_email == address.strip()
    body = ContactDetailsChange.model_validate({"private_email": "k\u200bj@acme.example"})
    assert body.private_email == "kj@acme.example"


def test_error_bodies_never_echo_a_lone_surrogate_or_control_character() -> None:
    status, body = validation_body(
        [
            {"type": "extra_forbidden", "loc": ("body", "\ud800\x00"), "msg": "Extra", "input": 1},
            {"type": "uuid_parsing", "loc": ("body", "id"), "msg": "found `\x00`", "input": "\x00"},
        ]
    )
    assert status == 422
    encoded = json.dumps(body, ensure_ascii=False).encode("utf-8")  # would fail on a surrogate
    assert b"\x00" not in encoded
    assert body["errors"][0]["field"] == "body.\\ud800\\u0000"
    assert isinstance(body["detail"], str)
    assert printable("x" * 1000).endswith("...") and len(printable("x" * 1000)) < 300


def test_unparsable_json_is_400_not_422() -> None:
    status, body = validation_body(
        [{"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error", "input": {}}]
    )
    assert status == 400 and body["detail"].startswith("the body is not valid JSON")


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]", "1e999", "{"])
def test_strict_json_refuses_what_rfc_8259_does_not_allow(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        strict_json(text.encode())


def test_strict_json_parses_json_and_keeps_a_lone_surrogate_for_the_validator() -> None:
    assert strict_json(b'{"a": [1, 2.5, "\\ud800"]}') == {"a": [1, 2.5, "\ud800"]}


def test_like_wildcards_in_a_name_search_are_plain_characters() -> None:
    assert like_prefix("%") == "\\%"
    assert like_prefix("a_b\\") == "a\\_b\\\\"


def test_a_truncated_jpeg_is_refused() -> None:
    jpeg = image_bytes("JPEG", (64, 64))
    assert sniff(jpeg)[0] == "image/jpeg"
    with pytest.raises(UnsupportedPhotoTypeError):
        sniff(jpeg[: len(jpeg) // 2])


def test_normalise_text_ignores_invisible_characters() -> None:
    assert domain.normalise_text("Ka\u200bren\u00ad  JENSEN") == domain.normalise_text(
        "karen jensen"
    )
    assert domain.normalise_email("kj\u200b@Acme.example") == domain.normalise_email(
        "kj@acme.example"
    )


def test_key_material_of_values_without_invisibles_is_unchanged() -> None:
    for value in ("Karen  Jensen", "ÅSE", "ﬁne"):
        assert domain.normalise_text(value) == domain.legacy_normalise_text(value)


def test_a_name_stored_with_invisibles_holds_its_old_key_and_the_visible_one() -> None:
    from tests.unit.test_contact_rules import new_contact

    # Accepted before the edge removed invisible characters: its old keys must still release,
    # and the visible ones keep a look-alike out.
    contact = new_contact(
        first_names="Ka\u200bren", last_names="Jensen", work_email="kj\u200b@x.example"
    )
    company = contact.company_id
    keys = domain.uniqueness_keys(contact)
    assert {
        f"name\x1f{company}\x1fka\u200bren\x1fjensen",
        f"name\x1f{company}\x1fkaren\x1fjensen",
        "email\x1fkj\u200b@x.example",
        "email\x1fkj@x.example",
    } <= keys.keys()
    plain = domain.uniqueness_keys(new_contact(first_names="Karen", work_email="kj@x.example"))
    assert len(plain) == 3  # values without invisibles: one key each, as before


def test_a_query_parameter_no_route_declares_is_422_naming_it() -> None:
    from fastapi import APIRouter, Depends, Query
    from fastapi.testclient import TestClient

    from shared.http import StrictJSONRoute, api_app, install_error_body
    from shared.settings import KontaktSettings

    def page(offset: int = Query(0)) -> int:
        return offset

    router = APIRouter(route_class=StrictJSONRoute)

    @router.get("/things")
    def things(name: str | None = None, offset: int = Depends(page)) -> dict[str, Any]:
        return {"name": name, "offset": offset}

    app = api_app("t", "t", KontaktSettings(), lifespan=None)
    app.include_router(router)

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    install_error_body(app, "test")
    with TestClient(app) as client:
        assert client.get("/things?name=a&offset=2").json() == {"name": "a", "offset": 2}
        refused = client.get("/things?email=a&name=a&x=1")
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["query.email", "query.x"]
        assert client.get("/health/live?probe=1").status_code == 422
        assert client.get("/health/live").status_code == 200
