"""What a date or timestamp means when a contact is read "as of" it (API and CLI alike)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.contacts import commands, domain
from shared.commandline import CommandError


def test_a_date_as_of_is_the_end_of_that_day_utc() -> None:
    assert domain.as_of_moment("2026-11-26") == datetime(
        2026, 11, 26, 23, 59, 59, 999999, tzinfo=UTC
    )


def test_a_timestamp_is_that_moment_utc_unless_it_has_an_offset() -> None:
    assert domain.as_of_moment("2026-11-26T12:00") == datetime(2026, 11, 26, 12, tzinfo=UTC)
    plus_one = domain.as_of_moment("2026-11-26T12:00+01:00")
    assert plus_one.utcoffset() == timedelta(hours=1)
    assert plus_one == datetime(2026, 11, 26, 11, tzinfo=UTC)
    assert domain.as_of_moment("2026-11-26T12:00Z").tzinfo == UTC


def test_a_date_alone_starts_its_day_where_a_range_begins() -> None:
    assert domain.parse_moment("2026-11-26") == datetime(2026, 11, 26, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-11-26T25:00", ""])
def test_text_that_is_no_moment_is_a_named_error(text: str) -> None:
    with pytest.raises(domain.NotAMomentError):
        domain.as_of_moment(text)


def test_the_command_line_reads_dates_with_the_domain_and_says_what_it_refused() -> None:
    assert commands.as_of_moment("2026-11-26") == domain.as_of_moment("2026-11-26")
    with pytest.raises(CommandError, match="'yesterday'"):
        commands.as_of_moment("yesterday")
