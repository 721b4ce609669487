"""The web UI's labels: every key in both languages, and the language chosen for a request."""

from __future__ import annotations

import re
from pathlib import Path

from services.web.i18n import LANGUAGES, MESSAGES, choose_language, translator
from shared.contract.contacts import DETAIL_FIELDS

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
