"""Validated training configuration (pydantic v2, unknown keys rejected at every level).

A config is saved inside the model package it produces, so a model can always be
retrained the way it was made: ``cytolens train path/to/model/train_config.yaml``.

Every task has its own config model, chosen by the ``task`` key (see
:data:`TASK_CONFIGS`); the sections ``data``, ``architecture``, ``augmentation`` and
``optimization`` keep the same names across tasks so that tuning and learning
curves (:mod:`cytolens.train.search`) work on any of them.

Example
-------
>>> config = validate_config({"name": "demo", "data": {"images": "im", "labels": "lab"},
...                           "augmentation": {"preset": "brightfield"}, "output": "out"})
>>> config.augmentation.blur, config.augmentation.intensity
(1.0, 0.3)
>>> validate_config({"name": "demo", "dta": {}, "output": "o"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
cytolens.errors.InvalidParameterError: invalid config: data: Field required; dta: unknown setting (did you mean 'data'?)
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cytolens.errors import InvalidParameterError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the annotated images are and how they are split, for any task.

    A task's data config adds the folder of its annotations (``ANNOTATION``: ``labels``
    for segmentation, ``targets`` for image-to-image tasks), matched to the images by
    file stem, and the ``val_``/``test_`` folders of the same kind.

    Splits come from fractions of the images (stratified by ``stratify_column`` and
    grouped by ``group_column`` of ``strata_csv``), or from folders: ``val_images``
    and ``test_images`` (with their annotations) fix those sides and the matching
    fraction is then not used.
    """

    #: name of the field holding the annotation folder
    ANNOTATION: ClassVar[str] = "labels"

    images: Path = Field(description="folder of images")
    split_file: Path | None = Field(None, description="JSON with 'train', 'val', 'test' id lists; made if missing")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.12, ge=0, lt=0.5)
    strata_csv: Path | None = Field(None, description="CSV with one row per image id, for stratified/grouped splits")
    id_column: str = "id"
    stratify_column: str | None = None
    group_column: str | None = Field(None, description="e.g. movie or donor: a group never spans two sides")
    val_images: Path | None = Field(None, description="folder of validation images (instead of val_fraction)")
    test_images: Path | None = Field(None, description="folder of test images (instead of test_fraction)")

    def annotations(self, side: str = "") -> Path | None:
        """The annotation folder of ``side`` ("" = the main pool, "val", "test")."""
        return getattr(self, f"{side}_{self.ANNOTATION}" if side else self.ANNOTATION)

    @model_validator(mode="after")
    def _check_folders(self):
        for side in ("val", "test"):
            images, annotations = getattr(self, f"{side}_images"), self.annotations(side)
            if (images is None) != (annotations is None):
                raise ValueError(f"give both {side}_images and {side}_{self.ANNOTATION}, or neither")
        if (self.stratify_column or self.group_column) and self.strata_csv is None:
            raise ValueError("stratify_column/group_column need strata_csv (a CSV with one row per image id)")
        return self


class LabelDataConfig(DataConfig):
    """Images with label images (instance segmentation)."""

    ANNOTATION: ClassVar[str] = "labels"

    labels: Path = Field(description="folder of label images, same stems as the images")
    val_labels: Path | None = None
    test_labels: Path | None = None
    unannotated: Path | None = Field(
        None, description="folder of masks, same stems as the images, that mark pixels nobody annotated (nonzero): "
        "they add nothing to the loss, so an image with only some objects labelled still teaches the rest of it; "
        "images without a mask are annotated everywhere")


class TargetDataConfig(DataConfig):
    """Images with target images of the same size (restoration, image-to-image regression)."""

    ANNOTATION: ClassVar[str] = "targets"

    targets: Path = Field(description="folder of target images, same stems and sizes as the images")
    val_targets: Path | None = None
    test_targets: Path | None = None


class ArchitectureConfig(_Strict):
    """The network, by its name in :data:`cytolens.nn.registry.ARCHITECTURES`, and its size."""

    name: Literal["unet", "classifier", "resnet"] = "unet"
    depth: int = Field(4, ge=1, le=6, description="pooling steps; sets the receptive field")
    base_channels: int = Field(16, ge=2, le=128, description="width of the first level")
    norm: Literal["batch", "none"] = "batch"
    dropout: float = Field(0.0, ge=0, lt=1)
    dims: Literal[2, 3] = Field(2, description="spatial axes: 2 for images, 3 for volumes")

    def network_args(self) -> dict:
        """The settings every registered architecture takes (besides its input and output sizes)."""
        return {"depth": self.depth, "base_channels": self.base_channels, "norm": self.norm,
                "dropout": self.dropout, "dims": self.dims}


#: Augmentation settings per imaging modality; explicit settings override them.
AUGMENTATION_PRESETS: dict[str, dict] = {
    # photon noise and exposure/gain changes; no colour
    "fluorescence": {"flips": True, "rotations": True, "scale_range": (0.75, 1.33), "intensity": 0.25,
                     "gamma": 0.25, "blur": 0.5, "stain": 0.0},
    # illumination and focus changes
    "brightfield": {"flips": True, "rotations": True, "scale_range": (0.8, 1.25), "intensity": 0.3,
                    "gamma": 0.2, "blur": 1.0, "stain": 0.0},
    # stain variation between labs/scanners (HED colour space), mild focus changes
    "he": {"flips": True, "rotations": True, "scale_range": (0.8, 1.25), "intensity": 0.1,
           "gamma": 0.1, "blur": 0.5, "stain": 0.05},
}


class AugmentationConfig(_Strict):
    """Random transforms of training crops. ``preset`` fills the settings not given."""

    preset: Literal["fluorescence", "brightfield", "he"] | None = Field(
        None, description="modality preset: fluorescence, brightfield or he (H&E); explicit keys override it")
    flips: bool = True
    rotations: bool = True
    scale_range: tuple[float, float] = (0.75, 1.33)
    intensity: float = Field(0.2, ge=0, le=1, description="strength of brightness/contrast/noise jitter")
    gamma: float = Field(0.0, ge=0, le=1, description="gamma drawn from exp(±gamma); 0 = off")
    blur: float = Field(0.0, ge=0, le=5, description="largest Gaussian blur sigma (px); 0 = off")
    stain: float = Field(0.0, ge=0, le=0.5, description="H&E stain jitter in HED space (RGB images); 0 = off")
    texture: float = Field(0.0, ge=0, le=1, description="strength of a multiplicative speckle texture (bright foci "
                           "over dim nucleoplasm) laid over half the crops; 0 = off")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if isinstance(data, dict) and data.get("preset") in AUGMENTATION_PRESETS:
            return {**AUGMENTATION_PRESETS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _check_scale(self):
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        return self

    def scaled(self, strength: float) -> AugmentationConfig:
        """The same augmentation with every jitter multiplied by ``strength`` (0 = geometry only)."""
        if strength < 0:
            raise InvalidParameterError(f"augmentation strength must be >= 0, got {strength}")
        low, high = self.scale_range
        return self.model_copy(update={
            "scale_range": (math.exp(math.log(low) * strength), math.exp(math.log(high) * strength)),
            "intensity": min(1.0, self.intensity * strength), "gamma": min(1.0, self.gamma * strength),
            "blur": min(5.0, self.blur * strength), "stain": min(0.5, self.stain * strength),
            "texture": min(1.0, self.texture * strength)})


class OptimizationConfig(_Strict):
    epochs: int = Field(50, ge=1)
    steps_per_epoch: int = Field(50, ge=1)
    batch_size: int = Field(8, ge=1)
    crop_size: int | tuple[int, int, int] = Field(
        256, description="side of the square training crops (px, >= 32); a volume model (architecture.dims: 3) may "
        "give [z, y, x] voxels at the model's scale (each >= 8)")
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(1, ge=0)
    patience: int = Field(10, ge=0, description="early stopping on validation loss; 0 = off")
    max_minutes: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = a CUDA GPU when there is one")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16 = mixed precision: ~3x faster on CPUs with AVX-512 BF16 and on recent GPUs")
    workers: int = Field(0, ge=0, le=64, description="processes that make augmented batches; 0 = the training one")

    @field_validator("crop_size", mode="before")
    @classmethod
    def _check_crop_size(cls, value):
        """One side >= 32, or [z, y, x] sides >= 8: one readable message instead of one per type of the union."""
        def whole(side, least: int) -> bool:
            return not isinstance(side, bool) and isinstance(side, int | float) and float(side).is_integer() \
                and side >= least
        if isinstance(value, list | tuple):
            if len(value) != 3 or not all(whole(side, 8) for side in value):
                raise ValueError("a volume crop must be [z, y, x]: three whole numbers >= 8")
            return tuple(int(side) for side in value)
        if not whole(value, 32):
            raise ValueError("must be a whole number >= 32 (px), or [z, y, x] for a volume model")
        return int(value)


class TrainConfig(_Strict):
    """The settings every task's training shares; a task's config adds its own (see :mod:`cytolens.train.task`)."""

    task: str
    name: str = Field(description="model name, e.g. 'nuclei'")
    data: DataConfig
    architecture: ArchitectureConfig = ArchitectureConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    normalization: tuple[float, float] = Field(
        (1.0, 99.8), description="percentiles mapped to 0 and 1 (cytolens.preprocess.PercentileNormalizer)")
    modality_weights: dict[str, float] | None = Field(
        None, description="sampling weight per stratum value (e.g. modality), to oversample rare ones")
    init_from: str | None = Field(
        None, description="transfer learning: a bundled model name (e.g. 'nuclei') or a model package path")
    freeze_encoder_epochs: int = Field(0, ge=0, description="keep the encoder of init_from frozen this many epochs")
    seed: int = 0
    weights_dtype: Literal["float32", "float16"] = Field(
        "float32", description="precision of the saved weights; float16 halves the package (weights are loaded as float32)")
    license: str | None = Field(
        None, description="the license written into model.json, e.g. of the training data and the weights")
    output: Path = Field(description="folder of the model package to write")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check_common(self):
        divisor = 2**self.architecture.depth
        crop = self.optimization.crop_size
        if isinstance(crop, tuple) and self.architecture.dims != 3:
            raise ValueError(f"optimization.crop_size {list(crop)} is (z, y, x): only a volume model "
                             "(architecture.dims: 3) takes one; give one side for images")
        if any(side % divisor for side in (crop if isinstance(crop, tuple) else (crop,))):
            raise ValueError(f"optimization.crop_size {list(crop) if isinstance(crop, tuple) else crop} must be a "
                             f"multiple of 2**architecture.depth = {divisor}" + (" on every axis" if isinstance(
                                 crop, tuple) else ""))
        if self.freeze_encoder_epochs and not self.init_from:
            raise ValueError("freeze_encoder_epochs needs init_from (a pretrained model whose encoder to keep)")
        return self


def config_model_for(task: str) -> type[BaseModel]:
    """The config model of ``task`` (tasks are registered in :mod:`cytolens.train.task`)."""
    from cytolens.train.task import TASKS, config_model

    if task not in TASKS:
        raise InvalidParameterError(f"task: unknown task {task!r}; known: {', '.join(sorted(TASKS))}")
    return config_model(task)


def _describe(error: dict, model: type[BaseModel]) -> str:
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc) or "config"
    if error["type"] == "extra_forbidden":
        fields: type[BaseModel] | None = model
        for part in loc[:-1]:  # walk to the section that holds the unknown key
            annotation = fields.model_fields[part].annotation if fields and part in fields.model_fields else None
            fields = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        names = [f.alias or n for n, f in fields.model_fields.items()] if fields else []
        close = difflib.get_close_matches(loc[-1], names, n=1)
        return f"{where}: unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")
    message = error["msg"].removeprefix("Value error, ")
    if loc and error["type"] not in ("missing",) and not isinstance(error.get("input"), dict | list):
        message += f" (got {error.get('input')!r})"
    return f"{where}: {message}"


def validate_config(raw: dict, source: str | None = None) -> BaseModel:
    """Validate a mapping of settings into the config model of its ``task``.

    Raises :class:`~cytolens.errors.InvalidParameterError` naming every offending field.
    """
    label = f"invalid config {source}" if source else "invalid config"
    if not isinstance(raw, dict):
        raise InvalidParameterError(f"{label}: must be a mapping of settings, got {type(raw).__name__}")
    task = raw.get("task", "segmentation")
    try:
        model = config_model_for(task)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{label}: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, model) for e in exc.errors())
        raise InvalidParameterError(f"{label}: {problems}") from None


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML config; relative paths are resolved against its folder.

    ``init_from`` is resolved too when it names an existing relative path (otherwise it
    is a bundled model name).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidParameterError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidParameterError(f"{path} must hold a mapping of settings, got {type(raw).__name__}")
    config = validate_config(raw, str(path))
    return resolve_paths(config, path.parent)


def resolve_paths(config, base: str | Path):
    """Make the relative paths of ``config`` (data folders, output, init_from) relative to ``base``."""
    base = Path(base)
    data = config.data
    updates = {name: base / value for name, value in data if isinstance(value, Path) and not value.is_absolute()}
    changes: dict = {"data": data.model_copy(update=updates)}
    if not config.output.is_absolute():
        changes["output"] = base / config.output
    init_from = getattr(config, "init_from", None)
    if init_from and not Path(init_from).is_absolute() and (base / init_from).exists():
        changes["init_from"] = str(base / init_from)
    return config.model_copy(update=changes)


def dump_config(config) -> dict:
    """Plain mapping (JSON/YAML-safe) that :func:`validate_config` turns back into ``config``."""
    import json

    return json.loads(config.model_dump_json(by_alias=True))


def save_config(config, path: str | Path, relative_to: str | Path | None = None) -> Path:
    """Write ``config`` as YAML (round-trips through :func:`load_config`).

    With ``relative_to`` (the folder the file will finally live in, e.g. a model
    package), file paths are written relative to that folder, so that
    :func:`load_config` finds the same files from the file's new home.
    """
    path = Path(path)
    if relative_to is not None:
        config = _relative_paths(config, Path(relative_to))
    path.write_text(yaml.safe_dump(dump_config(config), sort_keys=False))
    return path


def _relative_paths(config, folder: Path):
    import os

    def rel(value: Path) -> Path:
        return Path(os.path.relpath(Path(value).absolute(), folder.absolute()))

    data = config.data
    changes: dict = {"data": data.model_copy(update={name: rel(value) for name, value in data
                                                     if isinstance(value, Path)}),
                     "output": rel(config.output)}
    init_from = getattr(config, "init_from", None)
    if init_from and Path(init_from).exists():
        changes["init_from"] = str(rel(Path(init_from)))
    return config.model_copy(update=changes)
