"""The contacts API as `kontakt serve contacts` runs it, optionally without per-person
encryption (to measure what encryption costs): `python -m bench.serve_contacts --port N
[--plain]`. Settings come from the KONTAKT_* environment, as for the real command."""

from __future__ import annotations

import argparse

from psycopg_pool import ConnectionPool

import services.contacts.app as contacts_app
from services.contacts.application import ContactsApp
from services.contacts.personal_data import PersonCipher, PostgresPersonKeyStore
from services.contacts.photos import PostgresPhotoStore
from shared.http import serve
from shared.migrations import migrate
from shared.settings import KontaktSettings


def build_plain(settings: KontaktSettings) -> ContactsApp:
    """build_contacts_app, but events are stored without per-person encryption."""
    key_secret = settings.key_secret.get_secret_value().encode()
    pool = ConnectionPool(
        settings.pg_dsn(), min_size=1, max_size=4, open=True, kwargs={"autocommit": True}
    )
    migrate(settings.pg_dsn())
    keys = PostgresPersonKeyStore(contacts_app.build_master_keys(settings), pool)
    cipher = PersonCipher(keys, ttl_seconds=settings.key_cache_ttl_seconds)
    photos = PostgresPhotoStore(pool, cipher, key_secret, settings.photo_max_bytes)
    return ContactsApp(
        settings.eventsourcing_env(),
        key_secret=key_secret,
        photos=photos,
        cipher=cipher,
        encrypt=False,
    )


def main() -> None:
    """Serve the contacts API."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plain", action="store_true", help="store events unencrypted")
    args = parser.parse_args()
    settings = KontaktSettings()
    if args.plain:
        contacts_app.build_contacts_app = build_plain
    serve(contacts_app.create_app(settings), settings.api_host, args.port)


if __name__ == "__main__":
    main()
