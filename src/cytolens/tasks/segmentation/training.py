"""Training data, losses and validation for the instance-segmentation schemas.

The generic loop (:func:`cytolens.train.loop.fit`) gets its batches, loss and
validation from here. Images are brought to the model's scale once (median
object diameter → ``target_diameter``), targets are computed once at that
scale, and each batch takes random crops with flips, 90° rotations, a random
zoom and intensity jitter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from cytolens.metrics.segmentation import match
from cytolens.preprocess import normalize_percentile, predict_tiled, rescale, to_rgb
from cytolens.tasks.segmentation import SCHEMAS, pixel_classes


def model_input(image: np.ndarray, normalization: tuple[float, float] = (1.0, 99.8)) -> np.ndarray:
    """``(Y, X[, C])`` image → ``(3, Y, X)`` float32: RGB, percentile-normalized."""
    rgb = normalize_percentile(to_rgb(image), *normalization)
    return np.ascontiguousarray(np.moveaxis(rgb, -1, 0))


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the objects of a label image (0 if none)."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if len(areas) else 0.0


@dataclass
class Sample:
    """One training/validation image at the model's scale."""

    image: np.ndarray  # (3, Y, X) float32
    labels: np.ndarray  # (Y, X) at model scale
    targets: np.ndarray  # (K, Y, X) float32 (pixel classes: K=1 holding the class id)
    stratum: str = "all"


def prepare_sample(image, labels, schema: str, target_diameter: float,
                   normalization=(1.0, 99.8), stratum: str = "all") -> Sample:
    """Rescale an annotated image so its median object diameter is ``target_diameter``."""
    diameter = median_diameter(labels)
    scale = target_diameter / diameter if diameter > 0 else 1.0
    x = model_input(image, normalization)
    x = np.stack([rescale(c, scale, order=1) for c in x])
    lab = rescale(np.asarray(labels, dtype=np.int32), scale, order=0)
    t = SCHEMAS[schema].targets(lab)
    t = t[None].astype(np.float32) if t.ndim == 2 else t
    return Sample(x.astype(np.float32), lab, t, stratum)


def _pad_to(array: np.ndarray, size: int) -> np.ndarray:
    pad_y, pad_x = max(0, size - array.shape[-2]), max(0, size - array.shape[-1])
    if not (pad_y or pad_x):
        return array
    pads = [(0, 0)] * (array.ndim - 2) + [(0, pad_y), (0, pad_x)]
    return np.pad(array, pads, mode="reflect" if min(array.shape[-2:]) > max(pad_y, pad_x) else "symmetric")


class CropSampler:
    """Yields augmented ``(inputs, targets)`` batches from prepared samples."""

    def __init__(self, samples: Sequence[Sample], schema: str, crop_size: int, batch_size: int,
                 steps_per_epoch: int, flips: bool = True, rotations: bool = True,
                 scale_range=(0.75, 1.33), intensity: float = 0.2,
                 stratum_weights: dict[str, float] | None = None, seed: int = 0) -> None:
        self.samples, self.schema = list(samples), schema
        self.crop, self.batch, self.steps = crop_size, batch_size, steps_per_epoch
        self.flips, self.rotations, self.scale_range, self.intensity = flips, rotations, scale_range, intensity
        self.seed = seed
        weights = np.array([(stratum_weights or {}).get(s.stratum, 1.0) for s in self.samples], float)
        if stratum_weights:  # weight per stratum, shared by its members
            counts = {s: sum(x.stratum == s for x in self.samples) for s in {x.stratum for x in self.samples}}
            weights = weights / np.array([counts[s.stratum] for s in self.samples])
        self.probabilities = weights / weights.sum()

    def _crop(self, rng: np.random.Generator, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.scale_range
        zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
        source = max(8, int(round(self.crop / zoom)))
        image, targets = _pad_to(sample.image, source), _pad_to(sample.targets, source)
        y0 = rng.integers(0, image.shape[1] - source + 1)
        x0 = rng.integers(0, image.shape[2] - source + 1)
        image = image[:, y0 : y0 + source, x0 : x0 + source]
        targets = targets[:, y0 : y0 + source, x0 : x0 + source]
        if source != self.crop:
            factor = self.crop / source
            image = ndi.zoom(image, (1, factor, factor), order=1, grid_mode=True, mode="nearest")
            order = 0 if self.schema == "pixel_classes" else 1
            targets = ndi.zoom(targets, (1, factor, factor), order=order, grid_mode=True, mode="nearest")
            if self.schema == "deep_watershed":
                targets[0] = targets[0] > 0.5
            image, targets = image[:, : self.crop, : self.crop], targets[:, : self.crop, : self.crop]
        if self.flips and rng.random() < 0.5:
            image, targets = image[:, :, ::-1], targets[:, :, ::-1]
        if self.rotations:
            k = int(rng.integers(4))
            image, targets = np.rot90(image, k, axes=(1, 2)), np.rot90(targets, k, axes=(1, 2))
        if self.intensity > 0:
            s = self.intensity
            contrast = rng.uniform(1 - s, 1 + s) * rng.uniform(1 - s / 2, 1 + s / 2, size=(3, 1, 1))
            image = (image - 0.5) * contrast + 0.5 + rng.uniform(-s / 2, s / 2)
            image = image + rng.normal(0, rng.uniform(0, s / 4), size=image.shape)
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(targets, np.float32)

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.steps):
            picks = rng.choice(len(self.samples), size=self.batch, p=self.probabilities)
            pairs = [self._crop(rng, self.samples[i]) for i in picks]
            yield torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))


def make_loss(schema: str, class_weights: np.ndarray | None = None):
    """Loss for raw network outputs ``(N, K, Y, X)`` against targets from :func:`prepare_sample`."""
    if schema == "deep_watershed":
        def deep_watershed_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return (F.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0])
                    + F.binary_cross_entropy_with_logits(outputs[:, 1], targets[:, 1]))
        return deep_watershed_loss
    if schema == "pixel_classes":
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)

        def pixel_classes_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(outputs, targets[:, 0].long(), weight=weight)
        return pixel_classes_loss
    raise ValueError(f"unknown schema {schema!r}")


def pixel_class_weights(samples: Sequence[Sample]) -> np.ndarray:
    return pixel_classes.class_weights([s.targets[0].astype(np.int64) for s in samples])


def network_predictor(model: torch.nn.Module):
    """Wrap a network as a numpy ``(C, y, x) → (K, y, x)`` function for tiling."""
    def predict(tile: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(tile))[None])[0].numpy()
    return predict


def make_validator(samples: Sequence[Sample], schema: str, loss_fn, tile_size: int = 512,
                   size_divisor: int = 16):
    """``validate(model)`` → val_loss and AP@0.5 (per image, at the model scale)."""
    postprocess = SCHEMAS[schema].postprocess
    out_channels = SCHEMAS[schema].OUTPUT_CHANNELS

    def validate(model: torch.nn.Module) -> dict:
        predict = network_predictor(model)
        losses, aps, aps75 = [], [], []
        for sample in samples:
            outputs = predict_tiled(predict, sample.image, out_channels, tile_size, 64, size_divisor)
            losses.append(float(loss_fn(torch.from_numpy(outputs)[None], torch.from_numpy(sample.targets)[None])))
            labels = postprocess(outputs)
            aps.append(match(sample.labels, labels.astype(np.int64), 0.5).average_precision)
            aps75.append(match(sample.labels, labels.astype(np.int64), 0.75).average_precision)
        return {"val_loss": float(np.mean(losses)), "val_ap50": float(np.mean(aps)), "val_ap75": float(np.mean(aps75))}

    return validate


def _strata_for(config, ids: list[str]) -> tuple[list[str] | None, list[str] | None]:
    data = config.data
    if data.strata_csv is None:
        return None, None
    import pandas as pd

    table = pd.read_csv(data.strata_csv, dtype=str).set_index(data.id_column)
    strata = [table.loc[i, data.stratify_column] for i in ids] if data.stratify_column else None
    groups = [table.loc[i, data.group_column] for i in ids] if data.group_column else None
    return strata, groups


def train_segmentation(config, progress: bool = True, parent=None) -> "Path":
    """Train a segmentation model from a validated config and write its package.

    Returns the package folder. ``parent`` is an optional loaded
    :class:`~cytolens.models.ModelPackage` to start from (transfer learning).
    """
    import json
    import subprocess
    from pathlib import Path

    import yaml

    from cytolens import models
    from cytolens.errors import InvalidParameterError
    from cytolens.io import list_images, read_image
    from cytolens.nn import UNet
    from cytolens.train.loop import LoopConfig, fit
    from cytolens.train.splits import load_split, make_split, save_split

    data = config.data
    image_files = {p.stem: p for p in list_images(data.images)}
    label_files = {p.stem: p for p in list_images(data.labels)}
    ids = sorted(set(image_files) & set(label_files))
    if not ids:
        raise InvalidParameterError(f"no image in {data.images} has a label image of the same name in {data.labels}")
    strata, groups = _strata_for(config, ids)
    if data.split_file is not None and Path(data.split_file).is_file():
        split = load_split(data.split_file)
    else:
        split = make_split(ids, data.val_fraction, data.test_fraction, strata, groups, config.seed)
        if data.split_file is not None:
            save_split(split, data.split_file)
    stratum_of = dict(zip(ids, strata)) if strata else {}

    def prepared(side: str) -> list[Sample]:
        iterator = split[side]
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=f"preparing {side}", leave=False)
        return [prepare_sample(read_image(image_files[i]), read_image(label_files[i]), config.schema_,
                               config.target_diameter, config.normalization, stratum_of.get(i, "all"))
                for i in iterator]

    train_samples, val_samples = prepared("train"), prepared("val")
    if not val_samples:
        raise InvalidParameterError("the validation split is empty; raise data.val_fraction or add images")
    arch = config.architecture
    schema_module = SCHEMAS[config.schema_]
    network = UNet(3, schema_module.OUTPUT_CHANNELS, arch.depth, arch.base_channels, arch.norm, arch.dropout)
    if parent is not None:
        network.load_state_dict(parent.network.state_dict())
    weights = pixel_class_weights(train_samples) if config.schema_ == "pixel_classes" else None
    loss_fn = make_loss(config.schema_, weights)
    opt = config.optimization
    aug = config.augmentation
    sampler = CropSampler(train_samples, config.schema_, opt.crop_size, opt.batch_size, opt.steps_per_epoch,
                          aug.flips, aug.rotations, aug.scale_range, aug.intensity, config.modality_weights,
                          config.seed)
    validate = make_validator(val_samples, config.schema_, loss_fn, size_divisor=2**arch.depth)
    loop = LoopConfig(epochs=opt.epochs, optimizer=opt.optimizer, learning_rate=opt.learning_rate,
                      momentum=opt.momentum, weight_decay=opt.weight_decay, schedule=opt.schedule,
                      warmup_epochs=opt.warmup_epochs, patience=opt.patience, seed=config.seed,
                      max_minutes=opt.max_minutes)
    work = Path(str(config.output) + ".work")
    history = fit(network, loss_fn, sampler, validate, loop, work, progress=progress)
    from safetensors.torch import load_file

    best = min(history, key=lambda r: r["val_loss"])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    defaults = (schema_module.DeepWatershedParams() if config.schema_ == "deep_watershed"
                else schema_module.PixelClassesParams()).to_dict()
    meta = {
        "name": config.name,
        "version": "1",
        "task": "segmentation",
        "schema": config.schema_,
        "architecture": {"name": "unet", "args": network.config.to_dict()},
        "input": {"channels": 3, "axes": "YXC", "conversion": "grayscale repeated to RGB, alpha dropped"},
        "normalization": {"method": "percentile", "low": config.normalization[0], "high": config.normalization[1]},
        "scale": {"target_diameter": config.target_diameter},
        "postprocess": defaults,
        "training": {
            "data": {"images": str(data.images), "labels": str(data.labels)},
            "split_sizes": {k: len(v) for k, v in split.items()},
            "seed": config.seed,
            "epochs_run": len(history),
            "best_epoch": best["epoch"],
            "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
            "commit": commit,
            "parent": None if parent is None else parent.name,
        },
        "validation": {},
        "license": "CC0-1.0 training data; weights MIT",
    }
    cfg_path = work / "train_config.yaml"
    cfg_path.write_text(yaml.safe_dump(json.loads(config.model_dump_json(by_alias=True))))
    split_path = work / "split.json"
    save_split(split, split_path)
    return models.save(config.output, meta, load_file(str(work / "best.safetensors")),
                       {"train_config.yaml": cfg_path, "split.json": split_path,
                        "history.csv": work / "history.csv", "curves.png": work / "curves.png"})
