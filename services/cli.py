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
app.command("history")(ops.history)
app.command("as-of")(ops.as_of)
app.command("replay")(ops.replay)
app.command("status")(ops.status)


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
    from services.contacts.personal_data import PersonKeyError
    from services.contacts.store import rotate_person_keys
    from shared.settings import KontaktSettings

    try:
        count, master_id = rotate_person_keys(KontaktSettings())
    except (PersonKeyError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # e.g. the database cannot be reached: one line, no traceback
        _fail(f"{type(exc).__name__}: {exc}")
    typer.echo(f"re-wrapped {count} person keys with master key {master_id}")


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
        _fail(f"could not create topics at {settings.kafka_bootstrap}: {exc}")
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


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
    from services.contacts.api_main import main

    main(host, port)


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
