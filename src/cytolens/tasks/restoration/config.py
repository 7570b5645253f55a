"""The restoration task's training config (imports no torch).

>>> config = RestorationTrainConfig(name="n2v", mode="noise2void", data={"images": "noisy"}, output="out")
>>> config.loss, config.architecture.pool, config.architecture.top_skip, config.architecture.norm
('l2', 'blur', False, 'batch')
>>> RestorationTrainConfig(name="care", data={"images": "noisy"}, output="out")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for RestorationTrainConfig
...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cytolens.train.config import (
    ArchitectureConfig,
    AugmentationConfig,
    OptimizationConfig,
    TargetDataConfig,
    TrainConfig,
    _Strict,
)


class RestorationDataConfig(TargetDataConfig):
    """Source images and, for supervised training, target images with the same stems and sizes."""

    targets: Path | None = Field(None, description="folder of target images (supervised); none for noise2void")


class RestorationArchitectureConfig(ArchitectureConfig):
    """The U-Net, with N2V2's two changes available (both on by default for noise2void)."""

    depth: int = Field(2, ge=1, le=6, description="pooling steps (CARE and N2V use 2)")
    base_channels: int = Field(32, ge=2, le=128, description="width of the first level")
    pool: Literal["max", "blur"] | None = Field(None, description="max, or blur (max-blur-pool, N2V2); "
                                                "None: blur for noise2void, max otherwise")
    top_skip: bool | None = Field(None, description="keep the top skip connection; None: off for noise2void")
    norm: Literal["batch", "none"] | None = Field(None, description="batch-norm or none; None: none for supervised "
                                                  "restoration (better without on FMD training fields; issue 29 "
                                                  "notes), batch for noise2void (as in the n2v package)")
    residual: bool = Field(False, description="the output is the input plus the network's correction (CARE's "
                           "default for denoising); needs as many source as target channels")

    def network_args(self) -> dict:
        return {**super().network_args(), "norm": self.norm or "none", "pool": self.pool or "max",
                "top_skip": True if self.top_skip is None else self.top_skip, "residual": self.residual}


class Noise2VoidConfig(_Strict):
    """Blind-spot masking (Krull et al. 2019) with N2V2's median replacement."""

    masked_fraction: float = Field(0.1, gt=0, le=0.1, description="share of each crop's pixels masked: more gives "
                                   "more loss per step (0.1 beat 0.02 and 0.05 on FMD training fields; issue 29 "
                                   "notes) (one per grid cell of side 1/sqrt(share))")
    window: int = Field(5, ge=3, le=11, description="side of the window whose median (masked pixels left out) "
                        "replaces a masked pixel")
    val_band: float = Field(0.1, gt=0, lt=0.5, description="share of each image's rows (the bottom band) held "
                            "out for validation")


def _restoration_augmentation() -> AugmentationConfig:
    # geometry only: zooming, blurring or adding noise changes the noise the network must learn
    return AugmentationConfig(scale_range=(1.0, 1.0), intensity=0.0, gamma=0.0, blur=0.0)


class RestorationTrainConfig(TrainConfig):
    """Training config of ``task: restoration`` (see :mod:`cytolens.tasks.restoration`)."""

    task: Literal["restoration"] = "restoration"
    mode: Literal["supervised", "noise2void"] = Field("supervised", description="supervised: source -> target "
                                                      "pairs; noise2void: noisy images alone")
    data: RestorationDataConfig
    architecture: RestorationArchitectureConfig = RestorationArchitectureConfig()
    augmentation: AugmentationConfig = Field(default_factory=_restoration_augmentation)
    optimization: OptimizationConfig = OptimizationConfig(crop_size=64, batch_size=16, steps_per_epoch=100,
                                                          epochs=50, patience=0, learning_rate=4e-4)
    loss: Literal["l1", "l2"] | None = Field(None, description="l1 (CARE's mae) or l2; None: l1 supervised, "
                                             "l2 for noise2void")
    target_normalization: Literal["source", "own"] = Field(
        "source", description="source: targets scaled with the source image's percentiles, so restored images "
        "come back in the input's units (denoising); own: each target by its own percentiles (CARE; label-free "
        "prediction of another modality)")
    target_percentiles: tuple[float, float] = Field((0.1, 99.9), description="percentiles of 'own' target "
                                                    "normalization")
    noise2void: Noise2VoidConfig = Noise2VoidConfig()
    output_names: list[str] | None = Field(None, description="names of the predicted channels, e.g. [DAPI]")
    tile_size: int = Field(256, ge=32, description="tile side of validation and inference")
    min_content: float = Field(0.4, ge=0, lt=1, description="skip background crops: training crops are centred "
                               "within half a crop of a target value of at least this share of the image's 99.9th "
                               "percentile (CARE's no_background_patches uses 0.4); 0 = off")

    @model_validator(mode="after")
    def _check_mode(self):
        if self.mode == "supervised" and self.data.targets is None:
            raise ValueError("data.targets: supervised restoration needs a folder of target images "
                             "(or mode: noise2void)")
        if self.mode == "noise2void":
            if self.target_normalization != "source":
                raise ValueError("target_normalization: noise2void's targets are its inputs ('source')")
            arch = self.architecture
            self.architecture = arch.model_copy(update={"pool": arch.pool or "blur", "norm": arch.norm or "batch",
                                                        "top_skip": False if arch.top_skip is None else arch.top_skip})
        elif self.architecture.norm is None:
            self.architecture = self.architecture.model_copy(update={"norm": "none"})
        if self.loss is None:
            self.loss = "l2" if self.mode == "noise2void" else "l1"
        if self.tile_size % 2**self.architecture.depth:
            raise ValueError(f"tile_size {self.tile_size} must be a multiple of 2**architecture.depth")
        return self
