"""Reading the event store as the contract's integration events, in store order.

The relay publishes what this reads; read-model rebuilds and analysts' replays
consume it directly.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from psycopg.sql import SQL, Identifier

from services.contacts.application import ContactsApp
from services.contacts.integration import (
    CATALOGUE_STORE_TOPICS,
    PUBLISHED_STORE_TOPICS,
    to_catalogue_event,
    to_integration_event,
)
from shared.contract.contacts import ContactEventBase
from shared.contract.infotags import CATALOGUE_ID, InfotagEventBase

#: What the store publishes: contact events and the infotag catalogue's events.
PublishedEvent = ContactEventBase | InfotagEventBase


#: The store topics a reader decodes: contact events and the infotag catalogue's.
READ_TOPICS = PUBLISHED_STORE_TOPICS | CATALOGUE_STORE_TOPICS


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
