"""Reading the addresses of a logged e-mail's header fields (shared/addresses.py)."""

from __future__ import annotations

import pytest

from shared.addresses import mailboxes


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("karen@acme.example", ["karen@acme.example"]),
        ("  KAREN@Acme.Example ", ["karen@acme.example"]),
        ("Karen Jensen <karen@acme.example>", ["karen@acme.example"]),
        ('"Karen" <Karen@acme.example>', ["karen@acme.example"]),
        ('"Jensen, Karen" <karen@acme.example>', ["karen@acme.example"]),
        ("Kåren Østergaard <kåren@acme.example>", ["kåren@acme.example"]),
        # The display name is never taken for the address, even when it looks like one.
        ('"boss@acme.example" <karen@acme.example>', ["karen@acme.example"]),
        ("a@x.example, Ole <OLE@x.example>, a@x.example", ["a@x.example", "ole@x.example"]),
        ("Sales: a@x.example, b@x.example;", ["a@x.example", "b@x.example"]),
        # Characters consumers clean (NUL, zero-width) do not hide an address.
        ("kar\x00en@acme.\u200bexample", ["karen@acme.example"]),
    ],
)
def test_addresses_are_read_from_bare_display_name_and_list_forms(
    field: str, expected: list[str]
) -> None:
    assert mailboxes(field) == expected


@pytest.mark.parametrize(
    "field",
    ["", "   ", "garbage", "Karen Jensen karen@acme.example", "<>", "a@b@c", "@acme.example"],
)
def test_a_field_without_a_readable_address_yields_none(field: str) -> None:
    assert mailboxes(field) == []
