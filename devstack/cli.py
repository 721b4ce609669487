"""The local tooling's commands: `stack up|down|status`, `run` and `graph-server`.

services/cli adds them to the `kontakt` command when devstack is installed.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from devstack import stack
from shared.commandline import fail

stack_app = typer.Typer(help="The local PostgreSQL and Kafka servers.", no_args_is_help=True)


@stack_app.command("up")
def stack_up() -> None:
    """Start PostgreSQL and Kafka on 127.0.0.1 (installing what is missing); reuse what runs."""
    try:
        info = stack.up(stack.StackConfig.from_env())
    except stack.StackError as exc:
        fail(str(exc))
    for key, value in info.as_env().items():
        typer.echo(f"{key}={value}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the servers this project started."""
    for line in stack.down(stack.StackConfig.from_env()):
        typer.echo(line)


@stack_app.command("status")
def stack_status() -> None:
    """Print what runs and the connection settings the services use."""
    typer.echo(json.dumps(stack.status(stack.StackConfig.from_env()), indent=2, default=str))


def run(
    demo: Annotated[bool, typer.Option(help="Seed the demo data (idempotent).")] = True,
) -> None:
    """Start the servers and every Kontakt process; Ctrl-C stops what this started."""
    from devstack.run import RunError, run_system

    try:
        code = run_system(demo, typer.echo)
    except (stack.StackError, RunError) as exc:
        fail(str(exc))
    raise typer.Exit(code)


def graph_server(
    host: Annotated[
        str | None, typer.Option(help="Defaults to KONTAKT_SYNC_GRAPH_SERVER_HOST.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Defaults to KONTAKT_SYNC_GRAPH_SERVER_PORT.")
    ] = None,
    fault_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of Graph requests that get a fault.")
    ] = 0.0,
    faults: Annotated[
        str, typer.Option(help="Comma-separated fault kinds: 429, 503, slow, drop.")
    ] = "429,503,slow,drop",
    retry_after: Annotated[
        float, typer.Option(min=0.0, help="Retry-After of injected 429s.")
    ] = 1.0,
    slow_seconds: Annotated[float, typer.Option(min=0.0, help="Delay of slow responses.")] = 2.0,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault dice.")] = None,
    token_ttl: Annotated[int, typer.Option(min=1, help="Lifetime of issued tokens (s).")] = 3599,
    client_secret: Annotated[
        str | None, typer.Option(help="Require this client secret at the token endpoint.")
    ] = None,
    mailboxes: Annotated[
        str, typer.Option(help="Comma-separated mailboxes (UPNs) to provision at start.")
    ] = "",
    request_limit: Annotated[
        int, typer.Option(min=1, help="Requests per app and mailbox in a window (Graph: 10000).")
    ] = 10_000,
    request_window: Annotated[
        float, typer.Option(min=0.001, help="The window of --request-limit (s; Graph: 600).")
    ] = 600.0,
) -> None:
    """Run the Graph-compatible server (in memory) for tests and local runs."""
    import logging

    from devstack.graph_server import DropConnectionError, Faults, GraphServer, GraphState
    from shared.http import serve
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    state = GraphState(
        token_ttl=token_ttl,
        client_secret=client_secret,
        request_limit=request_limit,
        request_window=request_window,
    )
    state.mailboxes.update(m.strip().lower() for m in mailboxes.split(",") if m.strip())
    try:
        state.set_faults(
            Faults(
                rate=fault_rate,
                kinds=[k.strip() for k in faults.split(",") if k.strip()],
                retry_after=retry_after,
                slow_seconds=slow_seconds,
                seed=seed,
            )
        )
    except ValueError as exc:
        fail(str(exc))
    # An injected dropped connection is no server error worth a traceback.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: not (record.exc_info and record.exc_info[0] is DropConnectionError)
    )
    serve(
        GraphServer(state),
        host or settings.sync_graph_server_host,
        port or settings.sync_graph_server_port,
        log_level="warning",
    )
