"""The ``cytolens`` command: one sub-command per API function, plus models and demo.

Commands live in small modules (``segment_cmds``, ``evaluate_cmds``, ``track_cmds``,
``train_cmds``); each exposes ``register(app)``. No logic lives here.
"""

from __future__ import annotations

import typer

from cytolens.cli import evaluate_cmds, segment_cmds, track_cmds, train_cmds

app = typer.Typer(
    name="cytolens",
    help="Deep learning for cellular image analysis: segment, track, evaluate, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (segment_cmds, evaluate_cmds, track_cmds, train_cmds):
    module.register(app)


def main() -> None:
    app()
