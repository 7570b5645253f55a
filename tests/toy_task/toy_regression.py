"""A toy second task, written only against the task seam: image-to-image regression (denoising).

Everything here is what a task supplies (:class:`cytolens.train.task.Task`); the split,
network, loop, checkpoints, curves and model package come from the generic run. The
test ``tests/test_task_seam.py`` trains it on synthetic noisy blobs in 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cytolens.io import read_image
from cytolens.nn.predictor import network_predictor
from cytolens.preprocess import PercentileNormalizer, predict_tiled
from cytolens.train.config import TargetDataConfig, TrainConfig
from cytolens.train.sampler import CropSampler, TargetKind
from cytolens.train.splits import make_data_split
from cytolens.train.task import PreparedData


class ToyRegressionTrainConfig(TrainConfig):
    task: Literal["toy_regression"] = "toy_regression"
    data: TargetDataConfig


@dataclass
class Pair:
    image: np.ndarray  # (1, *spatial) normalized input
    targets: np.ndarray  # (1, *spatial) the clean image, normalized with the input's statistics
    stratum: str = "all"


class ToyRegressionTask:
    name = "toy_regression"
    config_model = ToyRegressionTrainConfig
    primary_metric = "val_psnr"
    unit = "images"

    def preparation_key(self, config) -> tuple:
        return (tuple(config.normalization), config.architecture.dims, *(str(v) for _, v in config.data), config.seed)

    def prepare_data(self, config, progress: bool = True) -> PreparedData:
        split, files, _ = make_data_split(config)
        normalizer = PercentileNormalizer(*config.normalization)
        samples = {}
        for i in split["train"] + split["val"]:
            image, target = (read_image(path).astype(np.float32) for path in files[i])
            lo, hi = normalizer.statistics(image, spatial_ndim=config.architecture.dims)
            samples[i] = Pair(normalizer.apply(image, lo, hi)[None], normalizer.apply(target, lo, hi)[None])
        return PreparedData(split, samples, files, self.preparation_key(config))

    def network_channels(self, config, data) -> tuple[int, int]:
        return 1, 1

    def make_loss(self, config, train_samples: Sequence):
        return torch.nn.functional.mse_loss

    def make_sampler(self, config, train_samples: Sequence):
        return CropSampler.from_config(train_samples, config, TargetKind(paired_intensity=True))

    def make_validator(self, config, samples: Sequence, loss_fn, train_samples: Sequence):
        def validate(model) -> dict:
            predict = network_predictor(model)
            errors = [np.mean((predict_tiled(predict, s.image, 1, tile_size=config.optimization.crop_size,
                                             overlap=4, size_divisor=2**config.architecture.depth,
                                             spatial_ndim=config.architecture.dims) - s.targets) ** 2)
                      for s in samples]
            mse = float(np.mean(errors))
            return {"val_loss": mse, "val_psnr": float(10 * np.log10(1 / max(mse, 1e-12)))}
        return validate

    def adapt_to_parent(self, config, parent):
        return config

    def package_meta(self, config, train_samples: Sequence) -> dict:
        return {"input": {"channels": 1, "axes": "ZYX" if config.architecture.dims == 3 else "YX",
                          "conversion": "one channel"}}

    def count_units(self, samples: Sequence) -> int:
        return len(samples)


TASK = ToyRegressionTask()
