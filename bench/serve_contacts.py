"""The contacts API as `kontakt serve contacts` runs it, optionally without per-person
encryption (to measure what encryption costs): `python -m bench.serve_contacts --port N
[--plain]`. Settings come from the KONTAKT_* environment, as for the real command."""

from __future__ import annotations

import argparse
import functools

import services.contacts.api_main as contacts_api
from services.contacts.store import build_contacts_app
from shared.http import serve
from shared.settings import KontaktSettings


def main() -> None:
    """Serve the contacts API."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plain", action="store_true", help="store events unencrypted")
    args = parser.parse_args()
    settings = KontaktSettings()
    if args.plain:
        contacts_api.build_contacts_app = functools.partial(build_contacts_app, encrypt=False)
    serve(contacts_api.create_app(settings), settings.api_host, args.port)


if __name__ == "__main__":
    main()
