"""`kontakt sync ...`: the Outlook sync processes."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Outlook sync: the worker and the Graph-compatible server.", no_args_is_help=True
)
