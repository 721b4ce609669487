"""How names and phone numbers are compared in search and for near duplicates: Danish letters
and their spellings folded alike, phone numbers compared on their digits (pure)."""

from __future__ import annotations

import re
import unicodedata

#: Letters without a Unicode decomposition, spelled as Danish (and German) writers do
#: when the letter is missing: ø as o or oe, æ as ae, ß as ss.
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "ß": "ss", "đ": "d", "ð": "d", "ł": "l"})
#: The two-letter spellings, each folded to the one letter they stand for (ø/oe -> o,
#: å/aa -> a): applied to names and queries alike, so each spelling finds the others.
_DIGRAPHS = (("oe", "o"), ("aa", "a"))


def fold_name(text: str) -> str:
    """Accents stripped, case folded, ø/æ/å and their spellings alike, whitespace collapsed.

    `Jørgen`, `Jorgen` and `Joergen` give `jorgen`; `Åse` and `Aase` give `ase`;
    `Ærling` and `Aerling` give `aerling`.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = stripped.casefold().translate(_LETTERS)
    for spelling, letter in _DIGRAPHS:
        folded = folded.replace(spelling, letter)
    return " ".join(folded.split())


_NOT_DIGIT = re.compile(r"[^0-9]")
#: The fewest digits a number keeps when a country code is taken off it.
_NATIONAL_MIN = 6
#: Country codes have one to three digits.
_COUNTRY_CODE_MAX = 3


def phone_digits(phone: str) -> str:
    """A phone number's digits, without the international (00) or trunk (0) prefix.

    `+45 12 34 56 78` and `0045 12345678` give `4512345678`.
    """
    digits = _NOT_DIGIT.sub("", unicodedata.normalize("NFKC", phone))
    if digits.startswith("00"):
        return digits[2:]
    return digits.removeprefix("0")


def phone_tails(digits: str) -> list[str]:
    """The number without a leading country code of one to three digits, each way to read it.

    A number stored with a country code is found by one searched without it.
    """
    return [digits[n:] for n in range(1, _COUNTRY_CODE_MAX + 1) if len(digits) - n >= _NATIONAL_MIN]


#: Digits of a number compared for near duplicates: a Danish number's length, so
#: "+45 12 34 56 78", "0045 12345678" and "12 34 56 78" are one number.
PHONE_DIGITS_COMPARED = 8


def phone_key(phone: str) -> str:
    """A phone number as near duplicates compare it: its last digits, country code optional."""
    return phone_digits(phone)[-PHONE_DIGITS_COMPARED:]
