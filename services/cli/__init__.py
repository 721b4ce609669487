"""The `kontakt` command line: composed here, each command dispatching to one function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli import status as status_command
from services.contacts import commands as contacts_commands
from services.projections import commands as projections_commands
from services.sync import commands as sync_commands
from shared.commandline import fail

app = typer.Typer(help="Kontakt: the contact-person service.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
keys_app = typer.Typer(help="Person keys of the per-person encryption.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(keys_app, name="keys")
app.add_typer(projections_commands.app, name="projections")
app.add_typer(sync_commands.app, name="sync")
app.command("history")(contacts_commands.history)
app.command("as-of")(contacts_commands.as_of)
app.command("replay")(contacts_commands.replay)
app.command("status")(status_command.status)


def _add_local_tooling(app: typer.Typer) -> None:
    """Add `stack`, `run` and `graph-server` when devstack is installed (not in the image)."""
    try:
        from devstack import cli as devstack_cli
    except ModuleNotFoundError as exc:
        if exc.name != "devstack":
            raise
        return
    app.add_typer(devstack_cli.stack_app, name="stack")
    app.command("run")(devstack_cli.run)
    app.command("graph-server")(devstack_cli.graph_server)


_add_local_tooling(app)


@app.command("token")
def token(
    sub: Annotated[str, typer.Option(help="The user id the token speaks for.")],
    role: Annotated[list[str] | None, typer.Option(help="A role to grant (repeatable).")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
) -> None:
    """Mint a bearer token for local use, signed with the configured key."""
    from shared.auth import AuthError, mint_token
    from shared.settings import KontaktSettings

    try:
        typer.echo(mint_token(KontaktSettings(), sub, role or [], ttl))
    except (AuthError, ValueError) as exc:
        fail(str(exc))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-wrap every person key with KONTAKT_MASTER_KEY (old keys in KONTAKT_MASTER_KEYS_PREVIOUS).

    Events are not touched: only the wrapped person keys change.
    """
    from services.contacts.personal_data import PersonKeyError
    from services.contacts.store import rotate_person_keys
    from shared.settings import KontaktSettings

    try:
        count, master_id = rotate_person_keys(KontaktSettings())
    except (PersonKeyError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:  # e.g. the database cannot be reached: one line, no traceback
        fail(f"{type(exc).__name__}: {exc}")
    typer.echo(f"re-wrapped {count} person keys with master key {master_id}")


@app.command("migrate")
def migrate() -> None:
    """Apply the database migrations not yet applied (every service also does at start)."""
    from shared.migrations import migrate as apply_migrations
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    try:
        applied = apply_migrations(settings.pg_dsn())
    except Exception as exc:  # e.g. the database cannot be reached: one line, no traceback
        fail(f"{type(exc).__name__}: {exc}")
    typer.echo(f"applied: {', '.join(applied) or 'none (up to date)'}")


@app.command("relay")
def relay() -> None:
    """Run the outbox relay: event store -> Kafka (one active, others hot standby)."""
    from services.contacts.relay_main import main

    main()


@app.command("topics")
def topics() -> None:
    """Create every topic of the contract that is missing (partitions, retention from settings)."""
    import asyncio
    import logging

    from shared.kafka import ensure_topics
    from shared.settings import KontaktSettings

    # The client logs each failed connection; the one line below says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    settings = KontaktSettings()
    try:
        created = asyncio.run(ensure_topics(settings, settings.all_topics()))
    except Exception as exc:  # an unreachable broker: one line, no traceback
        fail(f"could not create topics at {settings.kafka_bootstrap}: {exc}")
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


#: Where `kontakt contract` writes, relative to the working directory (the repository).
CONTRACT_DOCS = Path("docs") / "contract"


@app.command("contract")
def contract(
    directory: Annotated[
        Path, typer.Option(help="Where to write them (the repository's docs/contract).")
    ] = CONTRACT_DOCS,
) -> None:
    """Write docs/contract/ (JSON Schemas, AsyncAPI) from the code, after a deliberate change."""
    from shared.contract.spec import write_docs

    for path in write_docs(directory):
        typer.echo(f"wrote {path}")


@serve_app.command("contacts")
def serve_contacts(
    host: Annotated[str | None, typer.Option(help="Defaults to KONTAKT_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Defaults to KONTAKT_API_PORT.")] = None,
) -> None:
    """Run the contacts command API."""
    from services.contacts.api_main import main

    main(host, port)


@serve_app.command("web")
def serve_web(
    host: Annotated[str | None, typer.Option(help="Defaults to KONTAKT_WEB_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Defaults to KONTAKT_WEB_PORT.")] = None,
) -> None:
    """Run the web UI (the contact page in a browser, over both APIs)."""
    from services.web.app import main

    main(host, port)


def main() -> None:
    """Entry point of the console script."""
    app()
