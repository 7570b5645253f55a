"""The training config of a classifier (``task: classification``); imports no torch.

The data is a folder with one subfolder of images per class (``data.images``), or a
CSV table (``data.table``) with a ``path`` and a ``class`` column (paths relative to
the table); a table with ``labels`` and ``label`` columns trains on single cells
(crops centred on object ``label`` of the label image ``labels``).

Every image (or cell crop) is resized to ``optimization.crop_size`` pixels square.

>>> config = ClassificationTrainConfig.model_validate(
...     {"task": "classification", "name": "demo", "data": {"images": "cells"}, "output": "out",
...      "optimization": {"crop_size": 64}, "imbalance": {"class_weights": "batch"}})
>>> config.architecture.name, config.input.channels, config.imbalance.sampling
('resnet', None, 'random')
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from cytolens.train.config import ArchitectureConfig, DataConfig, OptimizationConfig, TrainConfig, _Strict


class ClassificationDataConfig(DataConfig):
    """Images in one folder per class (``images``), or listed with their class in a CSV (``table``)."""

    ANNOTATION: ClassVar[str] = "table"

    images: Path | None = Field(None, description="folder with one subfolder of images per class")
    table: Path | None = Field(None, description="CSV with columns path, class (and labels, label for cells); "
                                                 "paths relative to the CSV's folder")
    val_table: Path | None = None
    test_table: Path | None = None
    classes: list[str] | None = Field(None, description="the classes, in output order; default: all found, sorted")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.0, ge=0, lt=0.5)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.images is None) == (self.table is None):
            raise ValueError("give either images (a folder per class) or table (a CSV of path, class)")
        if self.val_images is not None or self.test_images is not None:
            raise ValueError("val_images/test_images are not used for classification; fix the sides with split_file")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError("classes are listed more than once")
        return self


class ClassificationInputConfig(_Strict):
    """What the network reads from a file."""

    channels: list[int] | None = Field(None, description="the file's channels to use (0 = first), e.g. [0, 2]; "
                                                         "default all")
    mask_channel: bool = Field(False, description="add the object's mask as an extra channel (cell crops; 1 "
                                                  "everywhere for whole images)")
    cell_crop: int | None = Field(None, ge=8, description="side in pixels of the crop centred on each cell (cell "
                                                          "tables), before resizing; default the crop_size")


class ImbalanceConfig(_Strict):
    """Against rare classes: weight the loss per class, or draw every class equally often (not both)."""

    class_weights: Literal["none", "dataset", "batch"] = Field(
        "dataset", description="N_total / (N_class * N_classes), counted over the training set or per batch")
    sampling: Literal["random", "balanced"] = Field("random", description="balanced: every class drawn equally")

    @model_validator(mode="after")
    def _one_remedy(self):
        if self.class_weights != "none" and self.sampling == "balanced":
            raise ValueError("class_weights and balanced sampling both correct the imbalance; choose one "
                             "(set class_weights: none to sample balanced)")
        return self


class ClassificationTrainConfig(TrainConfig):
    """Training config of a classifier (see the module docstring)."""

    task: Literal["classification"] = "classification"
    data: ClassificationDataConfig
    input: ClassificationInputConfig = ClassificationInputConfig()
    imbalance: ImbalanceConfig = ImbalanceConfig()
    architecture: ArchitectureConfig = ArchitectureConfig(name="resnet", depth=4, base_channels=16)
    optimization: OptimizationConfig = OptimizationConfig(crop_size=64, batch_size=32, steps_per_epoch=50)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="cross-entropy label smoothing")
    free_rotation: bool = Field(True, description="with augmentation.rotations: any angle (corners filled by "
                                                  "reflection); False: multiples of 90 degrees only (small tiles)")
    normalization: tuple[float, float] = Field(
        (0.5, 99.5), description="percentiles of the training set, per channel, mapped to 0 and 1")

    @model_validator(mode="after")
    def _check_architecture(self):
        if self.architecture.name not in ("resnet", "classifier"):
            raise ValueError(f"architecture.name must be 'resnet' or 'classifier' for classification, "
                             f"got {self.architecture.name!r}")
        return self
