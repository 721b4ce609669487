"""The sync worker's copy of a person, sealed under the person's sync key (crypto-shredding).

The contacts service derives each person's sync key from their data key and serves
it to the outlook-sync role only; erasing the person deletes the data key, so the
sync key is gone for good (410). The worker keeps keys in memory only, each for at
most `ttl_seconds` after it was fetched: that bounds how long a stored copy stays
readable after an erasure, whatever the consumer is doing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.sync.domain import SyncError

NONCE_BYTES = 12


class SealError(SyncError):
    """A sealed copy that does not open with the person's key (corrupt, or another key)."""


def seal(key: bytes, contact_id: UUID, fields: dict[str, Any]) -> bytes:
    """Encrypt a contact's personal fields (AES-GCM, the contact id as associated data)."""
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    return nonce + AESGCM(key).encrypt(nonce, plain, contact_id.bytes)


def unseal(key: bytes, contact_id: UUID, blob: bytes) -> dict[str, Any]:
    """Decrypt what seal() made."""
    try:
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], contact_id.bytes)
    except InvalidTag:
        raise SealError(f"the sealed copy of contact {contact_id} does not open") from None
    fields: dict[str, Any] = json.loads(plain)
    return fields


@dataclass
class _Entry:
    key: bytes | None  # None: the person was erased (for good)
    fetched: float


class PersonKeys:
    """Sync keys by person, fetched on demand and forgotten `ttl_seconds` after fetching."""

    def __init__(
        self,
        fetch: Callable[[UUID], Awaitable[bytes | None]],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[UUID, _Entry] = {}

    async def get(self, person_id: UUID) -> bytes | None:
        """The person's sync key, or None when erased (fetched again once the cached one aged)."""
        self.evict_expired()
        entry = self._cache.get(person_id)
        if entry is not None:
            return entry.key
        key = await self._fetch(person_id)
        self._cache[person_id] = _Entry(key, self._clock())
        return key

    async def get_many(self, person_ids: set[UUID]) -> dict[UUID, bytes | None]:
        """Keys of several persons."""
        return {pid: await self.get(pid) for pid in person_ids}

    def evict_expired(self) -> int:
        """Drop every key fetched longer than the TTL ago (erasures stay known); how many."""
        now = self._clock()
        stale = [
            pid
            for pid, e in self._cache.items()
            if e.key is not None and now - e.fetched >= self._ttl
        ]
        for pid in stale:
            del self._cache[pid]
        return len(stale)
