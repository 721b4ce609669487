"""Analysts' commands over the event store: history, as-of, replay.

Each prints one clear line and exits non-zero on a wrong id, a bad date or an
unreachable server, never a traceback.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any
from uuid import UUID

import typer

from shared.commandline import CommandError, run_command
from shared.settings import KontaktSettings


def parse_id(text: str) -> UUID:
    """A contact/person/company id, or a clear error."""
    try:
        return UUID(text)
    except ValueError:
        raise CommandError(f"not an id: {text!r} (expected a UUID)") from None


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date or ISO timestamp as the domain reads it (UTC), or a clear error."""
    from services.contacts import domain

    return _moment(lambda: domain.parse_moment(text, end_of_day=end_of_day), text)


def as_of_moment(text: str) -> datetime:
    """The moment "as of" a date or timestamp means, as the HTTP API reads it too."""
    from services.contacts import domain

    return _moment(lambda: domain.as_of_moment(text), text)


def _moment(read: Callable[[], datetime], text: str) -> datetime:
    from services.contacts.domain import InvalidValueError

    try:
        return read()
    except InvalidValueError as exc:
        raise CommandError(f"{exc}: {text!r}") from None


@contextmanager
def contacts_app(settings: KontaktSettings) -> Iterator[Any]:
    """The contacts application, or a clear error when PostgreSQL cannot be reached."""
    from services.contacts.store import build_contacts_app, close_contacts_app

    try:
        app = build_contacts_app(settings)
    except Exception as exc:  # any failure to connect: one line
        raise CommandError(
            f"cannot reach PostgreSQL at {settings.pg_host}:{settings.pg_port}"
            f"/{settings.pg_database}: {type(exc).__name__}"
        ) from None
    try:
        yield app
    finally:
        close_contacts_app(app)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


# ---------------------------------------------------------------- commands


def history(
    contact: Annotated[str, typer.Argument(help="The contact id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of text")] = False,
) -> None:
    """Every event of a contact: version, when, who, what changed."""

    def body() -> None:
        from services.contacts.domain import ContactNotFoundError

        contact_id = parse_id(contact)
        with contacts_app(KontaktSettings()) as app:
            try:
                entries = app.history(contact_id)
            except ContactNotFoundError:
                raise CommandError(f"contact {contact_id} not found") from None
        for e in entries:
            if as_json:
                typer.echo(_json(e))
                continue
            changed = ", ".join(
                f"{k}: {_short(v['old'])} -> {_short(v['new'])}"
                for k, v in e["changes"].items()
                if k not in ("status",) or len(e["changes"]) == 1
            )
            typer.echo(
                f"v{e['version']}  {e['occurred_at']:%Y-%m-%d %H:%M:%S}  {e['type']:<22}"
                f" by {e['actor']} via {e.get('channel', 'api')}  {changed}"
            )

    run_command(body)


def _short(value: Any) -> str:
    text = _json(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_of(
    contact: Annotated[str, typer.Argument(help="The contact id")],
    when: Annotated[
        str, typer.Argument(help="A date (end of that day, UTC), timestamp or version")
    ],
) -> None:
    """The contact as it was at a date, a moment, or a version."""

    def body() -> None:
        from services.contacts.domain import ContactNotFoundError

        contact_id = parse_id(contact)
        with contacts_app(KontaktSettings()) as app:
            try:
                if when.isdigit():
                    state = app.get_contact(contact_id, int(when))
                else:
                    state = app.get_contact_as_of(contact_id, as_of_moment(when))
                    if state is None:
                        raise CommandError(f"contact {contact_id} did not exist yet at {when}")
            except ContactNotFoundError:
                raise CommandError(f"contact {contact_id} (or that version) not found") from None
            typer.echo(json.dumps(state.state(), default=str, indent=2, ensure_ascii=False))

    run_command(body)


REPLAY_COLUMNS = [
    "global_position", "event_id", "type", "occurred_at", "actor", "correlation_id",
    "contact_id", "person_id", "aggregate_version", "data",
]  # fmt: skip


def replay(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="A file (appended to when resuming)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    from_position: Annotated[int, typer.Option(min=0, help="Resume after this store position")] = 0,
    since: Annotated[str | None, typer.Option(help="From this date or timestamp")] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this date (inclusive) or timestamp")
    ] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only these event types (repeatable)")
    ] = None,
    person: Annotated[str | None, typer.Option(help="Only this person's events")] = None,
    contact: Annotated[str | None, typer.Option(help="Only this contact's events")] = None,
    company: Annotated[str | None, typer.Option(help="Only contacts of this company")] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events read per round")] = 2000,
) -> None:
    """Stream events from the event store, filtered, as JSON Lines or CSV; resumable."""

    def body() -> None:
        from services.contacts.export import StoreReader
        from shared.contract.contacts import CONTACT_EVENT_TYPES

        if fmt not in ("jsonl", "csv"):
            raise CommandError(f"unknown format {fmt!r}: use jsonl or csv")
        known = {t.model_fields["type"].default for t in CONTACT_EVENT_TYPES}
        unknown = set(event_type or []) - known
        if unknown:
            raise CommandError(
                f"unknown event type {sorted(unknown)}; known: {', '.join(sorted(known))}"
            )
        start, end = (
            (parse_moment(since) if since else None),
            (parse_moment(until, end_of_day=True) if until else None),
        )
        person_id, contact_id, company_id = (
            parse_id(person) if person else None,
            parse_id(contact) if contact else None,
            parse_id(company) if company else None,
        )
        with contacts_app(KontaktSettings()) as app:
            reader = StoreReader(app)
            companies: dict[UUID, UUID] = {}

            def company_of(cid: UUID) -> UUID:
                if cid not in companies:
                    companies[cid] = app.get_contact(cid, 1).company_id
                return companies[cid]

            sink: IO[str] = (
                output.open("a" if from_position else "w", newline="") if output else sys.stdout
            )
            writer = csv.writer(sink) if fmt == "csv" else None
            if writer is not None and not from_position:
                writer.writerow(REPLAY_COLUMNS)
            position, written = from_position, 0
            try:
                while True:
                    events, last = reader.read(position, batch)
                    if last is None:
                        break
                    for e in events:
                        if event_type and e.type not in event_type:
                            continue
                        if (start and e.occurred_at < start) or (end and e.occurred_at > end):
                            continue
                        if person_id and e.person_id != person_id:
                            continue
                        if contact_id and e.contact_id != contact_id:
                            continue
                        if company_id and company_of(e.contact_id) != company_id:
                            continue
                        row = e.model_dump(mode="json")
                        if writer is not None:
                            writer.writerow(
                                [_json(row[c]) if c == "data" else row[c] for c in REPLAY_COLUMNS]
                            )
                        else:
                            sink.write(_json(row) + "\n")
                        written += 1
                    position = last
            finally:
                if output:
                    sink.close()
        typer.echo(
            f"replayed {written} events up to position {position};"
            f" resume with --from-position {position}",
            err=True,
        )

    run_command(body)
