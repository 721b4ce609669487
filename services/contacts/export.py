"""Reading the event store as the contract's integration events, in store order.

The relay publishes what this reads; read-model rebuilds and analysts' replays
consume it directly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from typing import Any
from uuid import UUID

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Notification
from psycopg.sql import SQL, Identifier

from services.contacts.application import ContactsApp
from services.contacts.domain import CONTACT_EVENT_CLASSES, Contact, public_name
from services.contacts.integration import (
    _ENVELOPE,
    CATALOGUE_STORE_TOPICS,
    PUBLISHED_STORE_TOPICS,
    to_catalogue_event,
    to_integration_event,
)
from services.contacts.personal_data import (
    NONCE_BYTES,
    PII_FIELD,
    PersonalDataMapper,
    restore_personal,
)
from shared.contract import contacts as contract
from shared.contract.contacts import ContactEventBase
from shared.contract.infotags import CATALOGUE_ID, InfotagEventBase

#: What the store publishes: contact events and the infotag catalogue's events.
PublishedEvent = ContactEventBase | InfotagEventBase


#: The store topics a reader decodes: contact events and the infotag catalogue's.
READ_TOPICS = PUBLISHED_STORE_TOPICS | CATALOGUE_STORE_TOPICS


#: The library's transcodings whose text the contract's models parse themselves.
_TEXT_TRANSCODINGS = frozenset({"uuid_hex", "datetime_iso", "date_iso"})
_EVENT_CLASSES: tuple[type[Any], ...] = CONTACT_EVENT_CLASSES
#: Contact events whose infotags the contract lists (the store keeps them by tag).
_LISTED_TAGS = frozenset(
    cls.TOPIC
    for cls in _EVENT_CLASSES
    if issubclass(cls, Contact.Created | Contact.JobChangeUndone)
)
#: Per stored topic: the contract's model, its type name, the personal paths, the class.
_BULK_TOPICS: dict[str, tuple[type[ContactEventBase], str, tuple[str, ...], type[Any]]] = {
    cls.TOPIC: (
        contract.CONTACT_EVENTS_BY_TYPE[public_name(cls)],
        public_name(cls),
        tuple(getattr(cls, "PERSONAL", ())),
        cls,
    )
    for cls in _EVENT_CLASSES
    if getattr(cls, "class_version", 1) == 1  # an upcast event goes the mapper's way
}
_NAMESPACE = contract.EVENT_ID_NAMESPACE.bytes


class _NotPlainError(Exception):
    """A state holds a value the bulk reader leaves to the mapper (an unusual transcoding)."""


def _plain(value: Any) -> Any:
    """A value decoded by plain JSON with the library's transcoded values as their text.

    The transcoder's rule: a dict of exactly `_type_` and `_data_` is a transcoded value.
    """
    if isinstance(value, dict):
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            if value["_type_"] not in _TEXT_TRANSCODINGS:
                raise _NotPlainError(value["_type_"])
            return value["_data_"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _event_id(contact_id: object, version: int) -> str:
    """contract.event_id_for as hex (uuid5's steps, without making a UUID to be parsed again)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + f"{contact_id}:{version}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()


class StoreReader:
    """Reads contact events from the store as contract events."""

    def __init__(self, contacts: ContactsApp) -> None:
        self.contacts = contacts

    def max_position(self) -> int:
        """The newest position in the store (0 when empty)."""
        return self.contacts.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int) -> tuple[list[ContactEventBase], int | None]:
        """Contact events after a position, and the last position scanned (None: nothing new).

        Keys of the batch's persons are fetched fresh, so an erasure made elsewhere
        shows at once as erased placeholders.
        """
        events, last = self.read_published(after, limit)
        return [e for e in events if isinstance(e, ContactEventBase)], last

    def read_published(self, after: int, limit: int) -> tuple[list[PublishedEvent], int | None]:
        """Contact and catalogue events after a position, in store order, and the last scanned."""
        notifications = self.contacts.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        if not notifications:
            return [], None
        mapper = self.contacts.mapper
        # Each state is decoded once: for its person id (whose key is fetched fresh, one
        # round trip for the batch) and then for the event itself.
        states = {n.id: mapper.decode_state(n) for n in notifications if n.topic in READ_TOPICS}
        self.contacts.cipher.refresh(
            {
                UUID(str(states[n.id]["person_id"]))
                for n in notifications
                if n.topic in PUBLISHED_STORE_TOPICS
            }
        )
        events: list[PublishedEvent] = []
        for n in notifications:
            if n.topic in PUBLISHED_STORE_TOPICS:
                event: Any = mapper.to_domain_event(n, states[n.id])
                events.append(to_integration_event(event, n.id))
            elif n.topic in CATALOGUE_STORE_TOPICS:
                events.append(to_catalogue_event(mapper.to_domain_event(n, states[n.id]), n.id))
        return events, notifications[-1].id

    def read_bulk(self, after: int, limit: int) -> tuple[list[PublishedEvent], int | None]:
        """The same events as read_published, made for bulk readers (a rebuild) at less cost.

        Each contact event's state is decoded by a fast JSON decoder, its personal fields
        decrypted with the batch's keys (one query), and the contract's model validated
        straight from it, as a consumer validates the relay's message; no domain event is
        made. Anything unusual (a catalogue event, a transcoding or JSON the fast path does
        not know) is read as read_published reads it.
        """
        notifications = self.contacts.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        if not notifications:
            return [], None
        mapper = self.contacts.mapper
        plain: dict[int, dict[str, Any]] = {}
        for n in notifications:
            if n.topic in _BULK_TOPICS:
                # What the fast path does not know is left to the mapper below.
                with contextlib.suppress(orjson.JSONDecodeError, _NotPlainError):
                    plain[n.id] = _plain(orjson.loads(n.state))
        # Keys fetched fresh for the batch, so an erasure made elsewhere shows at once.
        wanted = {UUID(s["person_id"]) for s in plain.values() if PII_FIELD in s}
        keys = {
            str(person).replace("-", ""): None if key is None else AESGCM(key)
            for person, key in self.contacts.cipher.keys.get_many(wanted).items()
        }
        events: list[PublishedEvent] = []
        for n in notifications:
            state = plain.get(n.id)
            if state is not None:
                events.append(self._contract_event(mapper, n, state, keys))
            elif n.topic in PUBLISHED_STORE_TOPICS:
                events.append(to_integration_event(mapper.to_domain_event(n), n.id))
            elif n.topic in CATALOGUE_STORE_TOPICS:
                events.append(to_catalogue_event(mapper.to_domain_event(n), n.id))
        return events, notifications[-1].id

    @staticmethod
    def _contract_event(
        mapper: PersonalDataMapper,
        n: Notification,
        state: dict[str, Any],
        keys: dict[str, AESGCM | None],
    ) -> ContactEventBase:
        """The contract's model of a contact event from its plainly decoded state."""
        model, type_name, paths, cls = _BULK_TOPICS[n.topic]
        blob = state.pop(PII_FIELD, None)
        if blob is not None:
            raw = base64.b64decode(blob)
            aes = keys[state["person_id"]]
            aad = mapper._aad(n.originator_id, n.originator_version, n.topic)
            plaintext = (
                None if aes is None else aes.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
            )
            restore_personal(state, paths, plaintext)
        data = {k: v for k, v in state.items() if k not in _ENVELOPE}
        if n.topic in _LISTED_TAGS:
            data["infotags"] = [{"tag": t, **p} for t, p in sorted(data["infotags"].items())]
        return model.model_validate(
            {
                "event_id": _event_id(n.originator_id, n.originator_version),
                "type": type_name,
                "occurred_at": state["timestamp"],
                "actor": state["actor"],
                "correlation_id": state["correlation_id"],
                # Events stored before the channel was recorded read as the class says.
                "channel": state.get("channel", cls.channel),
                "contact_id": n.originator_id,
                "person_id": state["person_id"],
                "aggregate_version": n.originator_version,
                "global_position": n.id,
                "data": data,
            }
        )

    def catalogue_events(self, up_to: int) -> list[InfotagEventBase]:
        """The infotag catalogue's events up to a store position, oldest first."""
        rows = self._rows_of(CATALOGUE_ID, 0, CATALOGUE_STORE_TOPICS)
        return [
            to_catalogue_event(self.contacts.mapper.to_domain_event(n), n.id)
            for n in rows
            if n.id <= up_to
        ]

    def _rows_of(
        self, originator_id: UUID, after_version: int, topics: frozenset[str]
    ) -> list[Notification]:
        recorder: Any = self.contacts.recorder
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {schema}.{table} WHERE originator_id = %s AND originator_version > %s"
            " ORDER BY originator_version"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (originator_id, after_version))
            return [
                Notification(
                    id=r["notification_id"],
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                for r in curs.fetchall()
                if r["topic"] in topics
            ]

    def contact_events(self, contact_id: UUID, after_version: int = 0) -> list[ContactEventBase]:
        """One contact's events after a version, as the relay publishes them (oldest first).

        Consumers that missed an event (dead-lettered, or never received) repair the
        contact from this.
        """
        rows = self._rows_of(contact_id, after_version, PUBLISHED_STORE_TOPICS)
        if rows:
            decode = self.contacts.mapper.transcoder.decode
            self.contacts.cipher.refresh({UUID(str(decode(rows[0].state)["person_id"]))})
        return [to_integration_event(self.contacts.mapper.to_domain_event(n), n.id) for n in rows]
