"""The `kontakt` command line: the local stack, the services, and tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services import ops
from services.projections import commands as projections_commands
from services.sync import commands as sync_commands

app = typer.Typer(help="Kontakt: the contact-person service.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
keys_app = typer.Typer(help="Person keys of the per-person encryption.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(keys_app, name="keys")
app.add_typer(projections_commands.app, name="projections")
app.add_typer(sync_commands.app, name="sync")
ops.register(app)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


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
        _fail(str(exc))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-wrap every person key with KONTAKT_MASTER_KEY (old keys in KONTAKT_MASTER_KEYS_PREVIOUS).

    Events are not touched: only the wrapped person keys change.
    """
    from psycopg_pool import ConnectionPool

    from services.contacts.app import build_master_keys
    from services.contacts.personal_data import PersonKeyError, PostgresPersonKeyStore
    from shared.migrations import migrate
    from shared.settings import KontaktSettings

    try:
        settings = KontaktSettings()
        master = build_master_keys(settings)
        with ConnectionPool(
            settings.pg_dsn(), min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            migrate(settings.pg_dsn())
            store = PostgresPersonKeyStore(master, pool)
            count = store.rotate()
    except (PersonKeyError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # e.g. the database cannot be reached: one line, no traceback
        _fail(f"{type(exc).__name__}: {exc}")
    typer.echo(f"re-wrapped {count} person keys with master key {master.current_id}")


@app.command("migrate")
def migrate() -> None:
    """Apply the database migrations not yet applied (every service also does at start)."""
    from shared.migrations import migrate as apply_migrations
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    try:
        applied = apply_migrations(settings.pg_dsn())
    except Exception as exc:  # e.g. the database cannot be reached: one line, no traceback
        _fail(f"{type(exc).__name__}: {exc}")
    typer.echo(f"applied: {', '.join(applied) or 'none (up to date)'}")


@app.command("relay")
def relay() -> None:
    """Run the outbox relay: event store -> Kafka (one active, others hot standby)."""
    import asyncio

    from services.contacts.relay import run_relay
    from shared.observability import configure_logging
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    configure_logging("relay", settings.log_level, settings.log_json)
    asyncio.run(run_relay(settings))


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
        _fail(f"could not create topics at {settings.kafka_bootstrap}: {exc}")
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


@projections_commands.app.command("rebuild")
def rebuild(
    model: Annotated[str, typer.Argument(help="The read model to rebuild: contacts")],
) -> None:
    """Rebuild a read model from the event store beside the live one, then swap it in.

    The query API keeps answering; the worker keeps consuming. (Defined here, at the
    composition root: it joins the contacts store to the projections.)
    """
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.contacts.app import build_contacts_app, close_contacts_app
    from services.contacts.export import StoreReader
    from services.projections.rebuild import REBUILDABLE, rebuild_contacts
    from services.projections.worker import create_pool
    from shared.settings import KontaktSettings

    if model not in REBUILDABLE:
        _fail(
            f"{model!r} cannot be rebuilt from the store; choose from {', '.join(REBUILDABLE)}"
            " (activities and items hold other services' events, kept as they arrived)"
        )
    settings = KontaktSettings()

    async def run(progress: Progress) -> str:
        task = progress.add_task("events", total=None)
        contacts = await asyncio.to_thread(build_contacts_app, settings)
        pool = await create_pool(settings, size=2)
        try:
            report = await rebuild_contacts(
                settings,
                pool,
                StoreReader(contacts),
                lambda done, total: progress.update(task, completed=done, total=total),
            )
        finally:
            await pool.close()
            await asyncio.to_thread(close_contacts_app, contacts)
        return (
            f"rebuilt {model}: {report.events} events, {report.contacts} contacts, up to position"
            f" {report.position}, in {report.seconds:.1f}s ({report.rate:,.0f} events/s)"
        )

    columns = (TextColumn("rebuilding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, TextColumn("{task.speed} ev/s")) as progress:
            line = asyncio.run(run(progress))
    except Exception as exc:  # unreachable servers: one line, no traceback
        _fail(f"{type(exc).__name__}: {exc}")
    typer.echo(line)


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
    from services.contacts.app import create_app
    from shared.http import serve
    from shared.observability import configure_logging
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    configure_logging("contacts-api", settings.log_level, settings.log_json)
    serve(create_app(settings), host or settings.api_host, port or settings.api_port)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
