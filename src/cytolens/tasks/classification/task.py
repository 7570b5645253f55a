"""The classification task, as the generic training run sees it (:mod:`cytolens.train.task`).

It supplies only what is particular to classification: the items (a folder per class or
a CSV table, whole images or cell crops) resized to ``optimization.crop_size`` and
normalized per channel with percentiles of the training set; augmented batches drawn at
random or class-balanced; a cross-entropy weighted ``N_total / (N_class × N_classes)``
over the training set or per batch; a validator that scores per class and writes the
confusion matrix (CSV + PNG) at every evaluation; the ``model.json`` entries
(classes, input channels, normalization). The split, the network (``resnet``), transfer
learning, the loop and the package come from :func:`cytolens.train.fitting.fit_model`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cytolens.errors import InvalidParameterError
from cytolens.tasks.classification.config import ClassificationTrainConfig
from cytolens.tasks.classification.data import Item, cell_crops, class_weights, find_items, resize, select_channels
from cytolens.train.task import PreparedData


@dataclass
class Sample:
    """One prepared item: the network input and its class index."""

    id: str
    image: np.ndarray  # (C, S, S) float32, normalized (+ the mask channel)
    targets: int
    stratum: str  # the class name
    side: str = "train"
    info: dict = field(default_factory=dict, repr=False)  # shared: classes, channel statistics, sizes


def load_item(item: Item, config) -> tuple[np.ndarray, np.ndarray | None, int]:
    """An item's raw input ``(C, S, S)`` (resized), its mask (cells) and the side of what was resized."""
    from cytolens.io import read_image

    size = config.optimization.crop_size
    image = select_channels(read_image(item.path), config.input.channels, str(item.path))
    if item.labels is None:
        return resize(image, size), None, int(np.median(image.shape[1:]))
    crop = config.input.cell_crop or size
    crops, masks, _ = cell_crops(image, read_image(item.labels), crop, [item.label], str(item.labels))
    mask = resize(masks[:, None][0], size)[0] > 0.5
    return resize(crops[0], size), mask.astype(np.float32), crop


def channel_statistics(images: Sequence[np.ndarray], percentiles: tuple[float, float], seed: int = 0,
                       max_pixels: int = 2_000_000) -> tuple[list[float], list[float]]:
    """Per-channel low/high percentiles over (a random sample of) the pixels of ``images`` (each ``(C, Y, X)``)."""
    rng = np.random.default_rng(seed)
    n_channels = images[0].shape[0]
    per_image = max(64, max_pixels // max(len(images), 1))
    values = [[] for _ in range(n_channels)]
    for image in images:
        flat = image.reshape(n_channels, -1)
        pick = rng.choice(flat.shape[1], min(per_image, flat.shape[1]), replace=False)
        for c in range(n_channels):
            values[c].append(flat[c, pick])
    low, high = [], []
    for c in range(n_channels):
        lo, hi = np.percentile(np.concatenate(values[c]), percentiles)
        low.append(float(lo))
        high.append(float(hi) if hi > lo else float(lo) + 1.0)
    return low, high


def normalize(raw: np.ndarray, low: Sequence[float], high: Sequence[float], mask: np.ndarray | None = None,
              mask_channel: bool = False) -> np.ndarray:
    """``(C, Y, X)`` raw → what the network reads: ``(raw - low) / (high - low)`` per channel, then the mask channel."""
    low = np.asarray(low, np.float32)[:, None, None]
    high = np.asarray(high, np.float32)[:, None, None]
    out = (raw - low) / (high - low)
    if mask_channel:
        mask = np.ones(raw.shape[1:], np.float32) if mask is None else mask
        out = np.concatenate([out, mask[None].astype(np.float32)])
    return np.ascontiguousarray(out, dtype=np.float32)


def augment(image: np.ndarray, rng: np.random.Generator, aug, has_mask: bool, free_rotation: bool = True) -> np.ndarray:
    """A randomly flipped, rotated, scaled, shifted and intensity-jittered copy of ``(C, S, S)`` ``image``.

    Uses ``flips``, ``rotations`` (any angle, or multiples of 90° without ``free_rotation``), ``scale_range``
    and ``intensity`` of the
    augmentation config; the mask channel (last, when ``has_mask``) moves with the image
    but keeps its values.
    """
    from scipy import ndimage as ndi

    out = image
    if aug.flips and rng.random() < 0.5:
        out = out[:, :, ::-1]
    if aug.rotations:
        out = np.rot90(out, int(rng.integers(4)), axes=(1, 2))
    low, high = aug.scale_range
    scale = math.exp(rng.uniform(math.log(low), math.log(high)))
    angle = rng.uniform(0, 2 * math.pi) if aug.rotations and free_rotation else 0.0
    size = out.shape[1]
    if scale != 1.0 or angle:
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        matrix = np.array([[cos, -sin], [sin, cos]])
        centre = np.array([(size - 1) / 2] * 2)
        shift = rng.uniform(-0.05, 0.05, 2) * size
        offset = centre - matrix @ (centre + shift)
        out = np.stack([ndi.affine_transform(channel, matrix, offset, order=1, mode="reflect") for channel in out])
    out = np.array(out, dtype=np.float32)
    strength = aug.intensity
    if strength > 0:
        n = out.shape[0] - int(has_mask)
        gain = np.exp(rng.uniform(-strength, strength, (n, 1, 1)))
        shift = rng.uniform(-strength / 2, strength / 2, (n, 1, 1))
        out[:n] = out[:n] * gain + shift + rng.normal(0, 0.1 * strength, out[:n].shape)
    return out


class ClassBatches:
    """One epoch's augmented batches (``len`` = steps per epoch): random or class-balanced draws."""

    def __init__(self, samples: Sequence[Sample], config, epoch: int) -> None:
        self.samples, self.config, self.epoch = samples, config, epoch
        opt = config.optimization
        self.steps, self.batch_size = opt.steps_per_epoch, opt.batch_size

    def __len__(self) -> int:
        return self.steps

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        n, needed = len(self.samples), self.steps * self.batch_size
        if self.config.imbalance.sampling == "balanced":
            targets = np.array([s.targets for s in self.samples])
            n_classes = len(self.samples[0].info["classes"])
            per_item = class_weights(targets, n_classes)[targets]
            return rng.choice(n, needed, p=per_item / per_item.sum())
        return np.concatenate([rng.permutation(n) for _ in range(math.ceil(needed / n))])[:needed]

    def __iter__(self):
        rng = np.random.default_rng([self.config.seed, self.epoch])
        order = self._order(rng)
        has_mask = self.config.input.mask_channel
        for step in range(self.steps):
            chosen = [self.samples[i] for i in order[step * self.batch_size:(step + 1) * self.batch_size]]
            images = np.stack([augment(s.image, rng, self.config.augmentation, has_mask, self.config.free_rotation)
                               for s in chosen])
            yield torch.from_numpy(images), torch.tensor([s.targets for s in chosen], dtype=torch.long)


def make_loss_fn(mode: str, n_classes: int, train_targets: Sequence[int], label_smoothing: float = 0.0):
    """Cross-entropy, weighted per class: ``mode`` "none", "dataset" (over ``train_targets``) or "batch"."""
    fixed = torch.tensor(class_weights(train_targets, n_classes), dtype=torch.float32) if mode == "dataset" else None

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = fixed
        if mode == "batch":
            weight = torch.tensor(class_weights(targets.detach().cpu().numpy(), n_classes), dtype=torch.float32)
        if weight is not None:
            weight = weight.to(outputs.device)
        return torch.nn.functional.cross_entropy(outputs, targets, weight=weight, label_smoothing=label_smoothing)

    return loss


def predict_batches(network: torch.nn.Module, inputs: np.ndarray, batch_size: int = 256,
                    features: bool = False) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` (or penultimate features) of ``(N, C, S, S)`` inputs."""
    device = next(network.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).to(device)
            result = network.features(batch) if features else torch.softmax(network(batch).float(), dim=1)
            out.append(result.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class ClassificationTask:
    name = "classification"
    config_model = ClassificationTrainConfig
    primary_metric = "val_macro_f1"
    unit = "images"

    def preparation_key(self, config) -> tuple:
        return (tuple(config.normalization), config.optimization.crop_size, str(config.input),
                *(str(v) for _, v in config.data), config.seed)

    def prepare_data(self, config, progress: bool = True) -> PreparedData:
        from cytolens.train.splits import load_split, make_split, save_split

        items, classes = find_items(config.data)
        by_id = {i.id: i for i in items}
        data = config.data
        if data.split_file is not None and Path(data.split_file).is_file():
            split = load_split(data.split_file)
            unknown = sorted(set(split["train"] + split["val"] + split["test"]) - set(by_id))
            if unknown:
                raise InvalidParameterError(f"data.split_file {data.split_file} lists {len(unknown)} id(s) that the "
                                            f"data lacks, e.g. {unknown[:3]}; delete it to make a new split")
        else:
            ids = sorted(by_id)
            split = make_split(ids, data.val_fraction, data.test_fraction, [by_id[i].klass for i in ids], None,
                               config.seed)
            if data.split_file is not None:
                save_split(split, data.split_file)
        used = split["train"] + split["val"]
        loaded = {}
        sources = []
        iterator = used
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(used, desc="reading images", leave=False)
        for i in iterator:
            raw, mask, source = load_item(by_id[i], config)
            loaded[i] = (raw, mask)
            sources.append(source)
        channel_counts = {raw.shape[0] for raw, _ in loaded.values()}
        if len(channel_counts) > 1:
            raise InvalidParameterError(f"the training images have different channel counts {sorted(channel_counts)}; "
                                        "choose the channels with input.channels")
        low, high = channel_statistics([loaded[i][0] for i in split["train"]], tuple(config.normalization),
                                       config.seed)
        info = {"classes": classes, "low": low, "high": high, "source_size": int(np.median(sources)),
                "file_channels": channel_counts.pop()}
        index = {c: k for k, c in enumerate(classes)}
        samples = {}
        for side in ("train", "val"):
            for i in split[side]:
                raw, mask = loaded[i]
                samples[i] = Sample(i, normalize(raw, low, high, mask, config.input.mask_channel),
                                    index[by_id[i].klass], by_id[i].klass, side, info)
        return PreparedData(split, samples, {i: (by_id[i].path,) for i in by_id}, self.preparation_key(config))

    def network_channels(self, config, data: PreparedData) -> tuple[int, int]:
        first = next(iter(data.samples.values()))
        return first.image.shape[0], len(first.info["classes"])

    def make_loss(self, config, train_samples: Sequence):
        n_classes = len(train_samples[0].info["classes"])
        return make_loss_fn(config.imbalance.class_weights, n_classes, [s.targets for s in train_samples],
                            config.label_smoothing)

    def make_sampler(self, config, train_samples: Sequence):
        return lambda epoch: ClassBatches(train_samples, config, epoch)

    def make_validator(self, config, samples: Sequence, loss_fn, train_samples: Sequence):
        from cytolens.tasks.classification.evaluation import score, write_evaluation

        classes = train_samples[0].info["classes"]
        inputs = np.stack([s.image for s in samples])
        targets = np.array([s.targets for s in samples])
        folder = Path(str(config.output) + ".work") / "evaluation"
        write = bool(samples) and samples[0].side == "val"

        def validate(model) -> dict:
            probabilities = predict_batches(model, inputs)
            logits = torch.from_numpy(np.log(np.clip(probabilities, 1e-8, 1)))
            loss = float(loss_fn(logits, torch.from_numpy(targets)))
            scores = score(np.array(classes)[targets], np.array(classes)[probabilities.argmax(1)], classes)
            if write:
                write_evaluation(scores, folder, "val_", f"{config.name}: validation, latest epoch")
            return {"val_loss": loss, "val_accuracy": scores.accuracy,
                    "val_balanced_accuracy": scores.balanced_accuracy, "val_macro_f1": scores.macro_f1}

        return validate

    def adapt_to_parent(self, config, parent):
        if not parent.meta.get("classes"):
            raise InvalidParameterError("init_from is not a classifier package (its model.json lists no classes)")
        return config

    def package_meta(self, config, train_samples: Sequence) -> dict:
        info = train_samples[0].info
        n_in = train_samples[0].image.shape[0]
        channels = config.input.channels
        return {
            "classes": list(info["classes"]),
            "input": {"channels": n_in, "axes": "YXC",
                      "conversion": (f"channels {channels} of the file" if channels else "all channels of the file")
                      + f", resized to {config.optimization.crop_size} px square"
                      + (", plus the object's mask" if config.input.mask_channel else ""),
                      "file_channels": channels, "file_channel_count": None if channels else info["file_channels"],
                      "size": config.optimization.crop_size, "mask_channel": config.input.mask_channel,
                      "source_size": config.input.cell_crop or info["source_size"]},
            "normalization": {"method": "dataset_percentile", "low": config.normalization[0],
                              "high": config.normalization[1], "channel_low": info["low"],
                              "channel_high": info["high"]},
        }

    def count_units(self, samples: Sequence) -> int:
        return len(samples)


TASK = ClassificationTask()
