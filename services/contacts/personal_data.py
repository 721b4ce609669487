"""Per-person encryption of personal data in stored events, and the person keys behind it.

Each person (all versions of a human) has a data key. Stored events carry the
person's personal fields as one AES-GCM blob under that key; everything else
(ids, company ids, versions, timestamps, types, tag names) stays readable.
Erasing a person deletes the key, so every copy of their data in the store
becomes unreadable at once ("crypto-shredding").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent, find_id_convertor
from eventsourcing.utils import resolve_topic
from psycopg import Connection
from psycopg_pool import ConnectionPool

from services.contacts.domain import ERASED

#: Where an encrypted event keeps its personal fields.
PII_FIELD = "__pii__"
NONCE_BYTES = 12


class PersonKeyError(Exception):
    """Base class of person-key errors."""


class PersonErasedError(PersonKeyError):
    """The person was erased: their key is gone and cannot be made again."""

    def __init__(self, person_id: UUID) -> None:
        super().__init__(f"person {person_id} was erased")
        self.person_id = person_id


class PersonKeyMissingError(PersonKeyError):
    """No key was ever made for this person: the store is inconsistent."""


class MasterKeyError(PersonKeyError):
    """A master key is malformed, or the key that wrapped a person key is not configured."""


def parse_master_key(text: str) -> bytes:
    """Decode a base64 master key of 32 bytes."""
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise MasterKeyError("a master key must be base64") from None
    if len(key) != 32:
        raise MasterKeyError(f"a master key must be 32 bytes, not {len(key)}")
    return key


def master_key_id(key: bytes) -> str:
    """A short, non-secret name of a master key (part of its SHA-256)."""
    return hashlib.sha256(b"kontakt-master-key-id" + key).hexdigest()[:16]


class MasterKeys:
    """The current master key (wraps new person keys) and previous ones (unwrap only)."""

    def __init__(self, current: bytes, previous: list[bytes] | None = None) -> None:
        self.current_id = master_key_id(current)
        self._keys = {master_key_id(k): AESGCM(k) for k in [*(previous or []), current]}

    def wrap(self, person_id: UUID, data_key: bytes) -> tuple[str, bytes]:
        """Wrap a person's data key with the current master key."""
        nonce = os.urandom(NONCE_BYTES)
        return self.current_id, nonce + self._keys[self.current_id].encrypt(
            nonce, data_key, person_id.bytes
        )

    def unwrap(self, person_id: UUID, key_id: str, wrapped: bytes) -> bytes:
        """Unwrap a person's data key."""
        try:
            aes = self._keys[key_id]
        except KeyError:
            raise MasterKeyError(f"master key {key_id} is not configured") from None
        try:
            return aes.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], person_id.bytes)
        except InvalidTag:
            raise MasterKeyError(f"person key of {person_id} does not open") from None


class PersonKeyStore:
    """Keeps wrapped person keys; subclasses say where."""

    def __init__(self, master: MasterKeys) -> None:
        self.master = master

    def get_or_create(self, person_id: UUID) -> bytes:
        """The person's data key, made on first use; PersonErasedError after erasure."""
        raise NotImplementedError

    def get(self, person_id: UUID) -> bytes | None:
        """The person's data key, or None when the person was erased."""
        raise NotImplementedError

    def get_many(self, person_ids: set[UUID]) -> dict[UUID, bytes | None]:
        """Data keys of several persons at once (None for the erased)."""
        return {p: self.get(p) for p in person_ids}

    def erase(self, person_id: UUID) -> None:
        """Delete the person's key for good, leaving a tombstone."""
        raise NotImplementedError

    def rotate(self) -> int:
        """Re-wrap every key not wrapped by the current master key; returns how many."""
        raise NotImplementedError


class InMemoryPersonKeyStore(PersonKeyStore):
    """Person keys in a dict: for unit tests."""

    def __init__(self, master: MasterKeys) -> None:
        super().__init__(master)
        self.rows: dict[UUID, tuple[str, bytes] | None] = {}
        self._lock = threading.Lock()

    def get_or_create(self, person_id: UUID) -> bytes:
        """The person's data key, made on first use."""
        with self._lock:
            if person_id not in self.rows:
                self.rows[person_id] = self.master.wrap(person_id, AESGCM.generate_key(256))
        key = self.get(person_id)
        if key is None:
            raise PersonErasedError(person_id)
        return key

    def get(self, person_id: UUID) -> bytes | None:
        """The person's data key, or None when erased."""
        if person_id not in self.rows:
            raise PersonKeyMissingError(f"no key for person {person_id}")
        row = self.rows[person_id]
        return None if row is None else self.master.unwrap(person_id, *row)

    def erase(self, person_id: UUID) -> None:
        """Delete the key."""
        self.rows[person_id] = None

    def rotate(self) -> int:
        """Re-wrap keys under the current master key."""
        count = 0
        for person_id, row in list(self.rows.items()):
            if row is not None and row[0] != self.master.current_id:
                self.rows[person_id] = self.master.wrap(
                    person_id, self.master.unwrap(person_id, *row)
                )
                count += 1
        return count


class PostgresPersonKeyStore(PersonKeyStore):
    """Person keys in the person_keys table."""

    def __init__(self, master: MasterKeys, pool: ConnectionPool[Connection[Any]]) -> None:
        super().__init__(master)
        self._pool = pool

    def _row(
        self, conn: Connection[Any], person_id: UUID
    ) -> tuple[str | None, bytes | None] | None:
        row = conn.execute(
            "SELECT master_key_id, wrapped_key FROM person_keys WHERE person_id = %s",
            (person_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def get_or_create(self, person_id: UUID) -> bytes:
        """The person's data key, made on first use."""
        data_key = AESGCM.generate_key(256)
        key_id, wrapped = self.master.wrap(person_id, data_key)
        with self._pool.connection() as conn:
            # One round trip when the key is new (the usual case: a new person).
            # A concurrent first use may win the insert; both then read the same row.
            # The key's commit does not wait for its WAL flush (synchronous_commit off for
            # this transaction alone): nothing encrypted under the key is stored until the
            # events' own commit, which is synchronous and flushes the WAL up to itself, so
            # the key's record with it. A crash before that loses a key no stored data uses.
            inserted = conn.execute(
                "INSERT INTO person_keys (person_id, master_key_id, wrapped_key)"
                " SELECT %s, %s, %s FROM (SELECT set_config('synchronous_commit', 'off', true))"
                " AS async_commit ON CONFLICT (person_id) DO NOTHING RETURNING person_id",
                (person_id, key_id, wrapped),
            ).fetchone()
            if inserted is not None:
                return data_key
            row = self._row(conn, person_id)
        if row is None:
            raise PersonKeyMissingError(f"no key for person {person_id}")
        if row[1] is None:
            raise PersonErasedError(person_id)
        if row[0] is None:
            raise MasterKeyError(f"the key of person {person_id} names no master key")
        return self.master.unwrap(person_id, row[0], bytes(row[1]))

    def get(self, person_id: UUID) -> bytes | None:
        """The person's data key, or None when erased."""
        with self._pool.connection() as conn:
            row = self._row(conn, person_id)
        if row is None:
            raise PersonKeyMissingError(f"no key for person {person_id}")
        if row[1] is None:
            return None
        if row[0] is None:
            raise MasterKeyError(f"the key of person {person_id} names no master key")
        return self.master.unwrap(person_id, row[0], bytes(row[1]))

    def get_many(self, person_ids: set[UUID]) -> dict[UUID, bytes | None]:
        """Data keys of several persons in one query (None for the erased)."""
        if not person_ids:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT person_id, master_key_id, wrapped_key FROM person_keys"
                " WHERE person_id = ANY(%s)",
                (list(person_ids),),
            ).fetchall()
        found = {
            pid: None if wrapped is None else self.master.unwrap(pid, key_id, bytes(wrapped))
            for pid, key_id, wrapped in rows
        }
        missing = person_ids - found.keys()
        if missing:
            raise PersonKeyMissingError(f"no key for persons {sorted(map(str, missing))}")
        return found

    def erase(self, person_id: UUID) -> None:
        """Delete the key, leaving a tombstone so the key is never made again."""
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO person_keys (person_id, erased_at) VALUES (%s, now())"
                " ON CONFLICT (person_id) DO UPDATE SET wrapped_key = NULL,"
                " master_key_id = NULL, erased_at = coalesce(person_keys.erased_at, now())",
                (person_id,),
            )

    def rotate(self) -> int:
        """Re-wrap keys under the current master key, in batches, each its own transaction."""
        count = 0
        while True:
            with self._pool.connection() as conn, conn.transaction():
                rows = conn.execute(
                    "SELECT person_id, master_key_id, wrapped_key FROM person_keys"
                    " WHERE wrapped_key IS NOT NULL AND master_key_id <> %s"
                    " LIMIT 500 FOR UPDATE SKIP LOCKED",
                    (self.master.current_id,),
                ).fetchall()
                if not rows:
                    return count
                for person_id, key_id, wrapped in rows:
                    data_key = self.master.unwrap(person_id, key_id, bytes(wrapped))
                    new_id, new_wrapped = self.master.wrap(person_id, data_key)
                    conn.execute(
                        "UPDATE person_keys SET master_key_id = %s, wrapped_key = %s"
                        " WHERE person_id = %s",
                        (new_id, new_wrapped, person_id),
                    )
                count += len(rows)


@dataclass
class _CachedKey:
    aes: AESGCM | None  # None: the person was erased
    expires: float


class PersonCipher:
    """Encrypts and decrypts a person's data with their key, caching keys for a while.

    The cache is bounded in size and time: another process's erasure reaches
    this one's cache within `ttl_seconds`; this process's own erasures at once.
    """

    def __init__(self, keys: PersonKeyStore, ttl_seconds: float = 60.0, max_size: int = 10_000):
        self.keys = keys
        self._ttl = ttl_seconds
        self._max = max_size
        self._cache: OrderedDict[UUID, _CachedKey] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, person_id: UUID) -> _CachedKey | None:
        with self._lock:
            entry = self._cache.get(person_id)
            if entry is None or entry.expires < time.monotonic():
                return None
            self._cache.move_to_end(person_id)
            return entry

    def _remember(self, person_id: UUID, key: bytes | None) -> AESGCM | None:
        aes = None if key is None else AESGCM(key)
        with self._lock:
            self._cache[person_id] = _CachedKey(aes, time.monotonic() + self._ttl)
            self._cache.move_to_end(person_id)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return aes

    def refresh(self, person_ids: set[UUID]) -> None:
        """Reload several persons' keys in one round trip, so erasures show at once."""
        for person_id, key in self.keys.get_many(person_ids).items():
            self._remember(person_id, key)

    def forget(self, person_id: UUID) -> None:
        """Drop a person's key from the cache."""
        with self._lock:
            self._cache.pop(person_id, None)

    def encrypt(self, person_id: UUID, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt for a person, making their key on first use."""
        entry = self._cached(person_id)
        aes = entry.aes if entry else self._remember(person_id, self.keys.get_or_create(person_id))
        if aes is None:
            raise PersonErasedError(person_id)
        nonce = os.urandom(NONCE_BYTES)
        return nonce + aes.encrypt(nonce, plaintext, aad)

    def decrypt(self, person_id: UUID, blob: bytes, aad: bytes) -> bytes | None:
        """Decrypt a person's data; None when the person was erased."""
        entry = self._cached(person_id)
        aes = entry.aes if entry else self._remember(person_id, self.keys.get(person_id))
        if aes is None:
            return None
        return aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


# ------------------------------------------------------------- the mapper

SNAPSHOT_TOPIC = "eventsourcing.domain:Snapshot"


def _personal_paths(topic: str, state: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """The personal paths of an event's state, and the prefix they sit under."""
    if topic == SNAPSHOT_TOPIC:
        aggregate_cls = resolve_topic(state["topic"])
        return tuple(getattr(aggregate_cls, "PERSONAL_STATE", ())), "state"
    return tuple(getattr(resolve_topic(topic), "PERSONAL", ())), ""


def _walk(root: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """(container, key) pairs a path names: "a.b" one value, "a.*" every value of a dict."""
    *parents, last = path.split(".")
    node: Any = root
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if not isinstance(node, dict):
        return
    if last == "*":
        yield from ((node, k) for k in list(node))
    elif last in node:
        yield node, last


def restore_personal(
    holder: dict[str, Any], paths: tuple[str, ...], plaintext: bytes | None
) -> None:
    """Put decrypted personal fields back into a state (`[erased]` placeholders when None)."""
    if plaintext is None:
        for path in paths:
            for container, key in _walk(holder, path):
                container[key] = ERASED
        return
    for name, value in json.loads(plaintext).items():
        path, key = name.split("\x1f")
        for container, found in _walk(holder, path):
            if found == key:
                container[key] = value


class PersonalDataMapper(Mapper[UUID]):
    """A mapper that stores each event's personal fields encrypted under the person's key."""

    def __init__(
        self, *args: Any, cipher: PersonCipher, encrypt: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cipher = None  # the library's whole-event cipher is not used
        self.person_cipher = cipher
        # Off only to measure what encryption costs (bench/): events are stored in plain text.
        self.encrypt = encrypt

    @staticmethod
    def _aad(originator_id: object, version: int, topic: str) -> bytes:
        return f"{originator_id}:{version}:{topic}".encode()

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """Encode an event, encrypting its personal fields."""
        stored = super().to_stored_event(domain_event)
        if not self.encrypt:
            return stored
        state = self.transcoder.decode(stored.state)
        paths, prefix = _personal_paths(stored.topic, state)
        if not paths:
            return stored
        holder = state[prefix] if prefix else state
        secret: dict[str, Any] = {}
        for path in paths:
            for container, key in _walk(holder, path):
                secret[f"{path}\x1f{key}"] = container[key]
                container[key] = None
        if all(v is None or v == ERASED for v in secret.values()):
            # Nothing personal to hide (e.g. a snapshot taken after an erasure,
            # when the person's key is gone): store the placeholders as they are.
            return stored
        blob = self.person_cipher.encrypt(
            UUID(str(holder["person_id"])),
            json.dumps(secret, separators=(",", ":")).encode(),
            self._aad(stored.originator_id, stored.originator_version, stored.topic),
        )
        state[PII_FIELD] = base64.b64encode(blob).decode()
        return StoredEvent(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=self.transcoder.encode(state),
        )

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """A stored event's state, decoded but not yet decrypted."""
        state: dict[str, Any] = self.transcoder.decode(stored_event.state)
        return state

    def to_domain_event(
        self, stored_event: StoredEvent, state: dict[str, Any] | None = None
    ) -> Any:
        """Decode an event, decrypting its personal fields (placeholders once erased).

        `state`, when given, is decode_state's answer for this event (consumed).
        """
        if state is None:
            state = self.decode_state(stored_event)
        if PII_FIELD not in state:
            return self._event_of(stored_event, state)
        blob = base64.b64decode(state.pop(PII_FIELD))
        paths, prefix = _personal_paths(stored_event.topic, state)
        holder = state[prefix] if prefix else state
        plaintext = self.person_cipher.decrypt(
            UUID(str(holder["person_id"])),
            blob,
            self._aad(
                stored_event.originator_id, stored_event.originator_version, stored_event.topic
            ),
        )
        restore_personal(holder, paths, plaintext)
        return self._event_of(stored_event, state)

    @staticmethod
    def _event_of(stored_event: StoredEvent, state: dict[str, Any]) -> Any:
        # The library's Mapper.to_domain_event after its decoding step: the state is decoded
        # once here, where re-encoding it for the library to decode again cost a relay or a
        # rebuild a third of its reading time. Personal values are JSON-native, so nothing
        # the transcoder would turn into objects is skipped.
        cls = resolve_topic(stored_event.topic)
        convert = find_id_convertor(cls, cast(Hashable, type(stored_event.originator_id)))
        state["originator_id"] = convert(stored_event.originator_id)
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event
