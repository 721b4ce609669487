"""Every PostgreSQL advisory-lock id Kontakt takes, in one place so that no two collide."""

from __future__ import annotations

import hashlib

#: Applying migrations: one process at a time, however many start together.
MIGRATIONS = 0x6B6F6E74_6D696772
#: Creating the event store's tables (the library's own DDL), which races between processes.
EVENT_STORE_SCHEMA = 0x4B6F6E74_00000001
#: Taken by e-mail inserts and contact projections (shared) and erasures (exclusive), so an
#: e-mail committed while an erasure runs cannot slip past the redaction.
ERASURE = 0x6B6F6E74616B74
#: One outbox publisher of the Outlook sync at a time keeps each person's outcomes in order.
SYNC_OUTBOX_PUBLISHER = 0x6B6F6E74_6F757462

#: Joining the near-duplicate keys of contacts stored before them: one process, once.
NEAR_KEY_BACKFILL = 0x6B6F6E74_6E656172

#: Defining catalogue infotags for the names placed before the catalogue: one process, once.
INFOTAG_BACKFILL = 0x6B6F6E74_74616773


def relay_leadership(name: str) -> int:
    """The lock held by the active relay of the named stream (others wait as standbys)."""
    digest = hashlib.sha256(f"kontakt-relay:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
