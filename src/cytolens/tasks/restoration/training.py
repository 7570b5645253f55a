"""Training pieces of the restoration task: samples, blind-spot masking (Noise2Void/N2V2), losses, validation.

Images are read as ``(C, Y, X)`` float32 (:func:`as_cyx`): a 2D image is one channel, a
z-stack of transmitted-light planes or a multichannel image gives its planes or channels
as the network's input channels ("planes as channels"). Each source image is normalized
with its own percentiles (CARE); targets are scaled with the source's statistics
(``target_normalization: source``, denoising) or with their own per channel (``own``,
label-free prediction of another modality).

Noise2Void (Krull et al. 2019) trains on noisy images alone: a few pixels of each crop
(one per grid cell) are hidden, replaced by the median of their window with every hidden
pixel left out (N2V2, Höck et al. 2022), and the loss is taken on the hidden pixels only.
So the network input is a function of the visible pixels alone: a hidden pixel's value
reaches the loss only as its target (:func:`blind_spot_inputs`, checked in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.preprocess import PercentileNormalizer

#: a 3D array whose last axis is at most this long (and shorter than its first) is read as (Y, X, C)
MAX_CHANNELS_LAST = 16


class ShapeMismatchError(InvalidParameterError):
    """A source image and its target differ in size, or an image does not fit the model's channels."""


def as_cyx(image: np.ndarray, channels: int | None = None, where: str = "image") -> np.ndarray:
    """``image`` as ``(C, Y, X)`` float32: ``(Y, X)`` → one channel; ``(C|Z, Y, X)`` or ``(Y, X, C)`` as they are.

    With ``channels`` (what a model reads), the axis of that length is the channel axis and
    any other count is a one-line error naming both.

    >>> as_cyx(np.zeros((5, 6))).shape, as_cyx(np.zeros((13, 80, 90))).shape, as_cyx(np.zeros((80, 90, 3))).shape
    ((1, 5, 6), (13, 80, 90), (3, 80, 90))
    >>> as_cyx(np.zeros((4, 8, 9)), channels=13, where="stack.tif")
    Traceback (most recent call last):
    cytolens.tasks.restoration.training.ShapeMismatchError: stack.tif has 4 planes/channels (shape (4, 8, 9)) but \
the model reads 13: give a (13, Y, X) stack (planes or channels first)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        cyx = image[None]
    elif image.ndim == 3:
        if channels is not None:
            if image.shape[0] == channels:
                cyx = image
            elif image.shape[-1] == channels:
                cyx = np.moveaxis(image, -1, 0)
            else:
                count = min(image.shape[0], image.shape[-1])
                raise ShapeMismatchError(f"{where} has {count} planes/channels (shape {image.shape}) but the model "
                                         f"reads {channels}: give a ({channels}, Y, X) stack (planes or channels "
                                         "first)")
        elif image.shape[-1] <= MAX_CHANNELS_LAST and image.shape[-1] < image.shape[0]:
            cyx = np.moveaxis(image, -1, 0)
        else:
            cyx = image
    else:
        raise InvalidImageError(f"{where} has shape {image.shape}; restoration takes a 2D image (Y, X) or a stack of "
                                "planes/channels (C, Y, X)")
    if channels is not None and cyx.shape[0] != channels:
        raise ShapeMismatchError(f"{where} has {cyx.shape[0]} plane/channel (shape {image.shape}) but the model "
                                 f"reads {channels}: give a ({channels}, Y, X) stack")
    return np.ascontiguousarray(cyx, dtype=np.float32)


def check_size(cyx: np.ndarray, min_side: int, where: str = "image") -> None:
    """A one-line error when a spatial side of ``(C, Y, X)`` is below ``min_side``."""
    if min(cyx.shape[1:]) < min_side:
        raise InvalidImageError(f"{where} is {cyx.shape[1]}x{cyx.shape[2]} px, too small for this network: it needs "
                                f"at least {min_side} px a side")


def source_statistics(cyx: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The source normalization's percentiles, over all planes/channels together."""
    return PercentileNormalizer(*percentiles).statistics(np.moveaxis(cyx, 0, -1))


def normalize_pair(source: np.ndarray, target: np.ndarray | None, config) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalized ``(C, Y, X)`` source and ``(K, Y, X)`` target as the config says (see the module docstring)."""
    normalizer = PercentileNormalizer(*config.normalization)
    lo, hi = source_statistics(source, config.normalization)
    image = normalizer.apply(source, lo, hi)
    if target is None:
        return image, None
    if config.target_normalization == "source":
        return image, normalizer.apply(target, lo, hi)
    own = PercentileNormalizer(*config.target_percentiles)
    return image, np.stack([own(channel) for channel in target]).astype(np.float32)


@dataclass
class RestorationSample:
    image: np.ndarray  # (C, Y, X) normalized source
    targets: np.ndarray  # (K, Y, X) normalized target; for noise2void the image itself
    stratum: str = "all"


# --------------------------------------------------------------------------- blind spots (Noise2Void, N2V2)


def blind_spot_mask(shape: tuple[int, int, int], fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``(N, 1, Y, X)`` bool: one random pixel per grid cell of side ``round(1 / sqrt(fraction))`` (N2V's
    stratified sampling), so hidden pixels are spread over the crop.

    >>> mask = blind_spot_mask((2, 64, 64), 0.02, torch.Generator().manual_seed(0))
    >>> # a 7-pixel grid: 10 x 10 cells; the 9 x 9 whole ones always hold their pixel, the cut ones sometimes
    >>> tuple(mask.shape), 81 <= int(mask[0].sum()) <= 100
    ((2, 1, 64, 64), True)
    """
    n, height, width = shape
    cell = max(2, round(fraction**-0.5))
    rows, cols = -(-height // cell), -(-width // cell)
    ys = torch.arange(rows)[None, :, None] * cell + torch.randint(0, cell, (n, rows, cols), generator=generator)
    xs = torch.arange(cols)[None, None, :] * cell + torch.randint(0, cell, (n, rows, cols), generator=generator)
    batch = torch.arange(n)[:, None, None].expand(n, rows, cols)
    inside = (ys < height) & (xs < width)
    mask = torch.zeros((n, 1, height, width), dtype=torch.bool)
    mask[batch[inside], 0, ys[inside], xs[inside]] = True
    return mask


def blind_spot_inputs(inputs: torch.Tensor, mask: torch.Tensor, window: int = 5) -> torch.Tensor:
    """``inputs`` ``(N, C, Y, X)`` with each masked pixel replaced by the median of its ``window`` x ``window``
    neighbourhood, every masked pixel left out of every median (N2V2's median replacement).

    The result depends on the unmasked pixels only.

    >>> x = torch.arange(25.0).reshape(1, 1, 5, 5)
    >>> mask = torch.zeros(1, 1, 5, 5, dtype=torch.bool); mask[0, 0, 2, 2] = True
    >>> float(blind_spot_inputs(x, mask, 3)[0, 0, 2, 2])  # median of 6, 7, 8, 11, 13, 16, 17, 18
    11.0
    """
    r = window // 2
    hidden = inputs.masked_fill(mask, float("nan"))
    padded = F.pad(hidden, (r, r, r, r), mode="reflect")
    windows = padded.unfold(2, window, 1).unfold(3, window, 1)  # (N, C, Y, X, w, w)
    medians = torch.nanmedian(windows.flatten(-2), dim=-1).values
    medians = torch.nan_to_num(medians, nan=0.0)
    return torch.where(mask, medians, inputs)


class BlindSpotSampler:
    """Noise2Void batches: the crops of ``crops`` (a :class:`~cytolens.train.sampler.CropSampler` of the noisy
    images), their blind spots replaced; targets ``(N, 2C, Y, X)``: the crop's values, then the mask."""

    def __init__(self, crops, fraction: float, window: int, seed: int = 0) -> None:
        self.crops, self.fraction, self.window, self.seed = crops, fraction, window, seed

    def masked(self, inputs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mask = blind_spot_mask((inputs.shape[0], *inputs.shape[2:]), self.fraction, generator)
        targets = torch.cat([inputs, mask.expand_as(inputs).to(inputs.dtype)], dim=1)
        return blind_spot_inputs(inputs, mask, self.window), targets

    def __call__(self, epoch: int):
        for step, (inputs, _) in enumerate(self.crops(epoch)):
            generator = torch.Generator().manual_seed(hash((self.seed, epoch, step)) % 2**63)
            yield self.masked(inputs, generator)


def blind_spot_loss(kind: str):
    """The loss on the hidden pixels only (targets: values, then the mask, as :class:`BlindSpotSampler` gives)."""
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        channels = outputs.shape[1]
        values, mask = targets[:, :channels], targets[:, channels:]
        error = (outputs - values).abs() if kind == "l1" else (outputs - values) ** 2
        return (error * mask).sum() / mask.sum().clamp(min=1)
    return loss


def pixel_loss(kind: str):
    """L1 (CARE's mean absolute error) or L2 between outputs and targets."""
    return F.l1_loss if kind == "l1" else F.mse_loss


def largest_crop(samples: Sequence[RestorationSample], crop_size: int, divisor: int, min_side: int) -> int:
    """``crop_size``, or the largest multiple of ``divisor`` that fits in every sample (no mirrored padding,
    which would show a hidden pixel's mirror image to the network)."""
    smallest = min(min(s.image.shape[1:]) for s in samples)
    crop = min(crop_size, smallest // divisor * divisor)
    if crop < min_side:
        raise InvalidImageError(f"the training images are too small: the smallest training region is {smallest} px "
                                f"a side, noise2void needs at least {min_side}")
    return crop


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else 0.0
