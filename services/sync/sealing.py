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
from collections import OrderedDict
from collections.abc import Awaitable, Callable
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
        #: Live keys with the time each was fetched, oldest first (the order of fetching),
        #: so that evicting looks only at the expired ones and the next.
        self._keys: OrderedDict[UUID, tuple[bytes, float]] = OrderedDict()
        #: Persons found erased: for good, never fetched again.
        self._erased: set[UUID] = set()

    async def get(self, person_id: UUID) -> bytes | None:
        """The person's sync key, or None when erased (fetched again once the cached one aged)."""
        self.evict_expired()
        if person_id in self._erased:
            return None
        entry = self._keys.get(person_id)
        if entry is not None:
            return entry[0]
        key = await self._fetch(person_id)
        if key is None:
            self._erased.add(person_id)
        elif person_id not in self._keys:  # a concurrent get may have fetched it meanwhile
            self._keys[person_id] = (key, self._clock())
        return key

    async def get_many(self, person_ids: set[UUID]) -> dict[UUID, bytes | None]:
        """Keys of several persons."""
        return {pid: await self.get(pid) for pid in person_ids}

    def evict_expired(self) -> int:
        """Drop every key fetched longer than the TTL ago (erasures stay known); how many."""
        now = self._clock()
        stale = 0
        while self._keys:
            _, fetched = next(iter(self._keys.values()))
            if now - fetched < self._ttl:
                break
            self._keys.popitem(last=False)
            stale += 1
        return stale
