"""Processes starting together on a new database do not trip over each other."""

from __future__ import annotations

import threading

from services.contacts.store import build_contacts_app, close_contacts_app
from shared.settings import KontaktSettings


def test_contacts_apps_built_at_once_on_a_new_database_all_start(
    isolated_settings: KontaktSettings,
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def build() -> None:
        barrier.wait()
        try:
            close_contacts_app(build_contacts_app(isolated_settings))
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
