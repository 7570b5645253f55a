"""Training, for every task: config → splits → generic loop → model package, plus training practice.

* :func:`run` — train what a config describes (``cytolens train CONFIG.yaml``);
* :func:`tune` — hyperparameter search with optuna (``cytolens tune``);
* :func:`learning_curve` — does more annotation help? (``cytolens learning-curve``);
* :mod:`~cytolens.train.config` (validated configs, augmentation presets),
  :mod:`~cytolens.train.splits`, :mod:`~cytolens.train.weights` (class weights),
  :mod:`~cytolens.train.checks` (receptive field), :mod:`~cytolens.train.transfer`,
  :mod:`~cytolens.train.loop` (the generic loop, overfitting report).

Importing this package does not import torch or optuna; the functions do, when called.

The package itself is callable, ``cytolens.train(config)`` being :func:`run`: the
attribute ``cytolens.train`` is this subpackage as soon as anything imports it, so a
top-level function of that name could not survive.
"""

from __future__ import annotations

import sys
import types

from cytolens.train.config import AUGMENTATION_PRESETS, load_config, save_config, validate_config
from cytolens.train.splits import load_split, make_split, nested_subsets, save_split
from cytolens.train.weights import inverse_frequency_weights, pixel_class_weights, sample_weights


def run(config, *, progress: bool = True, overwrite: bool = False, resume: bool = True, on_epoch_end=None):
    """Train the model a config (YAML path, mapping or config object) describes; see :func:`cytolens.train.api.run`."""
    from cytolens.train.api import run as _run

    return _run(config, progress=progress, overwrite=overwrite, resume=resume, on_epoch_end=on_epoch_end)


def tune(config, trials: int = 20, out_dir=None, **options):
    """Hyperparameter search; see :func:`cytolens.train.search.tune`."""
    from cytolens.train.search import tune as _tune

    return _tune(config, trials, out_dir, **options)


def learning_curve(config, fractions=(0.1, 0.25, 0.5, 1.0), out_dir=None, **options):
    """Learning curve over growing fractions of the train split; see :func:`cytolens.train.search.learning_curve`."""
    from cytolens.train.search import learning_curve as _learning_curve

    return _learning_curve(config, fractions, out_dir, **options)


__all__ = ["AUGMENTATION_PRESETS", "inverse_frequency_weights", "learning_curve", "load_config",
           "load_split", "make_split", "nested_subsets", "pixel_class_weights", "run", "sample_weights",
           "save_config", "save_split", "tune", "validate_config"]


class _CallableModule(types.ModuleType):
    """Lets ``cytolens.train(config, ...)`` call :func:`run`."""

    def __call__(self, config, **options):
        return run(config, **options)


sys.modules[__name__].__class__ = _CallableModule
