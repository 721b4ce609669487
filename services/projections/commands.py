"""`kontakt projections ...`: the read-model workers, the query API and operations."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from shared.commandline import fail

app = typer.Typer(
    help="Read models: workers, query API, rebuilds, dead letters.", no_args_is_help=True
)
dlq_app = typer.Typer(help="Dead letters: messages a worker could not apply.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.command("worker")
def worker(
    models: Annotated[
        str,
        typer.Option(help="Comma-separated families: contacts,activities,items,sync-status"),
    ] = "contacts,activities,items,sync-status",
) -> None:
    """Run a projection worker; start more copies to share the partitions."""
    from services.projections.worker_main import main

    families = [m.strip() for m in models.split(",") if m.strip()]
    try:
        main(families)
    except ValueError as exc:
        fail(str(exc))


@app.command("query")
def query(
    host: Annotated[str | None, typer.Option(help="Defaults to KONTAKT_QUERY_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Defaults to KONTAKT_QUERY_PORT.")] = None,
) -> None:
    """Run the query API (every tab of the contact page)."""
    from services.projections.query_main import main

    main(host, port)


@app.command("rebuild")
def rebuild(
    model: Annotated[str, typer.Argument(help="The read model to rebuild: contacts")],
) -> None:
    """Rebuild a read model from the event store beside the live one, then swap it in.

    The query API keeps answering; the worker keeps consuming.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.projections.rebuild import REBUILDABLE, rebuild_from_store
    from shared.settings import KontaktSettings

    if model not in REBUILDABLE:
        fail(
            f"{model!r} cannot be rebuilt from the store; choose from {', '.join(REBUILDABLE)}"
            " (activities and items hold other services' events, kept as they arrived)"
        )
    settings = KontaktSettings()
    columns = (TextColumn("rebuilding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, TextColumn("{task.speed} ev/s")) as progress:
            task = progress.add_task("events", total=None)
            report = asyncio.run(
                rebuild_from_store(
                    settings,
                    lambda done, total: progress.update(task, completed=done, total=total),
                )
            )
    except Exception as exc:  # unreachable servers: one line, no traceback
        fail(f"{type(exc).__name__}: {exc}")
    typer.echo(
        f"rebuilt {model}: {report.events} events, {report.contacts} contacts, up to position"
        f" {report.position}, in {report.seconds:.1f}s ({report.rate:,.0f} events/s)"
    )


@app.command("lag")
def lag() -> None:
    """Print each read-model group's lag per topic partition."""
    from services.projections.worker import FAMILIES, group_id, topics_of
    from shared.lag import group_lag
    from shared.settings import KontaktSettings

    settings = KontaktSettings()

    async def collect() -> list[dict[str, object]]:
        rows = []
        for family in FAMILIES:
            for p in await group_lag(
                settings.kafka_bootstrap, group_id(family), topics_of(settings, family)
            ):
                rows.append(
                    {
                        "group": p.group,
                        "topic": p.topic,
                        "partition": p.partition,
                        "committed": p.committed,
                        "end": p.end,
                        "lag": p.lag,
                    }
                )
        return rows

    try:
        typer.echo(json.dumps(asyncio.run(collect()), indent=2))
    except Exception as exc:  # an unreachable broker: one line, no traceback
        fail(f"{type(exc).__name__}: {exc}")


def show_dead_letters(family: str | None = None) -> None:
    """Print the dead letters (of one family, if named): id, origin, family, state, error."""
    from services.projections.db import pool_for
    from services.projections.dlq import list_dead_letters
    from shared.migrations import migrate_async
    from shared.settings import KontaktSettings

    settings = KontaktSettings()

    async def collect() -> list[str]:
        await migrate_async(settings.pg_dsn())
        async with pool_for(settings) as pool:
            letters = await list_dead_letters(settings, pool, family)
        return [
            f"{d.id}\t{d.original_topic}[{d.original_partition}]@{d.original_offset}\t{d.family}"
            f"\t{'resubmitted ' + d.resubmitted_at.isoformat() if d.resubmitted_at else 'open'}"
            # One line per letter: a database error's DETAIL comes on a line of its own.
            f"\t{' '.join(d.error.split())}"
            for d in letters
        ]

    try:
        lines = asyncio.run(collect())
    except Exception as exc:  # unreachable servers: one line, no traceback
        fail(f"{type(exc).__name__}: {exc}")
    typer.echo("id\torigin\tfamily\tstate\terror")
    for line in lines:
        typer.echo(line)


def resubmit_dead_letters(ids: list[str] | None, family: str | None = None) -> None:
    """Publish dead letters (of one family, if named) again to their original topics."""
    from services.projections.db import pool_for
    from services.projections.dlq import resubmit
    from shared.migrations import migrate_async
    from shared.settings import KontaktSettings

    settings = KontaktSettings()

    async def run() -> int:
        await migrate_async(settings.pg_dsn())
        async with pool_for(settings) as pool:
            return len(await resubmit(settings, pool, ids or None, family))

    try:
        count = asyncio.run(run())
    except KeyError as exc:
        fail(str(exc.args[0]))
    except Exception as exc:  # unreachable servers: one line, no traceback
        fail(f"{type(exc).__name__}: {exc}")
    typer.echo(f"re-submitted {count} dead letters")


@dlq_app.command("list")
def dlq_list() -> None:
    """List dead letters: id, origin, family, error, and whether re-submitted."""
    show_dead_letters()


@dlq_app.command("resubmit")
def dlq_resubmit(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Ids from `dlq list`; none: all open")
    ] = None,
) -> None:
    """Publish dead letters again to their original topics (after fixing the cause)."""
    resubmit_dead_letters(ids)
