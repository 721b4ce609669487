"""`kontakt sync ...`: the Outlook sync processes."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="Outlook sync: the worker and the Graph-compatible server.", no_args_is_help=True
)


@app.command("worker")
def worker() -> None:
    """Run the sync worker: contacts.events -> each user's Outlook (Graph) -> outcome events."""
    from services.sync.worker_main import main

    main()


@app.command("graph-server")
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
) -> None:
    """Run the Graph-compatible server (in memory) for tests and local runs."""
    import logging

    from services.sync.graph_server import DropConnectionError, Faults, GraphServer, GraphState
    from shared.http import serve
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    state = GraphState(token_ttl=token_ttl, client_secret=client_secret)
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
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
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


@app.command("resync")
def resync(
    user: Annotated[str | None, typer.Option(help="Only this user's links.")] = None,
) -> None:
    """Reconcile every link again (writes to Graph only what differs from what was pushed)."""
    import asyncio

    from services.sync.store import resync_links
    from shared.settings import KontaktSettings

    count = asyncio.run(resync_links(KontaktSettings().pg_dsn(), user))
    typer.echo(f"links to reconcile again: {count}")


dlq_app = typer.Typer(
    help="The sync worker's dead letters: contact events it could not apply.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list() -> None:
    """List the sync worker's dead letters: id, origin, family, state, error."""
    from services.projections.commands import show_dead_letters
    from services.sync.dlq import FAMILY

    show_dead_letters(FAMILY)


@dlq_app.command("resubmit")
def dlq_resubmit(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Ids from `sync dlq list`; none: all open")
    ] = None,
) -> None:
    """Publish the sync worker's dead letters again to their original topic."""
    from services.projections.commands import resubmit_dead_letters
    from services.sync.dlq import FAMILY

    resubmit_dead_letters(ids, FAMILY)
