"""The task seam: what a task supplies, and the registry that finds it by the ``task`` key.

A *task* (segmentation, denoising, classification, ...) is an object with the
attributes and methods of :class:`Task`. It supplies only what is particular to it:

* ``config_model`` — its validated training config (a :class:`~cytolens.train.config.TrainConfig`);
* ``prepare_data(config, progress)`` — split the annotated data and bring it to the
  network's input form once (targets from annotations), as :class:`PreparedData`;
* ``network_channels(config, data)`` — input and output channels of the network;
* ``make_loss``, ``make_sampler`` (augmented batches, see :class:`cytolens.train.sampler.CropSampler`),
  ``make_validator`` (validation loss and metrics, e.g. AP@0.5);
* ``adapt_to_parent(config, parent)`` — checks and settings taken from a model to start from;
* ``package_meta(config, train_samples)`` — its entries of ``model.json`` (e.g. post-processing defaults);
* ``count_units(samples)`` — how many annotated things (objects, images) samples hold;
* ``primary_metric`` (maximized by tuning and learning curves) and ``unit``;
* optionally ``training_warnings(config, train_samples)`` — lines about the data to show before
  training (segmentation: objects larger than the network's receptive field).

Everything else comes for free from :func:`cytolens.train.fitting.fit_model`: the split
(stratified, grouped, or from folders), the network from the architecture registry,
transfer learning, the loop (schedules, early stopping, resumable checkpoints, curves,
overfitting report, mixed precision, CPU or GPU), and a model
package with a typed ``model.json`` whose normalization training and inference share.
Tuning and learning curves (:mod:`cytolens.train.search`) work on every task.

A task registers under its name; ``cytolens train`` finds it from the config's ``task``::

    register_task(MyTask())           # or, lazily: TASKS["my_task"] = "package.module:TASK"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cytolens.errors import InvalidParameterError

#: task name → the task object, or "module:attribute" where it lives (imported when first used)
TASKS: dict[str, Any] = {"segmentation": "cytolens.tasks.segmentation.task:TASK",
                         "restoration": "cytolens.tasks.restoration.task:TASK",
                         "classification": "cytolens.tasks.classification.task:TASK"}

Batches = Callable[[int], Iterable[tuple[Any, Any]]]
LossFn = Callable[[Any, Any], Any]
Validator = Callable[[Any], dict]


@dataclass
class PreparedData:
    """A task's annotated data, split and prepared once, reusable across runs (tuning, learning curves).

    ``samples`` maps each train and val id to what the task's sampler and validator read
    (at least ``.image``, ``.targets`` and ``.stratum``); ``key`` records the settings the
    preparation depends on, so a run with other settings prepares again.
    """

    split: dict[str, list[str]]
    samples: dict[str, Any]
    files: dict[str, tuple]
    key: tuple

    def side(self, name: str, ids: Sequence[str] | None = None) -> list:
        return [self.samples[i] for i in (self.split[name] if ids is None else ids)]


@runtime_checkable
class Task(Protocol):
    """What a task module supplies to the generic training run (see the module docstring)."""

    name: str
    config_model: type
    primary_metric: str
    unit: str

    def prepare_data(self, config, progress: bool = True) -> PreparedData: ...

    def preparation_key(self, config) -> tuple: ...

    def network_channels(self, config, data: PreparedData) -> tuple[int, int]: ...

    def make_loss(self, config, train_samples: Sequence) -> LossFn: ...

    def make_sampler(self, config, train_samples: Sequence) -> Batches: ...

    def make_validator(self, config, samples: Sequence, loss_fn: LossFn, train_samples: Sequence) -> Validator: ...

    def adapt_to_parent(self, config, parent): ...

    def package_meta(self, config, train_samples: Sequence) -> dict: ...

    def count_units(self, samples: Sequence) -> int: ...


#: the methods a task has (the attributes are name, config_model, primary_metric and unit)
_METHODS = ("prepare_data", "preparation_key", "network_channels", "make_loss", "make_sampler", "make_validator",
            "adapt_to_parent", "package_meta", "count_units")


def register_task(task: Task) -> Task:
    """Make ``task`` trainable under ``task.name`` (``cytolens train`` picks it by the config's ``task``)."""
    if not isinstance(task, Task):
        missing = [name for name in ("name", "config_model", "primary_metric", "unit", *_METHODS)
                   if not hasattr(task, name)]
        raise InvalidParameterError(f"{type(task).__name__} is not a task: it lacks {', '.join(missing)}")
    TASKS[task.name] = task
    return task


def task_for(name_or_config) -> Task:
    """The task of a name or of a config's ``task``; imported on first use."""
    name = getattr(name_or_config, "task", name_or_config)
    if name not in TASKS:
        raise InvalidParameterError(f"task {name!r} cannot be trained; known tasks: {', '.join(sorted(TASKS))}")
    entry = TASKS[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = TASKS[name] = getattr(importlib.import_module(module), attribute)
    return entry


def config_model(name: str) -> type:
    """The config model of task ``name``, without importing the task's training code when it is lazy.

    A lazily registered task keeps its config model in ``<package>.config`` as
    ``<Name>TrainConfig`` (e.g. :class:`cytolens.tasks.segmentation.config.SegmentationTrainConfig`),
    a module that imports no torch, so validating a config stays light.
    """
    entry = TASKS[name]
    if isinstance(entry, str):
        package = entry.partition(":")[0].rpartition(".")[0]
        class_name = "".join(part.title() for part in name.split("_")) + "TrainConfig"
        try:
            return getattr(importlib.import_module(package + ".config"), class_name)
        except (ImportError, AttributeError):
            entry = task_for(name)
    return entry.config_model
