"""`kontakt sync ...`: the Outlook sync processes."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="Outlook sync: the worker, reconciling again, dead letters.", no_args_is_help=True
)


def _logging(service: str) -> None:
    from shared.observability import configure_logging
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    configure_logging(service, settings.log_level, settings.log_json)


@app.command("worker")
def worker() -> None:
    """Run the sync worker: contacts.events -> each user's Outlook (Graph) -> outcome events."""
    import asyncio
    import signal

    from services.sync.worker import run_worker
    from shared.settings import KontaktSettings

    _logging("sync")
    settings = KontaktSettings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())


@app.command("resync")
def resync(
    user: Annotated[str | None, typer.Option(help="Only this user's links.")] = None,
) -> None:
    """Reconcile every link again (writes to Graph only what differs from what was pushed)."""
    import asyncio

    from services.sync.store import SyncStore
    from shared.settings import KontaktSettings

    async def main() -> int:
        store = await SyncStore.open(KontaktSettings().pg_dsn(), max_size=1)
        try:
            return await store.mark_all_dirty(user)
        finally:
            await store.close()

    typer.echo(f"links to reconcile again: {asyncio.run(main())}")


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
