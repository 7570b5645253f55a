"""Validated training configuration (pydantic v2, unknown keys rejected at every level).

A config is saved inside the model package it produces, so a model can always be
retrained the way it was made: ``cytolens train path/to/model/train_config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cytolens.errors import InvalidParameterError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the annotated images are and how they are split."""

    images: Path = Field(description="folder of images")
    labels: Path = Field(description="folder of label images, same stems as the images")
    split_file: Path | None = Field(None, description="JSON with 'train', 'val', 'test' id lists; made if missing")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.12, ge=0, lt=0.5)
    strata_csv: Path | None = Field(None, description="CSV with one row per image id, for stratified/grouped splits")
    id_column: str = "id"
    stratify_column: str | None = None
    group_column: str | None = None


class ArchitectureConfig(_Strict):
    name: Literal["unet"] = "unet"
    depth: int = Field(4, ge=1, le=6)
    base_channels: int = Field(16, ge=2, le=128)
    norm: Literal["batch", "none"] = "batch"
    dropout: float = Field(0.0, ge=0, lt=1)


class AugmentationConfig(_Strict):
    flips: bool = True
    rotations: bool = True
    scale_range: tuple[float, float] = (0.75, 1.33)
    intensity: float = Field(0.2, ge=0, le=1, description="strength of brightness/contrast/gamma/noise jitter")

    @model_validator(mode="after")
    def _check_scale(self):
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        return self


class OptimizationConfig(_Strict):
    epochs: int = Field(50, ge=1)
    steps_per_epoch: int = Field(50, ge=1)
    batch_size: int = Field(8, ge=1)
    crop_size: int = Field(256, ge=32)
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(1, ge=0)
    patience: int = Field(10, ge=0, description="early stopping on validation loss; 0 = off")
    max_minutes: float | None = Field(None, gt=0)


class SegmentationTrainConfig(_Strict):
    """Everything that defines how a segmentation model is trained."""

    task: Literal["segmentation"] = "segmentation"
    name: str = Field(description="model name, e.g. 'nuclei'")
    schema_: Literal["deep_watershed", "pixel_classes"] = Field("deep_watershed", alias="schema")
    data: DataConfig
    architecture: ArchitectureConfig = ArchitectureConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    target_diameter: float = Field(20.0, gt=2, description="objects are rescaled to this median diameter (px)")
    normalization: tuple[float, float] = (1.0, 99.8)
    modality_weights: dict[str, float] | None = Field(
        None, description="sampling weight per stratum value (e.g. modality), to oversample rare ones")
    seed: int = 0
    output: Path = Field(description="folder of the model package to write")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check_crop(self):
        divisor = 2**self.architecture.depth
        if self.optimization.crop_size % divisor:
            raise ValueError(f"crop_size {self.optimization.crop_size} must be a multiple of 2**depth = {divisor}")
        return self


def load_config(path: str | Path) -> SegmentationTrainConfig:
    """Read and validate a YAML config; relative paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidParameterError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidParameterError(f"{path} must hold a mapping of settings, got {type(raw).__name__}")
    try:
        config = SegmentationTrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidParameterError(f"invalid config {path}: {problems}") from None
    base = path.parent

    def resolve(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else (base / p)

    data = config.data
    updates = {k: resolve(getattr(data, k)) for k in ("images", "labels", "split_file", "strata_csv")
               if getattr(data, k) is not None and not getattr(data, k).is_absolute()}
    config = config.model_copy(update={"data": data.model_copy(update=updates)})
    if not config.output.is_absolute():
        config = config.model_copy(update={"output": base / config.output})
    return config
