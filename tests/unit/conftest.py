"""Unit fixtures: the contacts application on in-memory persistence and fakes."""

from __future__ import annotations

import pytest

from services.contacts.application import ContactsApp
from services.contacts.personal_data import InMemoryPersonKeyStore, MasterKeys, PersonCipher
from services.contacts.photos import InMemoryPhotoStore


@pytest.fixture
def app() -> ContactsApp:
    """The contacts application in memory, with in-memory person keys and photos."""
    keys = InMemoryPersonKeyStore(MasterKeys(b"m" * 32))
    return ContactsApp(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        key_secret=b"k" * 32,
        photos=InMemoryPhotoStore(max_bytes=100_000),
        cipher=PersonCipher(keys),
    )
