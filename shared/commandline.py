"""What every `kontakt` command does with a user-facing failure: one line, exit 1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import typer


class CommandError(Exception):
    """A user-facing failure of a command: printed as one line."""


def fail(message: str) -> NoReturn:
    """Print one error line and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def run_command(body: Callable[[], None]) -> None:
    """Run a command's body: a CommandError is one error line, a closed pipe is no error."""
    try:
        body()
    except CommandError as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
