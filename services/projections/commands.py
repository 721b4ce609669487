"""`kontakt projections ...`: the read-model workers, the query API and operations."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Read models: workers, query API, rebuilds, dead letters.", no_args_is_help=True
)
