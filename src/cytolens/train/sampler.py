"""Augmented training batches for any task whose inputs and targets are images or volumes.

A sample holds ``image`` ``(C, *spatial)``, ``targets`` ``(K, *spatial)`` (the same
spatial shape) and a ``stratum`` (e.g. modality, for oversampling). Each batch takes
random crops with a random zoom, flips and 90° rotations of the last two axes, applied to
image and targets together; then photometric jitter (stain, gamma, blur, contrast,
brightness, noise) of the image. For image-to-image tasks (restoration) the targets are
intensities too: ``TargetKind(paired_intensity=True)`` applies the same stain, gamma,
contrast and brightness to them, while blur and noise, the degradations, stay on the input.

Batch ``k`` of epoch ``e`` is drawn from its own seed ``(seed, e, k)``: the same whether
worker processes or the training process make it.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> sample = SimpleNamespace(image=np.random.rand(1, 40, 40).astype("f4"), targets=np.zeros((2, 40, 40), "f4"),
...                          stratum="all")
>>> inputs, targets = CropSampler([sample], crop_size=32, batch_size=2, steps_per_epoch=1).batch_at(0, 0)
>>> tuple(inputs.shape), tuple(targets.shape)
((2, 1, 32, 32), (2, 2, 32, 32))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from cytolens.errors import InvalidParameterError


@dataclass(frozen=True)
class Augmentation:
    """The random transforms of :class:`CropSampler` (see ``AugmentationConfig`` for each setting's meaning)."""

    flips: bool = True
    rotations: bool = True
    scale_range: tuple[float, float] = (0.75, 1.33)
    intensity: float = 0.2
    gamma: float = 0.0
    blur: float = 0.0
    stain: float = 0.0
    texture: float = 0.0

    @classmethod
    def from_config(cls, augmentation) -> Augmentation:
        """The settings of a validated ``augmentation`` config section."""
        return cls(flips=augmentation.flips, rotations=augmentation.rotations,
                   scale_range=tuple(augmentation.scale_range), intensity=augmentation.intensity,
                   gamma=augmentation.gamma, blur=augmentation.blur, stain=augmentation.stain,
                   texture=augmentation.texture)


@dataclass(frozen=True)
class TargetKind:
    """How a task's targets follow the crop's zoom and jitter.

    ``interpolation``: "linear" for maps (distances, probabilities, intensities),
    "nearest" for class ids. ``binary_channels``: channels kept 0/1 after a linear zoom
    (masks stay masks). ``paired_intensity``: the targets are intensities that share the
    input's stain, gamma, contrast and brightness jitter (restoration).
    ``vector_channels``: ``(y, x)`` channel pairs that hold the two components of a vector
    field (flows): a flip of X negates the x component and a 90° rotation turns the
    vectors with the image (:func:`turn_vectors`).
    """

    interpolation: str = "linear"
    binary_channels: tuple[int, ...] = ()
    paired_intensity: bool = False
    vector_channels: tuple[tuple[int, int], ...] = ()


def turn_vectors(targets: np.ndarray, pairs, flip: bool = False, k: int = 0) -> np.ndarray:
    """Vector components of ``targets`` ``(K, Y, X)`` after the image was flipped along X and/or turned
    by ``np.rot90(..., k, axes=(Y, X))``: a displacement ``(dy, dx)`` becomes ``(dy, -dx)`` on a flip and
    ``(-dx, dy)`` on each quarter turn (the pixels must be moved already).

    >>> t = np.zeros((2, 1, 1)); t[0], t[1] = 1.0, 2.0  # (dy, dx) = (1, 2)
    >>> turn_vectors(t, [(0, 1)], k=1)[:, 0, 0].tolist()
    [-2.0, 1.0]
    """
    if not pairs or (not flip and k % 4 == 0):
        return targets
    targets = np.array(targets, copy=True)
    for y, x in pairs:
        if flip:
            targets[x] = -targets[x]
        for _ in range(k % 4):
            targets[y], targets[x] = -targets[x], targets[y].copy()
    return targets


def resize_linear(array: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Resize ``(C, *spatial)`` to ``(C, *size)`` float32, (bi/tri)linear with half-pixel centres.

    Gives the values of ``ndi.zoom(array, (1, f, f), order=1, grid_mode=True, mode="nearest")``
    (to float32 rounding) about 4x faster; that zoom was two thirds of the time spent making
    training crops, and on a GPU the crop workers set the pace of training.

    >>> resize_linear(np.array([[[0.0, 1.0]]]), 4)[0, 0].tolist()
    [0.0, 0.25, 0.75, 1.0]
    """
    spatial = array.ndim - 1
    size = (size,) * spatial if isinstance(size, int) else tuple(size)
    tensor = torch.from_numpy(np.ascontiguousarray(array, np.float32))[None]
    mode = {2: "bilinear", 3: "trilinear"}[spatial]
    return F.interpolate(tensor, size=size, mode=mode, align_corners=False)[0].numpy()


def crop_shape(crop_size: int | tuple[int, ...], spatial_ndim: int) -> tuple[int, ...]:
    """The spatial shape of the crops: one side for every axis, or one per axis ((z, y, x) for volumes).

    >>> crop_shape(64, 3), crop_shape((16, 64, 64), 3)
    ((64, 64, 64), (16, 64, 64))
    """
    if isinstance(crop_size, numbers.Integral):
        return (int(crop_size),) * spatial_ndim
    crop = tuple(int(side) for side in crop_size)
    if len(crop) != spatial_ndim:
        raise InvalidParameterError(f"crop size {list(crop)} has {len(crop)} sides but the training samples have "
                                    f"{spatial_ndim} spatial axes")
    return crop


def pad_to(array: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Pad the spatial axes of ``(C, *spatial)`` up to ``size`` (one side, or one per axis) by reflection
    (symmetric when too small)."""
    sizes = (size,) * (array.ndim - 1) if isinstance(size, numbers.Integral) else tuple(size)
    pads = [max(0, s - n) for s, n in zip(sizes, array.shape[1:])]
    if not any(pads):
        return array
    mode = "reflect" if min(array.shape[1:]) > max(pads) else "symmetric"
    return np.pad(array, [(0, 0)] + [(0, p) for p in pads], mode=mode)


def is_gray(image: np.ndarray) -> bool:
    """Whether a ``(3, ...)`` crop is a grayscale image repeated to RGB (no stain to jitter)."""
    return bool(image.shape[0] == 3 and np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2]))


def stain_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Scale and shift the haematoxylin/eosin/DAB concentrations of a ``(3, Y, X)`` RGB crop in [0, 1].

    Each concentration (``skimage.color.rgb2hed``) is multiplied by U(1 − strength, 1 + strength)
    and shifted by U(−strength, strength) / 10 (Tellez et al. 2018's HED augmentation).

    >>> crop = np.full((3, 4, 4), 0.6, np.float32); crop[0] = 0.8
    >>> jittered = stain_jitter(crop, np.random.default_rng(0), 0.2)
    >>> jittered.shape, bool(np.abs(jittered - crop).max() > 0.01)
    ((3, 4, 4), True)
    """
    return _apply_stain(image, *_stain_draw(rng, strength))


def _stain_draw(rng: np.random.Generator, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The H, E and DAB concentrations' factors and shifts of one stain jitter."""
    return rng.uniform(1 - strength, 1 + strength, size=3), rng.uniform(-strength, strength, size=3) * 0.1


def _apply_stain(image: np.ndarray, factors: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(np.clip(np.moveaxis(image, 0, -1), 0, 1))
    return np.moveaxis(hed2rgb(hed * factors + shifts), -1, 0).astype(np.float32)


def speckle_texture(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """A multiplicative texture field of mean ~1: smooth noise at a random grain of 0.7 to 3 pixels.

    Laid over a crop it turns evenly bright nuclei into textured ones (bright chromatin foci
    over a dim nucleoplasm, as in Fluo-N2DH-SIM+), so the network learns that such a nucleus
    is still one object. The field is ``exp(strength * z)`` for smooth unit-variance noise ``z``:
    positive everywhere, brighter and darker patches alike.

    >>> field = speckle_texture(np.random.default_rng(0), (64, 64), 0.5)
    >>> field.shape, bool(field.min() > 0), round(float(np.log(field).std()), 1)
    ((64, 64), True, 0.5)
    """
    grain = rng.uniform(0.7, 3.0)
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), grain, mode="wrap")
    noise /= max(float(noise.std()), 1e-6)
    return np.exp(strength * noise).astype(np.float32)


def content_centres(targets: np.ndarray, crop_size: int, min_content: float) -> np.ndarray:
    """Flat indices of the pixels of ``targets`` ``(K, ...)`` within half a crop of content: a value of at least
    ``min_content`` times the targets' 99.9th percentile (all pixels if there is none).

    >>> t = np.zeros((1, 8, 8)); t[0, 0, 0] = 1.0
    >>> content_centres(t, 4, 0.4).tolist()  # the 2-pixel neighbourhood of (0, 0)
    [0, 1, 2, 8, 9, 10, 16, 17, 18]
    """
    strongest = targets.max(axis=0)
    level = min_content * float(np.percentile(strongest, 99.9))
    near = ndi.maximum_filter(strongest, size=crop_size + 1 - crop_size % 2) >= level
    centres = np.flatnonzero(near)
    return centres if len(centres) else np.arange(strongest.size)


class CropSampler:
    """Yields augmented ``(inputs, targets)`` batches from prepared samples.

    Call it with an epoch number for that epoch's batches (``steps_per_epoch`` of them);
    ``stratum_weights`` oversample strata (a weight per stratum, shared by its members).
    ``min_content`` skips background crops (CARE's ``no_background_patches``): each crop is
    centred on a pixel within half a crop of a target value of at least ``min_content`` times
    the 99.9th percentile of the sample's targets.
    """

    def __init__(self, samples: Sequence, *, crop_size: int | tuple[int, ...], batch_size: int, steps_per_epoch: int,
                 augmentation: Augmentation = Augmentation(), targets: TargetKind = TargetKind(),
                 stratum_weights: dict[str, float] | None = None, seed: int = 0, workers: int = 0,
                 min_content: float = 0.0) -> None:
        if not samples:
            raise InvalidParameterError("there are no training images: check the data folders and the split")
        self.samples = list(samples)
        self.crop, self.batch, self.steps = crop_size, batch_size, steps_per_epoch
        self._centres = [content_centres(s.targets, int(np.max(crop_size)), min_content) if min_content > 0 else None
                         for s in self.samples]
        self.augmentation, self.target_kind = augmentation, targets
        self.seed, self.workers = seed, workers
        weights = np.array([(stratum_weights or {}).get(s.stratum, 1.0) for s in self.samples], float)
        if stratum_weights:  # weight per stratum, shared by its members
            counts = {s: sum(x.stratum == s for x in self.samples) for s in {x.stratum for x in self.samples}}
            weights = weights / np.array([counts[s.stratum] for s in self.samples])
        self.probabilities = weights / weights.sum()

    @classmethod
    def from_config(cls, samples: Sequence, config, targets: TargetKind = TargetKind(), *, steps: int | None = None,
                    workers: int | None = None, min_content: float = 0.0) -> CropSampler:
        """The sampler a training config describes (``steps``/``workers`` override the config's)."""
        opt = config.optimization
        return cls(samples, crop_size=opt.crop_size, batch_size=opt.batch_size,
                   steps_per_epoch=opt.steps_per_epoch if steps is None else steps,
                   augmentation=Augmentation.from_config(config.augmentation), targets=targets,
                   stratum_weights=config.modality_weights, seed=config.seed,
                   workers=opt.workers if workers is None else workers, min_content=min_content)

    def _crop(self, rng: np.random.Generator, sample, centres: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        aug, kind = self.augmentation, self.target_kind
        low, high = aug.scale_range
        zoom = math.exp(rng.uniform(math.log(low), math.log(high)))
        crop = crop_shape(self.crop, sample.image.ndim - 1)
        source = tuple(max(8, int(round(side / zoom))) for side in crop)
        image, targets = pad_to(sample.image, source), pad_to(sample.targets, source)
        if centres is None:
            starts = [rng.integers(0, n - side + 1) for n, side in zip(image.shape[1:], source)]
        else:  # a window around a pixel near content, moved inside the image
            centre = np.unravel_index(centres[rng.integers(len(centres))], sample.targets.shape[1:])
            starts = [int(min(max(c - side // 2, 0), n - side))
                      for c, n, side in zip(centre, image.shape[1:], source)]
        window = (slice(None), *(slice(s, s + side) for s, side in zip(starts, source)))
        image, targets = image[window], targets[window]
        if source != crop:
            image = resize_linear(image, crop)
            if kind.interpolation == "nearest":  # class ids
                factors = tuple(c / s for c, s in zip(crop, source))
                targets = ndi.zoom(targets, (1,) + factors, order=0, grid_mode=True, mode="nearest")
                targets = targets[(slice(None), *(slice(0, c) for c in crop))]
            else:
                targets = resize_linear(targets, crop)
            binary = list(kind.binary_channels)  # masks stay masks; a distance stays smooth
            if binary:
                targets[binary] = targets[binary] > 0.5
        last = image.ndim - 1
        if aug.flips and rng.random() < 0.5:
            image, targets = np.flip(image, last), np.flip(targets, last)
            targets = turn_vectors(targets, kind.vector_channels, flip=True)
        if aug.rotations:
            k = int(rng.integers(4))
            if crop[-2] != crop[-1]:  # a quarter turn would swap the sides of a crop that is not square in Y, X
                k -= k % 2
            image, targets = np.rot90(image, k, axes=(last - 1, last)), np.rot90(targets, k, axes=(last - 1, last))
            targets = turn_vectors(targets, kind.vector_channels, k=k)
        image, targets = self._jitter(rng, image, targets)
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(targets, np.float32)

    def _jitter(self, rng: np.random.Generator, image: np.ndarray, targets: np.ndarray):
        """Photometric jitter of the image (and, with ``paired_intensity``, of the targets alike)."""
        aug, paired = self.augmentation, self.target_kind.paired_intensity
        if aug.stain > 0 and image.shape[0] == 3 and not is_gray(image):  # H&E stain variation (Tellez et al. 2018)
            factors, shifts = _stain_draw(rng, aug.stain)
            image = _apply_stain(image, factors, shifts)
            if paired and targets.shape[0] == 3:
                targets = _apply_stain(targets, factors, shifts)
        if aug.texture > 0 and rng.random() < 0.5:
            texture = speckle_texture(rng, image.shape[1:], aug.texture)
            image = image * texture
            if paired:
                targets = targets * texture
        if aug.gamma > 0:
            g = math.exp(rng.uniform(-aug.gamma, aug.gamma))
            image = np.sign(image) * np.abs(image) ** g
            if paired:
                targets = np.sign(targets) * np.abs(targets) ** g
        if aug.blur > 0 and rng.random() < 0.5:
            sigma = rng.uniform(0, aug.blur)
            image = ndi.gaussian_filter(image, (0,) + (sigma,) * (image.ndim - 1), mode="reflect")
        if aug.intensity > 0:
            s = aug.intensity
            channel_shape = (image.shape[0],) + (1,) * (image.ndim - 1)
            contrast = rng.uniform(1 - s, 1 + s) * rng.uniform(1 - s / 2, 1 + s / 2, size=channel_shape)
            offset = rng.uniform(-s / 2, s / 2)
            image = (image - 0.5) * contrast + 0.5 + offset
            if paired and targets.shape[0] in (1, image.shape[0]):
                targets = (targets - 0.5) * contrast[: targets.shape[0]] + 0.5 + offset
            image = image + rng.normal(0, rng.uniform(0, s / 4), size=image.shape)
        return image, targets

    def batch_at(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of ``epoch``: drawn from its own seed, so it is the same with any number of workers."""
        rng = np.random.default_rng([self.seed, epoch, step])
        picks = rng.choice(len(self.samples), size=self.batch, p=self.probabilities)
        pairs = [self._crop(rng, self.samples[i], self._centres[i]) for i in picks]
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
