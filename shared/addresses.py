"""E-mail addresses as Kontakt compares them, and their keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def normalise_address(address: str) -> str:
    """An e-mail address for comparison: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", address).strip().casefold()


def address_hash(key: bytes, address: str) -> str:
    """A keyed hash of a normalised address: lets services match it without keeping it."""
    return hmac.new(key, normalise_address(address).encode(), hashlib.sha256).hexdigest()
