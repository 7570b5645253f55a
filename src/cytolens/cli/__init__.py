"""The ``cytolens`` command: one sub-command per API function, plus models and demo.

Commands live in small modules (``segment_cmds``, ``evaluate_cmds``, ``track_cmds``,
``train_cmds``); each exposes ``register(app)``. No logic lives here.
"""

from __future__ import annotations

import typer

from cytolens.cli import (
    classify_cmds,
    dask_cmds,
    evaluate_cmds,
    export_cmds,
    finetune_cmds,
    restore_cmds,
    segment_cmds,
    serve_cmds,
    track_cmds,
    train_cmds,
)
from cytolens.cli._common import one_line_warnings

app = typer.Typer(
    name="cytolens",
    help="Deep learning for cellular image analysis: segment, track, evaluate, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version() -> str:
    """The installed distribution's version (the package's own when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cytolens")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from cytolens import __version__

        return __version__


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"cytolens {_version()}")
        raise typer.Exit()


@app.callback()
def _every_command(ctx: typer.Context,
                   version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")) -> None:
    """Deep learning for cellular image analysis: segment, track, evaluate, train."""
    ctx.with_resource(one_line_warnings())  # every warning as one line `warning: ...`, for every command


for module in (segment_cmds, evaluate_cmds, track_cmds, train_cmds, restore_cmds, classify_cmds, serve_cmds, dask_cmds,
               export_cmds, finetune_cmds):
    module.register(app)


def main() -> None:
    app()
