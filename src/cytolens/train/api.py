"""Run training by config, whatever the task: ``cytolens.train.run("config.yaml")``.

The ``task`` key of a config picks the task (:mod:`cytolens.train.task`: its config model
and what it supplies) and :func:`cytolens.train.fitting.fit_model` trains it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from cytolens.errors import InvalidParameterError, OutputExistsError
from cytolens.train.config import load_config, resolve_paths, validate_config

ConfigLike = str | os.PathLike | dict | BaseModel


def as_config(config: ConfigLike, base: str | os.PathLike | None = None) -> BaseModel:
    """A validated config from a YAML path, a mapping (paths relative to ``base`` or the cwd) or a config."""
    if isinstance(config, BaseModel):
        return config
    if isinstance(config, dict):
        return resolve_paths(validate_config(config), Path.cwd() if base is None else base)
    if isinstance(config, str | os.PathLike):
        return load_config(config)
    raise InvalidParameterError(f"config must be a YAML path, a mapping or a config object, got {type(config).__name__}")


def run(config: ConfigLike, *, progress: bool = True, overwrite: bool = False, resume: bool = True,
        on_epoch_end=None):
    """Train the model a config describes and write its package to ``config.output``.

    Parameters
    ----------
    config : path, mapping or config object
        A YAML file (``cytolens train CONFIG.yaml``), a mapping, or a validated config.
    progress : bool
        Progress bars and one line per epoch.
    overwrite : bool
        Replace an existing package at ``config.output`` (otherwise an error).
    resume : bool
        Continue from ``<output>.work/last.pt`` when it was made with the same config.
    on_epoch_end : callable, optional
        Called with each epoch's history row once the epoch's checkpoint
        (``<output>.work/last.pt``) is written, e.g. to keep every epoch's weights.

    Returns
    -------
    TrainResult
        ``.package`` is the written folder; ``.best`` the kept epoch's scores;
        ``.messages`` the warnings (receptive field, overfitting).
    """
    config = as_config(config)
    output = Path(config.output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (--overwrite) or choose another output")
    from cytolens.train.fitting import fit_model
    from cytolens.train.task import task_for

    return fit_model(task_for(config), config, progress=progress, resume=resume, on_epoch_end=on_epoch_end)
