"""Training data, losses and validation for the instance-segmentation schemas.

The generic loop (:func:`cytolens.train.loop.fit`) gets its batches, loss and
validation from here. Images are brought to the model's scale once (median
object diameter → ``target_diameter``), targets are computed once at that
scale, and each batch takes random crops with flips, 90° rotations, a random
zoom and intensity jitter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.measure import DENSE_ID_LIMIT
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


def resize_bilinear(array: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(C, Y, X)`` to ``(C, size, size)`` float32, bilinear with half-pixel centres.

    Gives the values of ``ndi.zoom(array, (1, f, f), order=1, grid_mode=True, mode="nearest")``
    (to float32 rounding) about 4x faster; that zoom was two thirds of the time spent making
    training crops, and on a GPU the crop workers set the pace of training.

    >>> resize_bilinear(np.array([[[0.0, 1.0]]]), 4)[0, 0].tolist()
    [0.0, 0.25, 0.75, 1.0]
    """
    tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32))[None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()


def _pad_to(array: np.ndarray, size: int) -> np.ndarray:
    pad_y, pad_x = max(0, size - array.shape[-2]), max(0, size - array.shape[-1])
    if not (pad_y or pad_x):
        return array
    pads = [(0, 0)] * (array.ndim - 2) + [(0, pad_y), (0, pad_x)]
    return np.pad(array, pads, mode="reflect" if min(array.shape[-2:]) > max(pad_y, pad_x) else "symmetric")


def _is_gray(image: np.ndarray) -> bool:
    """Whether a ``(3, Y, X)`` crop is a grayscale image repeated to RGB (no stain to jitter)."""
    return bool(np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2]))


def stain_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Scale and shift the haematoxylin/eosin/DAB concentrations of a ``(3, Y, X)`` RGB crop in [0, 1].

    Each concentration (``skimage.color.rgb2hed``) is multiplied by U(1 − strength, 1 + strength)
    and shifted by U(−strength, strength) / 10 (Tellez et al. 2018's HED augmentation).

    >>> crop = np.full((3, 4, 4), 0.6, np.float32); crop[0] = 0.8
    >>> jittered = stain_jitter(crop, np.random.default_rng(0), 0.2)
    >>> jittered.shape, bool(np.abs(jittered - crop).max() > 0.01)
    ((3, 4, 4), True)
    """
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(np.moveaxis(image, 0, -1), 0, 1))
    hed = hed * rng.uniform(1 - strength, 1 + strength, size=3) + rng.uniform(-strength, strength, size=3) * 0.1
    return np.moveaxis(hed2rgb(hed), -1, 0).astype(np.float32)


class CropSampler:
    """Yields augmented ``(inputs, targets)`` batches from prepared samples."""

    def __init__(self, samples: Sequence[Sample], schema: str, crop_size: int, batch_size: int,
                 steps_per_epoch: int, flips: bool = True, rotations: bool = True,
                 scale_range=(0.75, 1.33), intensity: float = 0.2,
                 stratum_weights: dict[str, float] | None = None, seed: int = 0,
                 gamma: float = 0.0, blur: float = 0.0, stain: float = 0.0, workers: int = 0) -> None:
        if not samples:
            raise InvalidParameterError("there are no training images: check data.images/labels and the split")
        self.samples, self.schema = list(samples), schema
        self.crop, self.batch, self.steps = crop_size, batch_size, steps_per_epoch
        self.flips, self.rotations, self.scale_range, self.intensity = flips, rotations, scale_range, intensity
        self.gamma, self.blur, self.stain = gamma, blur, stain
        self.seed, self.workers = seed, workers
        weights = np.array([(stratum_weights or {}).get(s.stratum, 1.0) for s in self.samples], float)
        if stratum_weights:  # weight per stratum, shared by its members
            counts = {s: sum(x.stratum == s for x in self.samples) for s in {x.stratum for x in self.samples}}
            weights = weights / np.array([counts[s.stratum] for s in self.samples])
        self.probabilities = weights / weights.sum()

    @classmethod
    def from_config(cls, samples: Sequence[Sample], config, steps: int | None = None,
                    workers: int | None = None) -> CropSampler:
        """The sampler a training config describes (``steps``/``workers`` override the config's)."""
        opt, aug = config.optimization, config.augmentation
        return cls(samples, config.schema_, opt.crop_size, opt.batch_size,
                   opt.steps_per_epoch if steps is None else steps, aug.flips, aug.rotations, aug.scale_range,
                   aug.intensity, config.modality_weights, config.seed, gamma=aug.gamma, blur=aug.blur,
                   stain=aug.stain, workers=opt.workers if workers is None else workers)

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
            image = resize_bilinear(image, self.crop)
            if self.schema == "pixel_classes":  # class ids: nearest neighbour
                factor = self.crop / source
                targets = ndi.zoom(targets, (1, factor, factor), order=0, grid_mode=True, mode="nearest")
                targets = targets[:, : self.crop, : self.crop]
            else:
                targets = resize_bilinear(targets, self.crop)
            binary = list(SCHEMAS[self.schema].BINARY_TARGETS)  # masks stay masks; a distance stays smooth
            if binary:
                targets[binary] = targets[binary] > 0.5
        if self.flips and rng.random() < 0.5:
            image, targets = image[:, :, ::-1], targets[:, :, ::-1]
        if self.rotations:
            k = int(rng.integers(4))
            image, targets = np.rot90(image, k, axes=(1, 2)), np.rot90(targets, k, axes=(1, 2))
        if self.stain > 0 and not _is_gray(image):  # H&E stain variation in HED space (Tellez et al. 2018)
            image = stain_jitter(image, rng, self.stain)
        if self.gamma > 0:
            g = math.exp(rng.uniform(-self.gamma, self.gamma))
            image = np.sign(image) * np.abs(image) ** g
        if self.blur > 0 and rng.random() < 0.5:
            sigma = rng.uniform(0, self.blur)
            image = ndi.gaussian_filter(image, (0, sigma, sigma), mode="reflect")
        if self.intensity > 0:
            s = self.intensity
            contrast = rng.uniform(1 - s, 1 + s) * rng.uniform(1 - s / 2, 1 + s / 2, size=(3, 1, 1))
            image = (image - 0.5) * contrast + 0.5 + rng.uniform(-s / 2, s / 2)
            image = image + rng.normal(0, rng.uniform(0, s / 4), size=image.shape)
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(targets, np.float32)

    def batch_at(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of ``epoch``: drawn from its own seed, so it is the same with any number of workers."""
        rng = np.random.default_rng([self.seed, epoch, step])
        picks = rng.choice(len(self.samples), size=self.batch, p=self.probabilities)
        pairs = [self._crop(rng, self.samples[i]) for i in picks]
        return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.workers == 0:
            return (self.batch_at(epoch, step) for step in range(self.steps))
        return iter(torch.utils.data.DataLoader(_EpochBatches(self, epoch), batch_size=None,
                                                num_workers=self.workers, pin_memory=torch.cuda.is_available()))


class _EpochBatches(torch.utils.data.Dataset):
    """One epoch of a :class:`CropSampler` as a dataset of batches, for worker processes."""

    def __init__(self, sampler: CropSampler, epoch: int) -> None:
        self.sampler, self.epoch = sampler, epoch

    def __len__(self) -> int:
        return self.sampler.steps

    def __getitem__(self, step: int):
        return self.sampler.batch_at(self.epoch, step)


def make_loss(schema: str, class_weights: np.ndarray | None = None, contact_emphasis: float = 0.0):
    """Loss for raw network outputs ``(N, K, Y, X)`` against targets from :func:`prepare_sample`.

    ``contact_emphasis`` (contact watershed only) weighs the cross-entropy of every channel
    by ``1 + contact_emphasis`` at contact pixels, where two objects touch: most errors
    there are merges, which a pixel-averaged loss barely sees.
    """
    if schema == "deep_watershed":
        def deep_watershed_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return (F.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0])
                    + F.binary_cross_entropy_with_logits(outputs[:, 1], targets[:, 1]))
        return deep_watershed_loss
    if schema == "contact_watershed":
        def contact_watershed_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            per_pixel = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
            if contact_emphasis:
                per_pixel = per_pixel * (1 + contact_emphasis * targets[:, 2:3])
            per_channel = per_pixel.mean(dim=(0, 2, 3))
            # contacts are a few % of the pixels: the Dice term keeps them from being predicted away
            return per_channel.sum() + soft_dice_loss(outputs[:, 2], targets[:, 2])
        return contact_watershed_loss
    if schema == "pixel_classes":
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)

        def pixel_classes_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(outputs, targets[:, 0].long(),
                                   weight=None if weight is None else weight.to(outputs.device))
        return pixel_classes_loss
    raise ValueError(f"unknown schema {schema!r}")


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − Dice overlap of ``sigmoid(logits)`` with binary ``targets``, over the whole batch.

    >>> t = torch.tensor([[0.0, 1.0]]); round(float(soft_dice_loss(torch.tensor([[-20.0, 20.0]]), t)), 3)
    0.0
    """
    probability = torch.sigmoid(logits)
    overlap = (probability * targets).sum()
    return 1 - (2 * overlap + smooth) / (probability.sum() + targets.sum() + smooth)


def pixel_class_weights(samples: Sequence[Sample]) -> np.ndarray:
    return pixel_classes.class_weights([s.targets[0].astype(np.int64) for s in samples])


def network_predictor(model: torch.nn.Module):
    """Wrap a network as a numpy ``(C, y, x) → (K, y, x)`` function for tiling."""
    device = next(model.parameters()).device

    def predict(tile: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(tile))[None].to(device))[0]
            return out.float().contiguous().cpu().numpy()  # float(): bfloat16 under autocast has no numpy dtype
    return predict


def make_validator(samples: Sequence[Sample], schema: str, loss_fn, tile_size: int = 512,
                   size_divisor: int = 16, **postprocess_params):
    """``validate(model)`` → val_loss and AP@0.5 (per image, at the model scale).

    ``postprocess_params`` go to the schema's post-processing (e.g. ``class_weights``).
    """
    postprocess = SCHEMAS[schema].postprocess
    out_channels = SCHEMAS[schema].OUTPUT_CHANNELS

    def validate(model: torch.nn.Module) -> dict:
        predict = network_predictor(model)
        losses, aps, aps75 = [], [], []
        for sample in samples:
            outputs = predict_tiled(predict, sample.image, out_channels, tile_size, 64, size_divisor)
            losses.append(float(loss_fn(torch.from_numpy(outputs)[None], torch.from_numpy(sample.targets)[None])))
            labels = postprocess(outputs, **postprocess_params)
            aps.append(match(sample.labels, labels.astype(np.int64), 0.5).average_precision)
            aps75.append(match(sample.labels, labels.astype(np.int64), 0.75).average_precision)
        return {"val_loss": float(np.mean(losses)), "val_ap50": float(np.mean(aps)), "val_ap75": float(np.mean(aps75))}

    return validate


#: Validation metric that tuning and learning curves maximize.
PRIMARY_METRIC = "val_ap50"
#: What the learning curve counts besides images.
UNIT = "objects"


@dataclass
class SegmentationData:
    """Annotated images brought to the model's scale once, reused across runs (tuning, learning curves)."""

    split: dict[str, list[str]]
    samples: dict[str, Sample]  # id -> prepared sample (train and val sides)
    files: dict[str, tuple]  # id -> (image path, label path)
    key: tuple  # the settings the preparation depends on

    def side(self, name: str, ids: Sequence[str] | None = None) -> list[Sample]:
        return [self.samples[i] for i in (self.split[name] if ids is None else ids)]

    def n_objects(self, ids: Sequence[str]) -> int:
        return int(sum(len(np.unique(self.samples[i].labels)) - (self.samples[i].labels == 0).any() for i in ids))


def _preparation_key(config) -> tuple:
    data = config.data
    return (config.schema_, config.target_diameter, tuple(config.normalization),
            *(str(v) for _, v in data), config.seed)


def _pairs(images, labels, prefix: str = "") -> dict:
    from cytolens.io import list_images

    for name, folder in ((f"data.{prefix}images", images), (f"data.{prefix}labels", labels)):
        if not folder.is_dir():
            raise InvalidParameterError(f"{name}: folder not found: {folder}")
    image_files = {p.stem: p for p in list_images(images)}
    label_files = {p.stem: p for p in list_images(labels)}
    unmatched = sorted(set(image_files) ^ set(label_files))
    if unmatched:  # pairs are matched by file name without suffix: a typo drops an image silently otherwise
        warnings.warn(f"{len(unmatched)} file(s) in data.{prefix}images or data.{prefix}labels have no partner of the "
                      f"same name and are left out: {', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}",
                      UserWarning, stacklevel=2)
    return {i: (image_files[i], label_files[i]) for i in sorted(set(image_files) & set(label_files))}


def _strata_for(config, ids: list[str]) -> tuple[list[str] | None, list[str] | None]:
    data = config.data
    if data.strata_csv is None:
        return None, None
    import pandas as pd

    table = pd.read_csv(data.strata_csv, dtype=str)
    for column in (data.id_column, data.stratify_column, data.group_column):
        if column is not None and column not in table.columns:
            raise InvalidParameterError(f"data.strata_csv {data.strata_csv} has no column {column!r} "
                                        f"(columns: {', '.join(table.columns)})")
    table = table.set_index(data.id_column)
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise InvalidParameterError(f"{len(missing)} image id(s) are missing from data.strata_csv column "
                                    f"{data.id_column!r}, e.g. {missing[:3]}")
    strata = [table.loc[i, data.stratify_column] for i in ids] if data.stratify_column else None
    groups = [table.loc[i, data.group_column] for i in ids] if data.group_column else None
    return strata, groups


def make_data_split(config) -> tuple[dict[str, list[str]], dict[str, tuple], dict[str, str]]:
    """The train/val/test split of a config's data: from ``split_file`` if it exists, else made and saved.

    Returns the split, ``{id: (image, labels)}`` and ``{id: stratum}``.
    """
    from cytolens.train.splits import add_fixed_sides, load_split, make_split, save_split

    data = config.data
    files = _pairs(data.images, data.labels)
    if not files:
        raise InvalidParameterError(f"no image in {data.images} has a label image of the same name in {data.labels}")
    pool = sorted(files)
    fixed: dict[str, list[str]] = {}
    for side in ("val", "test"):
        folder = getattr(data, f"{side}_images")
        if folder is not None:
            side_files = _pairs(folder, getattr(data, f"{side}_labels"), f"{side}_")
            if not side_files:
                raise InvalidParameterError(f"no image in data.{side}_images ({folder}) has a label image of the "
                                            f"same name in data.{side}_labels")
            clash = sorted(set(side_files) & set(files))
            if clash:
                raise InvalidParameterError(f"image id(s) {clash[:3]} are in data.images and data.{side}_images; "
                                            "ids (file stems) must be unique across folders")
            files.update(side_files)
            fixed[side] = sorted(side_files)
    strata, groups = _strata_for(config, pool)
    if data.split_file is not None and Path(data.split_file).is_file():
        split = load_split(data.split_file)
        unknown = sorted(set(split["train"] + split["val"] + split["test"]) - set(files))
        if unknown:
            raise InvalidParameterError(
                f"data.split_file {data.split_file} lists {len(unknown)} id(s) with no image/label pair, e.g. "
                f"{unknown[:3]}; fix the data folders or delete the split file to make a new split")
    else:
        split = make_split(pool, 0 if "val" in fixed else data.val_fraction,
                           0 if "test" in fixed else data.test_fraction, strata, groups, config.seed)
        split = add_fixed_sides(split, fixed)
        if data.split_file is not None:
            save_split(split, data.split_file)
    stratum_of = dict(zip(pool, strata)) if strata else {}
    return split, files, stratum_of


def prepare_data(config, progress: bool = True) -> SegmentationData:
    """Split a config's data and bring the train and val images to the model's scale
    (in ``optimization.workers`` processes when set)."""
    split, files, stratum_of = make_data_split(config)
    if not split["val"]:
        raise InvalidParameterError("the validation split is empty; raise data.val_fraction or add images")
    ids = split["train"] + split["val"]
    jobs = [(files[i], config.schema_, config.target_diameter, tuple(config.normalization), stratum_of.get(i, "all"))
            for i in ids]

    def collect(prepared) -> dict[str, Sample]:
        if progress:
            from tqdm.auto import tqdm

            prepared = tqdm(prepared, total=len(ids), desc="preparing images", leave=False)
        return dict(zip(ids, prepared))

    if config.optimization.workers:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(config.optimization.workers) as pool:
            samples = collect(pool.map(_prepare_file, jobs, chunksize=8))
    else:
        samples = collect(map(_prepare_file, jobs))
    data = SegmentationData(split, samples, files, _preparation_key(config))
    for side in ("train", "val"):  # all-empty labels would train a model that finds nothing, and score it 1.0
        if data.n_objects(split[side]) == 0:
            setting = "val_labels" if side == "val" and config.data.val_labels else "labels"
            raise InvalidImageError(f"the label images of the {side} split ({len(split[side])}) hold no objects; "
                                    f"check data.{setting} ({getattr(config.data, setting)}): 0 is background, "
                                    "each object needs its own id > 0")
    return data


def _prepare_file(job) -> Sample:
    from cytolens.io import read_image

    (image_path, labels_path), schema, target_diameter, normalization, stratum = job
    image, labels = checked_annotation(read_image(image_path), read_image(labels_path), labels_path)
    return prepare_sample(image, labels, schema, target_diameter, normalization, stratum)


def checked_annotation(image: np.ndarray, labels: np.ndarray, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """An annotated image checked for training: labels 2D, whole, >= 0, the image's Y and X.

    Raises :class:`~cytolens.errors.InvalidImageError` naming the file; ids above
    ``DENSE_ID_LIMIT`` are renumbered 1..N (the targets need only which pixels share an id).

    >>> image, labels = np.zeros((4, 4)), np.zeros((4, 3), np.uint16)
    >>> checked_annotation(image, labels, "a.tif")
    Traceback (most recent call last):
    cytolens.errors.InvalidImageError: a.tif: label image (4, 3) and image (4, 4) differ in size; each label image must match its image pixel for pixel
    """
    if labels.ndim != 2:
        raise InvalidImageError(f"{labels_path}: a label image must be 2D (Y, X), got shape {labels.shape}")
    if image.shape[:2] != labels.shape:
        raise InvalidImageError(f"{labels_path}: label image {labels.shape} and image {image.shape[:2]} differ in size; "
                                "each label image must match its image pixel for pixel")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number) or (
            not np.issubdtype(labels.dtype, np.integer) and not np.array_equal(labels, np.round(labels))):
        raise InvalidImageError(f"{labels_path}: labels must be whole numbers (0 = background, one id per object), "
                                f"got {labels.dtype} values; a binary mask needs skimage.measure.label first")
    if labels.min() < 0:
        raise InvalidImageError(f"{labels_path}: labels must be >= 0 (0 = background), found {labels.min()}")
    if labels.max() > DENSE_ID_LIMIT:
        labels = relabel_sequential(labels.astype(np.int64))[0]
    return image, labels.astype(np.int32)


def load_parent(config):
    """Load ``config.init_from`` and adapt the config to it (architecture, scale, normalization).

    Returns ``(package, config)``. Settings the config leaves unset are taken from the
    parent; an explicit architecture that does not match the parent's weights is an error.
    """
    from cytolens import models

    package = models.load(config.init_from)
    return package, adapt_to_parent(config, package)


def adapt_to_parent(config, package):
    """Check that ``package`` can start a run of ``config``; fill unset settings from it."""
    meta = package.meta
    where = f"init_from ({meta.get('name')!r})"
    if meta.get("task") != config.task:
        raise InvalidParameterError(f"{where} is a {meta.get('task')} model; this config trains {config.task}")
    extends = getattr(SCHEMAS.get(config.schema_), "EXTENDS", None)
    if meta.get("schema") != config.schema_ and meta.get("schema") != extends:
        raise InvalidParameterError(f"{where} predicts schema {meta.get('schema')!r} but schema is "
                                    f"{config.schema_!r}: set schema: {meta.get('schema')} or start from scratch")
    args = meta["architecture"]["args"]
    arch = config.architecture
    if "architecture" in config.model_fields_set:
        for key in ("depth", "base_channels", "norm"):
            if getattr(arch, key) != args[key]:
                raise InvalidParameterError(
                    f"architecture.{key} is {getattr(arch, key)!r} but {where} has {args[key]!r}; remove it from "
                    "the config (the parent's architecture is used) or start from scratch")
    updates: dict = {"architecture": arch.model_copy(update={k: args[k] for k in ("depth", "base_channels", "norm")})}
    if "target_diameter" not in config.model_fields_set and "scale" in meta:
        updates["target_diameter"] = float(meta["scale"]["target_diameter"])
    if "normalization" not in config.model_fields_set and "normalization" in meta:
        updates["normalization"] = (float(meta["normalization"]["low"]), float(meta["normalization"]["high"]))
    adapted = config.model_copy(update=updates)
    divisor = 2 ** args["depth"]
    if adapted.optimization.crop_size % divisor:
        raise InvalidParameterError(f"optimization.crop_size {adapted.optimization.crop_size} must be a multiple "
                                    f"of {divisor} for {where} (depth {args['depth']})")
    return adapted


def load_parent_weights(network: torch.nn.Module, parent_state: dict[str, torch.Tensor]) -> None:
    """Copy a parent's weights into ``network``, whose head may have more output channels.

    A schema that ``EXTENDS`` another keeps the parent's channels first, so the parent's
    head fills the first rows of the new head. The added rows start at zero weights and
    a bias of −4 (sigmoid ≈ 0.02: "rarely present"), so at the start they neither disturb
    the shared features with large gradients nor change the parent's outputs. Any other
    mismatch is an error.
    """
    state = network.state_dict()
    for key, value in parent_state.items():
        target = state.get(key)
        if target is None:
            raise InvalidParameterError(f"the parent model has weights {key!r} that this network lacks")
        if target.shape == value.shape:
            state[key] = value
        elif key.startswith("head.") and target.shape[1:] == value.shape[1:] and target.shape[0] > value.shape[0]:
            state[key] = torch.full_like(target, -4.0) if key.endswith("bias") else torch.zeros_like(target)
            state[key][: value.shape[0]] = value
        else:
            raise InvalidParameterError(f"the parent's {key!r} has shape {tuple(value.shape)}, "
                                        f"this network's {tuple(target.shape)}")
    network.load_state_dict(state)


def _config_stamp(config) -> dict:
    """What must not change for a checkpoint to be resumed: the config with its paths resolved,
    the split file by content and the output left out (the same run may be written elsewhere)."""
    import hashlib

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


def _prepare_work_dir(work, config, resume: bool, progress: bool) -> None:
    """Keep a resumable checkpoint only when it was made with the same config."""
    import json

    from cytolens.io import make_folder

    make_folder(work)
    stamp = work / "config.json"
    current = _config_stamp(config)
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


def half_precision_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Learned weights in float16, running statistics (e.g. batchnorm variances) kept in float32.

    Batchnorm variances can exceed float16's range (65504) and would become ``inf``.

    >>> state = {"conv.weight": torch.ones(2), "bn.running_var": torch.tensor([1e6])}
    >>> {k: v.dtype for k, v in half_precision_weights(state).items()}
    {'conv.weight': torch.float16, 'bn.running_var': torch.float32}
    """
    halved = {}
    for key, value in state.items():
        learned = key.endswith(("weight", "bias")) and value.is_floating_point()
        if learned and torch.isfinite(value.half()).all():
            value = value.half()
        halved[key] = value
    return halved


def fit_segmentation(config, data: SegmentationData | None = None, *, progress: bool = True, parent=None,
                     train_ids: Sequence[str] | None = None, on_epoch_end=None, score_train: bool = False,
                     write_package: bool = True, work_dir=None, resume: bool = True, max_train_scored: int = 50):
    """Train a segmentation model from a validated config; return a :class:`~cytolens.train.loop.TrainResult`.

    Parameters
    ----------
    config : SegmentationTrainConfig
    data : SegmentationData, optional
        Prepared data to reuse (from :func:`prepare_data` with the same data settings).
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
    import json
    import subprocess
    import warnings

    from safetensors.torch import load_file

    from cytolens import models
    from cytolens.nn import UNet
    from cytolens.nn.unet import receptive_field
    from cytolens.train.checks import check_receptive_field, object_diameters
    from cytolens.train.config import save_config
    from cytolens.train.loop import LoopConfig, TrainResult, fit, overfitting_report, seed_everything
    from cytolens.train.splits import save_split
    from cytolens.train.transfer import freeze_encoder_hook, parent_record

    messages: list[str] = []
    parent_source = None if parent is None else str(parent.path or parent.name)
    if parent is None and getattr(config, "init_from", None):
        parent, config = load_parent(config)
        parent_source = config.init_from
    elif parent is not None:
        config = adapt_to_parent(config, parent)
    if data is None or data.key != _preparation_key(config):
        data = prepare_data(config, progress)
    split = data.split
    ids = list(split["train"]) if train_ids is None else sorted(train_ids)
    outside = sorted(set(ids) - set(split["train"]))
    if outside:
        raise InvalidParameterError(f"train_ids must come from the train split; {outside[:3]} do not")
    train_samples, val_samples = data.side("train", ids), data.side("val")
    arch = config.architecture
    message = check_receptive_field(object_diameters(s.labels for s in train_samples), arch.depth,
                                    receptive_field, scale_setting=("target_diameter", config.target_diameter),
                                    warn=False)
    if message:
        messages.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    schema_module = SCHEMAS[config.schema_]
    seed_everything(config.seed)  # the initial weights too
    network = UNet(3, schema_module.OUTPUT_CHANNELS, arch.depth, arch.base_channels, arch.norm, arch.dropout)
    if parent is not None:
        load_parent_weights(network, parent.network.state_dict())
    weights = pixel_class_weights(train_samples) if config.schema_ == "pixel_classes" else None
    loss_fn = make_loss(config.schema_, weights, config.contact_emphasis)
    post_params = {} if weights is None else {"class_weights": tuple(map(float, weights))}
    opt = config.optimization
    sampler = CropSampler.from_config(train_samples, config)
    validate = make_validator(val_samples, config.schema_, loss_fn, size_divisor=2**arch.depth, **post_params)
    loop = LoopConfig(epochs=opt.epochs, optimizer=opt.optimizer, learning_rate=opt.learning_rate,
                      momentum=opt.momentum, weight_decay=opt.weight_decay, schedule=opt.schedule,
                      warmup_epochs=opt.warmup_epochs, patience=opt.patience, seed=config.seed,
                      max_minutes=opt.max_minutes, device=opt.device,
                      precision=opt.precision)
    work = Path(work_dir) if work_dir is not None else Path(str(config.output) + ".work")
    _prepare_work_dir(work, config, resume, progress)
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
            scores = make_validator(scored, config.schema_, loss_fn, size_divisor=2**arch.depth,
                                    **post_params)(network)
        train_scores = {"train_" + k.removeprefix("val_"): v for k, v in scores.items()}
    result = TrainResult(history=history, best=best, work_dir=work, split_sizes={k: len(v) for k, v in split.items()},
                         n_train_images=len(train_samples), n_train_units=data.n_objects(ids),
                         train_scores=train_scores, messages=messages)
    if not write_package:
        return result
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    defaults = schema_module.PARAMS(**post_params).to_dict()
    folders = {k: str(v) for k, v in config.data if k.endswith(("images", "labels")) and v is not None}
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
            "data": folders,
            "split_sizes": result.split_sizes,
            "train_images_used": len(train_samples),
            "train_objects": result.n_train_units,
            "seed": config.seed,
            "epochs_run": len(history),
            "best_epoch": best["epoch"],
            "best_val": {k: v for k, v in best.items() if k.startswith("val_")},
            "commit": commit,
            "parent": None if parent is None else parent_record(parent, parent_source),
            "freeze_encoder_epochs": config.freeze_encoder_epochs if parent is not None else 0,
            "overfitting": overfit,
            "warnings": messages,
        },
        "validation": {},
        "license": "CC0-1.0 training data; weights MIT",
    }
    # the package's copy points at the package's own split.json and at data paths valid from there
    packaged = config.model_copy(update={"data": config.data.model_copy(
        update={"split_file": Path(config.output) / "split.json"})})
    cfg_path = save_config(packaged, work / "train_config.yaml", relative_to=config.output)
    split_path = work / "split.json"
    save_split(split if train_ids is None else {**split, "train": ids}, split_path)
    (work / "model_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    result.package = models.save(config.output, meta, best_weights,
                                 {"train_config.yaml": cfg_path, "split.json": split_path,
                                  "history.csv": work / "history.csv", "curves.png": work / "curves.png"})
    return result


def train_segmentation(config, progress: bool = True, parent=None):
    """Train a segmentation model from a validated config and write its package.

    Returns the package folder. ``parent`` is an optional loaded
    :class:`~cytolens.models.ModelPackage` to start from (transfer learning);
    ``config.init_from`` does the same from the config.
    """
    return fit_segmentation(config, progress=progress, parent=parent).package


#: The names :mod:`cytolens.train.api` looks up in a task's training module.
fit_task = fit_segmentation
