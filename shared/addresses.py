"""E-mail addresses as Kontakt compares them, and their keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from email.utils import getaddresses

from shared.text import clean_text

#: One bare address: a single @ with something on both sides, none of the characters that
#: delimit or comment addresses in a header, no whitespace. Looser than the contacts API's
#: validator on purpose: a stored contact's address always passes, whatever its age.
_MAILBOX = re.compile(r"[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+")


def normalise_address(address: str) -> str:
    """An e-mail address for comparison: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", address).strip().casefold()


def address_hash(key: bytes, address: str) -> str:
    """A keyed hash of a normalised address: lets services match it without keeping it."""
    return hmac.new(key, normalise_address(address).encode(), hashlib.sha256).hexdigest()


def mailboxes(field: str) -> list[str]:
    """The normalised addresses in a header-style field, in order; [] when none can be read.

    A field may be a bare address, a display-name form (`Karen Jensen <karen@x>`,
    `"Jensen, Karen" <karen@x>`) or several of them separated by commas; display names
    are dropped (they are free text about a person, and never compared).
    """
    found: list[str] = []
    for _name, address in getaddresses([clean_text(field)]):
        norm = normalise_address(address)
        if _MAILBOX.fullmatch(norm) and norm not in found:
            found.append(norm)
    return found
