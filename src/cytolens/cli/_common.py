"""Shared CLI plumbing: user errors become one line on stderr and a non-zero exit; progress bars."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from cytolens.errors import CytolensError
from cytolens.progress import ProgressCallback, tqdm_listener

F = TypeVar("F", bound=Callable)


def user_errors(command: F) -> F:
    """Decorate a CLI command so a :class:`CytolensError` prints ``error: ...`` and exits 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CytolensError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def progress_listener(quiet: bool = False) -> ProgressCallback | None:
    """The CLI's progress callback: a tqdm bar on a terminal; None (nothing) with ``--quiet`` or when
    stderr is a pipe or a log file.

    >>> progress_listener(quiet=True) is None
    True
    """
    if quiet or not sys.stderr.isatty():
        return None
    return tqdm_listener()
