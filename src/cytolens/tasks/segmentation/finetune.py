"""Fine-tune a segmentation model on a person's corrected label images, within a time budget.

The human-in-the-loop step: a model proposes, a person corrects some images, and a copy of
the model is trained further on those corrections (Cellpose 2.0's recipe). Nothing here is a
new training loop: the images and their labels are linked into ``<output>.work/data``, a
segmentation config with ``init_from`` the chosen model is written for them (its schema,
object scale, normalization and augmentation are the parent's), a few timed steps size the
schedule to the budget (:mod:`cytolens.train.budget`), and the generic run
(:func:`cytolens.train.fitting.fit_model`) trains it and writes an ordinary model package
that ``segment --model OUTPUT`` takes. Afterwards the size model (the diameter estimate) and
the object filter (:mod:`.object_filter_fit`) are refitted on the corrected images.

Validation: with at least :data:`MIN_IMAGES_TO_HOLD_OUT` corrected images a fifth of them
(at least one) is held out for model selection; with fewer, every image trains and the
validation scores are on training images, which ``model.json`` records
(``training.finetune.held_out``).

Label files are matched to images by file stem: ``img.tif`` takes ``img.tif``,
``img.png`` … or the stem with one of :data:`LABEL_SUFFIXES` (``img_labels.tif``,
``img_masks.tif``, as Cellpose names them).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.io.results import LABEL_FILE_SUFFIXES

#: what may follow an image's stem in the name of its label file
LABEL_SUFFIXES = ("",) + LABEL_FILE_SUFFIXES
#: fewer corrected images than this train all, and the validation scores are on training images
MIN_IMAGES_TO_HOLD_OUT = 6
#: the share of the corrected images held out when there are enough
HOLD_OUT_FRACTION = 0.2
#: steps per epoch (an epoch ends with a validation and a checkpoint)
STEPS_PER_EPOCH = 10
#: the largest training crop side (the parent models' own)
MAX_CROP = 256
#: the size model's refit holds out one of the images to choose its ridge penalty
MIN_IMAGES_FOR_SIZE_MODEL = 2
#: the object filter's cross-validation needs this many training images with objects
MIN_IMAGES_FOR_FILTER = 5


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: the package written, the images used, and the run's scores."""

    package: Path
    train_ids: list[str]
    val_ids: list[str]
    held_out: bool
    epochs: int
    seconds_per_step: float
    best: dict
    object_filter: dict | str
    messages: list[str] = field(default_factory=list)


def match_labels(images: Sequence[str | os.PathLike], labels: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pair each image file with its label file in the folder ``labels``, by stem.

    ``img.tif`` is paired with ``img.<ext>`` or ``img<suffix>.<ext>`` for a suffix of
    :data:`LABEL_SUFFIXES`. Raises :class:`InvalidParameterError` (one line) when an image has
    no label file or two, or the folder does not exist.

    >>> match_labels([], ".")
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: no corrected images given: give the images whose labels you corrected
    """
    from cytolens.io import list_images

    if not images:
        raise InvalidParameterError("no corrected images given: give the images whose labels you corrected")
    folder = Path(labels)
    if not folder.is_dir():
        raise InvalidParameterError(f"--labels: folder not found: {folder}")
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(folder):
        by_stem.setdefault(path.stem, []).append(path)
    pairs, missing = [], []
    for image in map(Path, images):
        if not image.is_file():
            raise InvalidParameterError(f"image file not found: {image}")
        found = [p for suffix in LABEL_SUFFIXES for p in by_stem.get(image.stem + suffix, [])
                 if p.resolve() != image.resolve()]
        if not found:
            missing.append(image.name)
        elif len(found) > 1:
            raise InvalidParameterError(f"{image.name} has {len(found)} label files in {folder} "
                                        f"({', '.join(p.name for p in found)}); keep one")
        else:
            pairs.append((image, found[0]))
    if missing:
        raise InvalidParameterError(
            f"{len(missing)} of {len(images)} image(s) have no label file in {folder}, e.g. {missing[0]}: name a label "
            f"file like the image (img.tif -> img.tif or img_labels.tif)")
    stems = [image.stem for image, _ in pairs]
    if len(set(stems)) != len(stems):
        raise InvalidParameterError("two images share a file stem; rename one (labels are matched by stem)")
    return pairs


def _link_pairs(pairs: Sequence[tuple[Path, Path]], folder: Path) -> None:
    """Link images and labels into ``folder/images`` and ``folder/labels`` under one stem each; check the labels."""
    from cytolens.io import make_folder, read_image

    shutil.rmtree(folder, ignore_errors=True)
    make_folder(folder / "images")
    make_folder(folder / "labels")
    objects = 0
    for image, labels in pairs:
        array = read_image(labels)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise InvalidImageError(f"{labels}: a label image must be 2D whole numbers (0 = background, one id per "
                                    f"object), got shape {array.shape} of {array.dtype}")
        objects += int(array.max() > 0)
        os.symlink(image.resolve(), folder / "images" / f"{image.stem}{image.suffix}")
        os.symlink(labels.resolve(), folder / "labels" / f"{image.stem}{labels.suffix}")
    if not objects:
        raise InvalidImageError(f"none of the {len(pairs)} label image(s) holds an object: an empty correction set "
                                "teaches nothing (0 is background, each object needs its own id > 0)")


def hold_out(ids: Sequence[str], seed: int = 0, fraction: float = HOLD_OUT_FRACTION,
             min_images: int = MIN_IMAGES_TO_HOLD_OUT) -> dict[str, list[str]]:
    """The train/val split of corrected images: a ``fraction`` held out from ``min_images`` on, else val = train.

    >>> hold_out(["a", "b"])
    {'train': ['a', 'b'], 'val': ['a', 'b'], 'test': []}
    >>> sorted(len(v) for v in hold_out([str(i) for i in range(10)]).values())
    [0, 2, 8]
    """
    ids = sorted(ids)
    if len(ids) < min_images:
        return {"train": ids, "val": list(ids), "test": []}
    order = list(ids)
    np.random.default_rng(seed).shuffle(order)
    n_val = max(1, round(fraction * len(ids)))
    return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val]), "test": []}


def fitting_crop(samples: Sequence, divisor: int, largest: int = MAX_CROP) -> int:
    """The crop side for fine-tuning: the median image's shorter side at the model scale, rounded up to a
    multiple of ``divisor``, at most ``largest`` and at least ``4 * divisor``."""
    sides = [min(s.image.shape[1:]) for s in samples]
    side = int(np.ceil(np.median(sides) / divisor) * divisor)
    return int(min(largest, max(4 * divisor, side)))


def _parent_augmentation(package) -> dict:
    """The augmentation the parent was trained with (its packaged ``train_config.yaml``), else the defaults."""
    import yaml

    path = None if package.path is None else Path(package.path) / "train_config.yaml"
    if path is None or not path.is_file():
        return {}
    return dict((yaml.safe_load(path.read_text()) or {}).get("augmentation") or {})


def finetune(images: Sequence[str | os.PathLike], labels: str | os.PathLike, output: str | os.PathLike, *,
             model: str | os.PathLike = "nuclei", minutes: float = 10.0, overwrite: bool = False,
             progress=True, seed: int = 0, learning_rate: float = 1e-4, batch_size: int = 8,
             crop_size: int | None = None, precision: str = "auto", cpu_budget: bool = False,
             refit_filter: bool = True, refit_size: bool = True, record_diameter: bool = False,
             steps_per_epoch: int = STEPS_PER_EPOCH) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on corrected label images; write a model package to ``output``.

    Parameters
    ----------
    images : sequence of paths
        The image files whose labels were corrected.
    labels : path
        Folder of label images (0 = background, one id per object), matched to the images by stem
        (:func:`match_labels`).
    output : path
        The model package folder to write (``segment --model OUTPUT`` takes it).
    model : str or path
        The model to start from: a bundled name or a package folder (a segmentation model).
    minutes : float
        Training time budget (the data preparation, the object filter and the package come on top).
    progress : bool or callable
        True: bars and one line per epoch; a callable receives each
        :class:`~cytolens.progress.ProgressEvent`; False: silent.
    precision : "auto", "float32" or "bfloat16"
        "auto": bfloat16 where the CPU computes it natively (about 3x faster), else float32.
    cpu_budget : bool
        Count ``minutes`` as this process's CPU time (the number of steps is set from a timed
        step; no wall-clock stop), for fair comparisons on a shared machine.
    refit_filter : bool
        Refit the object filter on the corrected images (needs :data:`MIN_IMAGES_FOR_FILTER`
        training images); without one the package has no filter.
    refit_size : bool
        Refit the size model (the diameter estimate) on the corrected images, each shown at five
        zooms, with the fine-tuned network's features: the parent's size model was fitted on the
        parent's features, and the fine-tuned network's drifted ones give wrong estimates. It needs
        :data:`MIN_IMAGES_FOR_SIZE_MODEL` images; with fewer, the corrected objects' median diameter
        is recorded instead (see ``record_diameter``).
    record_diameter : bool
        Record the corrected objects' median diameter as the package's ``scale.diameter``, which
        :func:`cytolens.segment` then uses when no diameter is given (as Cellpose's custom models use
        the diameter of their training labels), instead of estimating each image's.

    Returns
    -------
    FinetuneResult
    """
    import torch

    from cytolens import models
    from cytolens.io import read_image
    from cytolens.nn.precision import bfloat16_is_fast
    from cytolens.tasks.segmentation.task import TASK
    from cytolens.tasks.segmentation.training import median_diameter
    from cytolens.train.budget import budgeted_epochs
    from cytolens.train.fitting import adapt_to_parent, fit_model
    from cytolens.train.splits import save_split

    if not isinstance(minutes, int | float) or not minutes > 0:
        raise InvalidParameterError(f"minutes must be a positive number, got {minutes!r}")
    if precision not in ("auto", "float32", "bfloat16"):
        raise InvalidParameterError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) or not 0 < learning_rate < 1:
        raise InvalidParameterError(f"learning_rate must be a number between 0 and 1, got {learning_rate!r}")
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (--overwrite) or choose another output")
    parent = models.load(model)
    if parent.meta.get("task") != "segmentation":
        raise InvalidParameterError(f"model {parent.name!r} is a {parent.meta.get('task')} model; fine-tuning on "
                                    "corrected labels needs a segmentation model")
    pairs = match_labels(images, labels)
    work = Path(str(output) + ".work")
    _link_pairs(pairs, work / "data")
    split = hold_out([image.stem for image, _ in pairs], seed)
    save_split(split, work / "split.json")
    if precision == "auto":
        precision = "bfloat16" if bfloat16_is_fast(torch.device("cpu")) else "float32"
    arch = parent.meta["architecture"]["args"]
    raw = {"task": "segmentation", "name": output.name, "schema": parent.meta["schema"],
           "data": {"images": str(work / "data" / "images"), "labels": str(work / "data" / "labels"),
                    "split_file": str(work / "split.json")},
           "augmentation": _parent_augmentation(parent),
           "optimization": {"epochs": 1, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
                            "crop_size": crop_size or MAX_CROP, "learning_rate": learning_rate,
                            "warmup_epochs": 0, "patience": 0, "max_minutes": minutes, "device": "cpu",
                            "precision": precision},
           "seed": seed, "license": "the user's own images and the license of the parent model",
           "output": str(output)}
    config = adapt_to_parent(TASK, TASK.config_model.model_validate(raw), parent)
    data = TASK.prepare_data(config, bool(progress) and not callable(progress))
    if crop_size is None:  # crops no larger than the images at the model's scale: padding costs steps
        config = config.model_copy(update={"optimization": config.optimization.model_copy(
            update={"crop_size": fitting_crop(data.side("train"), 2 ** arch["depth"])})})
    validate = TASK.make_validator(config, data.side("val"), TASK.make_loss(config, data.side("train")),
                                   data.side("train"))
    tick = time.perf_counter()
    validate(parent.network)
    validation_seconds = time.perf_counter() - tick
    epochs, seconds = budgeted_epochs(TASK, config, data, minutes, validation_seconds,
                                      clock=time.process_time if cpu_budget else time.perf_counter)
    changes = {"epochs": epochs, **({"max_minutes": None} if cpu_budget else {})}
    config = config.model_copy(update={"optimization": config.optimization.model_copy(update=changes)})
    held_out = split["val"] != split["train"]
    messages = [] if held_out else [
        (f"only {len(pairs)} corrected image(s): all train, so the validation scores are on training images "
         f"(correct at least {MIN_IMAGES_TO_HOLD_OUT} to hold some out)")]
    if progress is True:
        print(f"fine-tuning {parent.name!r} on {len(split['train'])} image(s), validating on "
              f"{len(split['val'])}{'' if held_out else ' (the same)'}: ~{seconds:.2f} s a step, {epochs} epochs of "
              f"{steps_per_epoch} steps in {minutes:g} minutes", flush=True)
    result = fit_model(TASK, config, data, progress=progress, parent=parent, resume=False)
    messages += result.messages
    diameter = float(np.median([median_diameter(read_image(labels)) for _, labels in pairs]))
    size_record = _refit_size_model(output, parent, pairs, config.normalization, seed) if refit_size else \
        "not refitted (refit_size=False)"
    if isinstance(size_record, str) and parent.path is not None and (Path(parent.path) / "size_model.json").is_file():
        shutil.copyfile(Path(parent.path) / "size_model.json", output / "size_model.json")
    if record_diameter or (refit_size and isinstance(size_record, str)):
        # before the filter is refitted: it then sees the objects as segment will find them
        models.update_meta(output, lambda meta: meta.setdefault("scale", {}).update(diameter=diameter))
    filter_record = _refit_filter(output, config, len(split["train"]), progress is True) if refit_filter else \
        "not refitted (refit_filter=False)"
    record = {"parent": parent.name, "images": len(pairs), "train_ids": split["train"], "val_ids": split["val"],
              "held_out": held_out, "minutes": minutes, "cpu_budget": cpu_budget, "seconds_per_step": seconds,
              "epochs_planned": epochs, "learning_rate": learning_rate, "precision": precision,
              "labels_diameter": diameter, "size_model": size_record,
              "object_filter": filter_record if isinstance(filter_record, str) else "refitted"}
    models.update_meta(output, lambda meta: meta.setdefault("training", {}).update(finetune=record))
    return FinetuneResult(package=output, train_ids=split["train"], val_ids=split["val"], held_out=held_out,
                          epochs=len(result.history), seconds_per_step=seconds, best=result.best,
                          object_filter=filter_record, messages=messages)


def _refit_size_model(package_dir: Path, parent, pairs, normalization, seed: int) -> dict | str:
    """Refit ``size_model.json`` on the corrected images with the fine-tuned network, or say why not."""
    from cytolens import models
    from cytolens.io import read_image
    from cytolens.tasks.segmentation.size_model import fit_size_model
    from cytolens.tasks.segmentation.training import median_diameter, model_input

    if "size_model" not in parent.extras:
        return "none (the parent has no size model)"
    if len(pairs) < MIN_IMAGES_FOR_SIZE_MODEL:
        return (f"not refitted: it needs {MIN_IMAGES_FOR_SIZE_MODEL} images; segment uses the corrected objects' "
                "median diameter (scale.diameter)")
    network = models.load(package_dir).network
    images, diameters = [], []
    for image, labels in pairs:
        images.append(model_input(read_image(image), normalization))
        diameters.append(median_diameter(read_image(labels)))
    size_model = fit_size_model(network, images, diameters, seed=seed)
    size_model.save(package_dir / "size_model.json")
    return {"images": len(images), "alpha": size_model.alpha, "diameter_range": size_model.diameter_range}


def _refit_filter(package_dir: Path, config, n_train: int, verbose: bool) -> dict | str:
    """Refit the object filter on the training images, or say why not (the package then has none)."""
    from cytolens.tasks.segmentation.object_filter_fit import SCHEMAS_WITH_FILTERS, fit_object_filter

    if config.schema_ not in SCHEMAS_WITH_FILTERS:
        return f"none (schema {config.schema_} has no object filter)"
    if n_train < MIN_IMAGES_FOR_FILTER:
        return (f"none: refitting it needs {MIN_IMAGES_FOR_FILTER} training images, there are {n_train} "
                "(the parent's filter was fitted to the parent's outputs and is not copied)")
    try:
        return fit_object_filter(package_dir, config, progress=verbose)
    except InvalidParameterError as exc:  # e.g. every object found is right: nothing to learn
        return f"none: {exc}"


def read_record(package_dir: str | os.PathLike) -> dict:
    """The ``training.finetune`` record of a fine-tuned package."""
    return json.loads((Path(package_dir) / "model.json").read_text()).get("training", {}).get("finetune", {})


__all__ = [
    "LABEL_SUFFIXES",
    "MIN_IMAGES_TO_HOLD_OUT",
    "FinetuneResult",
    "finetune",
    "hold_out",
    "match_labels",
    "read_record",
]
