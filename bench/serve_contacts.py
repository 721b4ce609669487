"""The contacts API as `kontakt serve contacts` runs it, optionally without per-person
encryption (to measure what encryption costs) or without a speed-up (to measure what each
gives): `python -m bench.serve_contacts --port N [--plain] [--no-group-commit] [--h11]`.
Settings come from the KONTAKT_* environment, as for the real command; psycopg's pure Python
implementation is chosen with PSYCOPG_IMPL=python in the environment."""

from __future__ import annotations

import argparse
import functools

import uvicorn
from eventsourcing.application import Application

import services.contacts.api_main as contacts_api
import shared.lifecycle
from services.contacts.application import ContactsApp
from services.contacts.store import build_contacts_app
from shared.http import serve
from shared.settings import KontaktSettings


def main() -> None:
    """Serve the contacts API."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plain", action="store_true", help="store events unencrypted")
    parser.add_argument("--no-group-commit", action="store_true", help="one transaction a save")
    parser.add_argument("--h11", action="store_true", help="uvicorn's pure Python HTTP parser")
    args = parser.parse_args()
    settings = KontaktSettings()
    if args.plain:
        contacts_api.build_contacts_app = functools.partial(build_contacts_app, encrypt=False)
    if args.no_group_commit:
        ContactsApp.construct_event_store = Application.construct_event_store  # type: ignore[method-assign]
    if args.h11:
        shared.lifecycle.uvicorn.Config = functools.partial(uvicorn.Config, http="h11")  # type: ignore[assignment,misc]
    serve(contacts_api.create_app(settings), settings.api_host, args.port)


if __name__ == "__main__":
    main()
