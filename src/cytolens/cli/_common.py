"""Shared CLI plumbing: user errors become one line on stderr and a non-zero exit; warnings one line
each; progress bars."""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Iterator
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


def echo_warning(message: object) -> None:
    """Print a warning as the CLI shows every warning: one line ``warning: <message>`` on stderr."""
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A :func:`warnings.showwarning` without the file, line number and source line Python adds."""
    echo_warning(message)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, Python warnings print as ``warning: <message>`` (the Python API keeps the usual form).

    >>> with one_line_warnings():
    ...     warnings.warn("diameter 1 px is outside what this model handles")  # doctest: +SKIP
    warning: diameter 1 px is outside what this model handles
    """
    with warnings.catch_warnings():  # restores showwarning (and the filters) afterwards
        warnings.showwarning = _show_warning
        yield


@contextlib.contextmanager
def warnings_about(item: object) -> Iterator[None]:
    """Print the warnings raised within the block as ``warning: <item>: <message>``, each message once.

    For a command that works through many inputs (a plate of images): the line names the
    input, and a warning that every input raises is shown for each, not only for the first.
    """
    with warnings.catch_warnings(record=True) as caught:  # fresh "once per place" bookkeeping per block
        try:
            yield
        finally:
            shown = set()
            for warning in caught:
                message = f"{item}: {warning.message}"
                if message not in shown:
                    shown.add(message)
                    echo_warning(message)


def progress_listener(quiet: bool = False) -> ProgressCallback | None:
    """The CLI's progress callback: a tqdm bar on a terminal; None (nothing) with ``--quiet`` or when
    stderr is a pipe or a log file.

    >>> progress_listener(quiet=True) is None
    True
    """
    if quiet or not sys.stderr.isatty():
        return None
    return tqdm_listener()
