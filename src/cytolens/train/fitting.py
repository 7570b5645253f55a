"""The one training run every task gets: config → split → network → loop → model package.

:func:`fit_model` takes a :class:`~cytolens.train.task.Task` and its validated config and
does everything that is not particular to the task: transfer learning from a parent
package, the network from the architecture registry, the task's own warnings, the
generic loop (:func:`cytolens.train.loop.fit`: resumable, early stopping, curves), the
training-set scores, and the package (``model.json`` as a typed
:class:`~cytolens.models.meta.ModelMeta`, weights, the training record). ``cytolens train``
and :func:`cytolens.train.run` call it with the task of the config.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from cytolens.errors import InvalidParameterError
from cytolens.train.task import PreparedData, Task


def load_parent(task: Task, config):
    """Load ``config.init_from`` and adapt the config to it; returns ``(package, config)``."""
    from cytolens import models

    package = models.load(config.init_from)
    return package, adapt_to_parent(task, config, package)


def adapt_to_parent(task: Task, config, package):
    """Check that ``package`` can start a run of ``config``; fill unset settings from it (shared, then task)."""
    from cytolens.train.transfer import adapt_architecture

    return task.adapt_to_parent(adapt_architecture(config, package), package)


def config_stamp(config) -> dict:
    """What must not change for a checkpoint to be resumed: the config with its paths resolved,
    the split file by content and the output left out (the same run may be written elsewhere)."""
    from cytolens.train.config import dump_config

    stamp = dump_config(config)
    stamp.pop("output", None)
    for key, value in config.data:
        if isinstance(value, Path):
            stamp["data"][key] = str(value.resolve())
    split_file = config.data.split_file
    if split_file is not None and Path(split_file).is_file():
        stamp["data"]["split_file"] = hashlib.sha1(Path(split_file).read_bytes()).hexdigest()
    return stamp


def prepare_work_dir(work: Path, config, resume: bool, progress: bool) -> None:
    """Keep a resumable checkpoint only when it was made with the same config."""
    from cytolens.io import make_folder

    make_folder(work)
    stamp = work / "config.json"
    current = config_stamp(config)
    checkpoint = work / "last.pt"
    if checkpoint.exists():
        previous = json.loads(stamp.read_text()) if stamp.exists() else current
        if not resume or previous != current:
            if progress and resume:
                print(f"the config changed since the checkpoint in {work}; starting over", flush=True)
            checkpoint.unlink()
            for name in ("history.csv", "best.safetensors"):
                (work / name).unlink(missing_ok=True)
    stamp.write_text(json.dumps(current, indent=1) + "\n")


def network_for(task: Task, config, data: PreparedData) -> torch.nn.Module:
    """The network of ``config.architecture`` with the task's input and output channels."""
    from cytolens.nn.registry import build_network as build

    in_channels, out_channels = task.network_channels(config, data)
    arch = config.architecture
    return build(arch.name, in_channels=in_channels, out_channels=out_channels, **arch.network_args())


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        return None


def fit_model(task: Task, config, data: PreparedData | None = None, *, progress: bool = True, parent=None,
              train_ids: Sequence[str] | None = None, on_epoch_end=None, score_train: bool = False,
              write_package: bool = True, work_dir=None, resume: bool = True, max_train_scored: int = 50):
    """Train the model ``config`` describes for ``task``; return a :class:`~cytolens.train.loop.TrainResult`.

    Parameters
    ----------
    task : Task
        What the task supplies (:mod:`cytolens.train.task`).
    config : the task's validated config
    data : PreparedData, optional
        Prepared data to reuse (from ``task.prepare_data`` with the same data settings).
    parent : ModelPackage, optional
        Start from these weights (else from ``config.init_from`` if set).
    train_ids : list of str, optional
        Train on these ids only (a subset of the train split; learning curves).
    on_epoch_end : callable, optional
        Called with each epoch's history row (tuning reports and prunes here).
    score_train : bool
        Also measure the validation metrics on (up to ``max_train_scored``) training images.
    write_package : bool
        Write the model package to ``config.output`` (else only the work folder).
    work_dir : path, optional
        Checkpoints and curves; ``<output>.work`` by default.
    resume : bool
        Continue from the work folder's checkpoint if it was made with the same config.
    """
    from safetensors.torch import load_file

    from cytolens.nn.precision import half_precision_weights
    from cytolens.train.loop import LoopConfig, TrainResult, fit, overfitting_report, seed_everything
    from cytolens.train.transfer import freeze_encoder_hook, load_parent_weights

    messages: list[str] = []
    parent_source = None if parent is None else str(parent.path or parent.name)
    if parent is None and getattr(config, "init_from", None):
        parent, config = load_parent(task, config)
        parent_source = config.init_from
    elif parent is not None:
        config = adapt_to_parent(task, config, parent)
    if data is None or data.key != task.preparation_key(config):
        data = task.prepare_data(config, progress)
    split = data.split
    ids = list(split["train"]) if train_ids is None else sorted(train_ids)
    outside = sorted(set(ids) - set(split["train"]))
    if outside:
        raise InvalidParameterError(f"train_ids must come from the train split; {outside[:3]} do not")
    train_samples, val_samples = data.side("train", ids), data.side("val")
    for message in getattr(task, "training_warnings", lambda config, samples: [])(config, train_samples):
        messages.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    seed_everything(config.seed)  # the initial weights too
    network = network_for(task, config, data)
    if parent is not None:
        load_parent_weights(network, parent.network.state_dict())
    loss_fn = task.make_loss(config, train_samples)
    sampler = task.make_sampler(config, train_samples)
    validate = task.make_validator(config, val_samples, loss_fn, train_samples)
    opt = config.optimization
    loop = LoopConfig(epochs=opt.epochs, optimizer=opt.optimizer, learning_rate=opt.learning_rate,
                      momentum=opt.momentum, weight_decay=opt.weight_decay, schedule=opt.schedule,
                      warmup_epochs=opt.warmup_epochs, patience=opt.patience, seed=config.seed,
                      max_minutes=opt.max_minutes, device=opt.device, precision=opt.precision)
    work = Path(work_dir) if work_dir is not None else Path(str(config.output) + ".work")
    prepare_work_dir(work, config, resume, progress)
    hook = freeze_encoder_hook(config.freeze_encoder_epochs) if parent is not None else None
    history = fit(network, loss_fn, sampler, validate, loop, work, resume=resume, progress=progress,
                  on_epoch_start=hook, on_epoch_end=on_epoch_end)
    best = min(history, key=lambda r: r["val_loss"])
    overfit = overfitting_report(history, loop.overfit_tolerance)
    if overfit:
        messages.append(overfit)
    best_weights = load_file(str(work / "best.safetensors"))
    if config.weights_dtype == "float16":
        best_weights = half_precision_weights(best_weights)
    train_scores: dict = {}
    if score_train:
        network.load_state_dict(best_weights)
        network.eval()
        scored = train_samples[:: max(1, math.ceil(len(train_samples) / max_train_scored))]
        with torch.no_grad():
            scores = task.make_validator(config, scored, loss_fn, train_samples)(network)
        train_scores = {"train_" + k.removeprefix("val_"): v for k, v in scores.items()}
    result = TrainResult(history=history, best=best, work_dir=work, split_sizes={k: len(v) for k, v in split.items()},
                         n_train_images=len(train_samples), n_train_units=task.count_units(train_samples),
                         train_scores=train_scores, messages=messages)
    if write_package:
        result.package = write_model_package(task, config, network, best_weights, result, parent, parent_source,
                                             split if train_ids is None else {**split, "train": ids}, train_samples,
                                             overfit)
    return result


def write_model_package(task: Task, config, network: torch.nn.Module, weights: dict, result, parent,
                        parent_source: str | None, split: dict, train_samples: Sequence,
                        overfit: str | None = None) -> Path:
    """Write ``config.output``: ``model.json`` (shared entries + the task's), weights and the training record."""
    from cytolens import models
    from cytolens.models.meta import ModelMeta
    from cytolens.nn.registry import architecture_name
    from cytolens.preprocess import PercentileNormalizer
    from cytolens.train.config import save_config
    from cytolens.train.splits import save_split
    from cytolens.train.transfer import parent_record

    work, best = result.work_dir, result.best
    folders = {k: str(v) for k, v in config.data if isinstance(v, Path) and k != "split_file" and k != "strata_csv"}
    meta = ModelMeta.model_validate({
        "name": config.name,
        "version": "1",
        "task": task.name,
        "architecture": {"name": architecture_name(network), "args": network.config.to_dict()},
        "normalization": PercentileNormalizer(*config.normalization).to_meta(),
        **task.package_meta(config, train_samples),
        "training": {
            "data": folders,
            "split_sizes": result.split_sizes,
            "train_images_used": result.n_train_images,
            f"train_{task.unit}": result.n_train_units,
            "seed": config.seed,
            "epochs_run": len(result.history),
            "best_epoch": best["epoch"],
            "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
            "commit": _commit(),
            "parent": None if parent is None else parent_record(parent, parent_source),
            "freeze_encoder_epochs": config.freeze_encoder_epochs if parent is not None else 0,
            "overfitting": overfit,
            "warnings": result.messages,
        },
        "validation": {},
        "license": config.license or "not stated (set license in the training config)",
    })
    # the package's copy points at the package's own split.json and at data paths valid from there
    packaged = config.model_copy(update={"data": config.data.model_copy(
        update={"split_file": Path(config.output) / "split.json"})})
    config_path = save_config(packaged, work / "train_config.yaml", relative_to=config.output)
    split_path = work / "split.json"
    save_split(split, split_path)
    (work / "model_meta.json").write_text(json.dumps(meta.to_json(), indent=1) + "\n")
    return models.save(config.output, meta, weights,
                       {"train_config.yaml": config_path, "split.json": split_path,
                        "history.csv": work / "history.csv", "curves.png": work / "curves.png"})
