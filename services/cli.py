"""The `kontakt` command line: the local stack, the services, and tokens."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from services import ops
from services.projections import commands as projections_commands
from services.stack import launcher
from services.sync import commands as sync_commands

app = typer.Typer(help="Kontakt: the contact-person service.", no_args_is_help=True)
stack_app = typer.Typer(help="The local PostgreSQL and Kafka servers.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
keys_app = typer.Typer(help="Person keys of the per-person encryption.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(keys_app, name="keys")
app.add_typer(projections_commands.app, name="projections")
app.add_typer(sync_commands.app, name="sync")
ops.register(app)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up() -> None:
    """Start PostgreSQL and Kafka on 127.0.0.1 (installing what is missing); reuse what runs."""
    try:
        info = launcher.up(launcher.StackConfig.from_env())
    except launcher.StackError as exc:
        _fail(str(exc))
    for key, value in info.as_env().items():
        typer.echo(f"{key}={value}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the servers this project started."""
    for line in launcher.down(launcher.StackConfig.from_env()):
        typer.echo(line)


@stack_app.command("status")
def stack_status() -> None:
    """Print what runs and the connection settings the services use."""
    typer.echo(json.dumps(launcher.status(launcher.StackConfig.from_env()), indent=2, default=str))


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


@app.command("contract")
def contract() -> None:
    """Write docs/contract/ (JSON Schemas, AsyncAPI) from the code, after a deliberate change."""
    from shared.contract.spec import write_docs

    for path in write_docs():
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


#: Health ports of the processes without an API, when `kontakt run` starts them.
RUN_PORTS = {
    "KONTAKT_RELAY_HTTP_PORT": "8011",
    "KONTAKT_WORKER_HTTP_PORT": "8012",
    "KONTAKT_SYNC_HTTP_PORT": "8013",
}


@app.command("run")
def run(
    demo: Annotated[bool, typer.Option(help="Seed the demo data (idempotent).")] = True,
) -> None:
    """Start the servers and every Kontakt process; Ctrl-C stops what this started."""
    import time

    import httpx

    from services.demo import DEMO_USER, seed
    from services.supervisor import Child, Supervisor
    from shared.auth import mint_token
    from shared.settings import KontaktSettings

    cfg = launcher.StackConfig.from_env()
    already = launcher.status(cfg)
    was_running = bool(already["postgres"]["running"] and already["kafka"]["running"])
    try:
        info = launcher.up(cfg)
    except launcher.StackError as exc:
        _fail(str(exc))
    # The launcher's connection settings and local defaults, unless the environment
    # says otherwise; Outlook sync talks to the local Graph-compatible server.
    for key, value in info.as_env().items():
        os.environ.setdefault(key, value)
    for key, value in RUN_PORTS.items():
        os.environ.setdefault(key, value)
    graph_port = os.environ.setdefault("KONTAKT_SYNC_GRAPH_SERVER_PORT", "28080")
    graph = f"http://127.0.0.1:{graph_port}"
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_BASE_URL", f"{graph}/v1.0")
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_AUTHORITY", graph)
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_CLIENT_ID", "local")
    os.environ.setdefault("KONTAKT_LOG_JSON", "false")
    settings = KontaktSettings()
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    query_url = f"http://{settings.query_host}:{settings.query_port}"
    os.environ.setdefault("KONTAKT_CONTACTS_API_URL", api_url)
    settings = KontaktSettings()
    supervisor = Supervisor(
        [
            Child("contacts API", ["serve", "contacts"]),
            Child("relay", ["relay"]),
            Child("projection worker", ["projections", "worker"]),
            Child("query API", ["projections", "query"]),
            Child("Graph-compatible server", ["sync", "graph-server"]),
            Child("sync worker", ["sync", "worker"]),
        ],
        dict(os.environ),
        typer.echo,
    )
    supervisor.start()
    code = 1
    try:
        health = [settings.relay_http_port, settings.worker_http_port, settings.sync_http_port]
        ready = [f"{api_url}/health/ready", f"{query_url}/health/ready"] + [
            f"http://{settings.health_host}:{port}/health/ready" for port in health
        ]
        deadline = time.monotonic() + 120
        for url in ready:
            while True:
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or not supervisor.all_running():
                    _fail(f"{url} did not become ready")
                time.sleep(0.3)
        token = mint_token(settings, DEMO_USER, [], 12 * 3600)
        if demo:
            ids = seed(settings, token, api_url)
            typer.echo(f"demo data seeded: Karen Jensen is {ids.contacts['karen']}")
        typer.echo(f"contacts API:   {api_url}/docs")
        typer.echo(f"query API:      {query_url}/docs")
        typer.echo(f"events (AsyncAPI): {api_url}/asyncapi")
        typer.echo(f"demo user's Outlook folder: {graph}/_admin/users/{DEMO_USER}/contacts")
        typer.echo(
            f"metrics: {api_url}/metrics, {query_url}/metrics, "
            + ", ".join(f"http://{settings.health_host}:{p}/metrics" for p in health)
        )
        typer.echo(f"token for user '{DEMO_USER}': {token}")
        typer.echo("Ctrl-C stops everything this command started.")
        code = supervisor.wait()
    finally:
        supervisor.stop()
        if not was_running:
            for line in launcher.down(cfg):
                typer.echo(line)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
