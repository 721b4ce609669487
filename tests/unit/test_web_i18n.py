"""The web UI's labels: every key in both languages, and the language chosen for a request."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.web.i18n import LANGUAGES, MESSAGES, choose_language, format_when, translator
from shared.contract.contacts import DETAIL_FIELDS
from shared.settings import KontaktSettings

TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "web" / "templates"


def test_danish_and_english_have_the_same_labels() -> None:
    assert set(MESSAGES["da"]) == set(MESSAGES["en"])
    assert all(MESSAGES["da"].values()) and all(MESSAGES["en"].values())


def test_every_label_a_template_names_exists() -> None:
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z_]+)["']\s*[,)]""", template.read_text()))
    assert used and not used - set(MESSAGES["en"])


def test_the_cookie_of_the_switch_wins_over_accept_language() -> None:
    assert choose_language("en", "da-DK,da;q=0.9") == "en"
    assert choose_language("da", "en-GB") == "da"


def test_accept_language_picks_the_best_supported_language() -> None:
    assert choose_language(None, "en-GB,en;q=0.9,da;q=0.8") == "en"
    assert choose_language(None, "de-DE,de;q=0.9,da;q=0.5,en;q=0.4") == "da"
    assert choose_language(None, "da;q=0.5, en;q=0.7") == "en"


def test_danish_when_nothing_usable_is_asked_for() -> None:
    assert choose_language(None, None) == LANGUAGES[0] == "da"
    assert choose_language("fr", "fr-FR, de;q=0.9") == "da"
    assert choose_language(None, "en;q=0") == "da"
    assert choose_language(None, "en;q=abc, ;;;,") == "da"


def test_labels_are_translated_and_formatted() -> None:
    assert translator("da")("tab_employments") == "Ansættelser"
    assert translator("en")("tab_employments") == "Employments"
    assert translator("en")("showing", first=1, last=20, total=45) == "Showing 1-20 of 45"
    assert translator("xx")("sign_in") == "Log ind"


def test_an_unknown_key_shows_itself_rather_than_failing() -> None:
    assert translator("da")("no_such_label") == "no_such_label"


def test_every_field_a_form_shows_has_a_label() -> None:
    names = {*DETAIL_FIELDS, "company_name", "company_id", "started_on", "effective_on"}
    assert not names - set(MESSAGES["da"])


COPENHAGEN = ZoneInfo("Europe/Copenhagen")


def test_an_instant_reads_in_the_ui_time_zone_as_each_language_writes_it() -> None:
    # 07:15 UTC is 08:15 in Copenhagen in winter, 09:15 in summer.
    assert format_when("2026-12-03T07:15:00Z", "da", COPENHAGEN) == "3. dec. 2026 kl. 08.15"
    assert format_when("2026-12-03T07:15:00+00:00", "en", COPENHAGEN) == "3 Dec 2026, 08:15"
    assert format_when("2026-07-01T07:15:00Z", "da", COPENHAGEN) == "1. jul. 2026 kl. 09.15"
    # Late on the 31st in UTC is already the next year in Copenhagen.
    assert format_when("2026-12-31T23:30:00Z", "en", COPENHAGEN) == "1 Jan 2027, 00:30"


def test_a_date_reads_without_a_time_and_without_moving_a_day() -> None:
    assert format_when("2026-05-01", "da", COPENHAGEN) == "1. maj 2026"
    assert format_when("2026-05-01", "en", ZoneInfo("Pacific/Honolulu")) == "1 May 2026"


def test_what_is_no_date_is_shown_as_it_came() -> None:
    assert format_when(None, "da", COPENHAGEN) == ""
    assert format_when("", "da", COPENHAGEN) == ""
    assert format_when("soon", "en", COPENHAGEN) == "soon"
    assert format_when("2026-13-01", "en", COPENHAGEN) == "2026-13-01"


def test_the_ui_time_zone_must_be_an_iana_name() -> None:
    assert KontaktSettings(web_time_zone="America/New_York").web_time_zone == "America/New_York"
    for wrong in ["Mars/Olympus", "", "../../etc/passwd"]:
        with pytest.raises(ValidationError, match="KONTAKT_WEB_TIME_ZONE"):
            KontaktSettings(web_time_zone=wrong)
