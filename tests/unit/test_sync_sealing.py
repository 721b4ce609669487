"""Sealing the sync worker's copy of a person, and the bounded key cache."""

from __future__ import annotations

import os
from uuid import UUID, uuid4

import pytest

from services.sync.sealing import PersonKeys, SealError, seal, unseal


def test_a_sealed_copy_opens_only_with_its_key_and_contact() -> None:
    key, cid = os.urandom(32), uuid4()
    fields = {"company_name": "Acme", "details": {"work_email": "a@x.example"}, "infotags": []}
    blob = seal(key, cid, fields)
    assert b"Acme" not in blob and b"a@x.example" not in blob
    assert unseal(key, cid, blob) == fields
    with pytest.raises(SealError):
        unseal(os.urandom(32), cid, blob)
    with pytest.raises(SealError):
        unseal(key, uuid4(), blob)  # moved to another contact's row


async def test_a_key_is_kept_no_longer_than_the_ttl_and_an_erasure_for_good() -> None:
    now = [0.0]
    served: dict[UUID, bytes | None] = {}
    fetched: list[UUID] = []

    async def fetch(person_id: UUID) -> bytes | None:
        fetched.append(person_id)
        return served[person_id]

    keys = PersonKeys(fetch, ttl_seconds=60, clock=lambda: now[0])
    pid = uuid4()
    served[pid] = b"k" * 32
    assert await keys.get(pid) == b"k" * 32
    now[0] = 59.9
    assert await keys.get(pid) == b"k" * 32 and fetched == [pid]
    served[pid] = None  # erased meanwhile
    now[0] = 60.0
    assert keys.evict_expired() == 1
    assert await keys.get(pid) is None and fetched == [pid, pid]
    now[0] = 10_000.0
    assert await keys.get(pid) is None and fetched == [pid, pid]  # erased stays erased


async def test_keys_fetched_at_different_times_each_expire_a_ttl_after_their_fetch() -> None:
    now = [0.0]
    fetched: list[UUID] = []

    async def fetch(person_id: UUID) -> bytes | None:
        fetched.append(person_id)
        return b"k" * 32

    keys = PersonKeys(fetch, ttl_seconds=60, clock=lambda: now[0])
    first, second, third = uuid4(), uuid4(), uuid4()
    await keys.get(first)
    now[0] = 30.0
    await keys.get(second)
    now[0] = 50.0
    await keys.get(third)
    now[0] = 89.9  # the first is past its TTL, the second one not quite
    assert keys.evict_expired() == 1
    await keys.get(second)
    await keys.get(first)
    assert fetched == [first, second, third, first]
    now[0] = 110.0  # the second and third are past theirs; the first was fetched again
    assert keys.evict_expired() == 2
