"""`kontakt sync ...`: the Outlook sync processes."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="Outlook sync: the worker, reconciling again, dead letters.", no_args_is_help=True
)


@app.command("worker")
def worker() -> None:
    """Run the sync worker: contacts.events -> each user's Outlook (Graph) -> outcome events."""
    from services.sync.worker_main import main

    main()


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
