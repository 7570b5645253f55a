"""Normalization, channel handling, rescaling and tiled prediction, for 2D and 3D images.

Everything here is numpy in, numpy out, and stateless between calls (safe in a
server). Torch is only touched by :func:`predict_tiled` through the callable it is
given. Functions that handle volumes take ``spatial_ndim`` (2, the default, for
``(Y, X)`` images; 3 for ``(Z, Y, X)`` volumes); with 2 they give exactly what they
gave before volumes were supported.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidImageError, InvalidModelError, InvalidParameterError


def normalize_percentile(
    image: np.ndarray, low: float = 1.0, high: float = 99.8, eps: float = 1e-6
) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of ``image`` to 0 and 1 (float32).

    Percentiles are taken over all pixels and channels together, so the colour
    balance of an RGB image is kept. Values outside are not clipped.

    Examples
    --------
    >>> x = np.arange(101, dtype=float)
    >>> y = normalize_percentile(x, 0, 100)
    >>> float(y[0]), float(y[-1])
    (0.0, 1.0)
    """
    _check_percentiles(low, high)
    image = np.asarray(image, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(image, [low, high]))
    return (image - lo) / max(hi - lo, eps)


def _check_percentiles(low: float, high: float) -> None:
    if not 0 <= low < high <= 100:
        raise InvalidParameterError(f"need 0 <= low < high <= 100, got low={low}, high={high}")


def _check_spatial_ndim(spatial_ndim: int) -> None:
    if isinstance(spatial_ndim, bool) or spatial_ndim not in (2, 3):
        raise InvalidParameterError(f"spatial_ndim must be 2 (Y, X) or 3 (Z, Y, X), got {spatial_ndim!r}")


def _spatial_axes(spatial_ndim: int) -> str:
    return "Z, Y, X" if spatial_ndim == 3 else "Y, X"


def _check_spatial(image: np.ndarray, spatial_ndim: int) -> None:
    _check_spatial_ndim(spatial_ndim)
    if image.ndim < spatial_ndim:
        raise InvalidImageError(f"expected a {spatial_ndim}D image ({_spatial_axes(spatial_ndim)}[, C]); "
                                f"got an array of shape {image.shape}")


@dataclass(frozen=True)
class PercentileNormalizer:
    """Map the ``low`` and ``high`` percentiles of an image to 0 and 1: the normalization of training and inference.

    Percentiles are taken over all channels together (an RGB image keeps its colour
    balance), from a strided sample (:meth:`statistics`); values outside are not
    clipped. For a tiled prediction, take the statistics of the whole image once and
    :meth:`apply` them to each tile. ``to_meta``/``from_meta`` write and read the
    ``"normalization"`` entry of a model package.

    >>> norm = PercentileNormalizer(0, 100)
    >>> norm(np.array([[0, 5], [10, 20]])).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    >>> norm.to_meta()
    {'method': 'percentile', 'low': 0.0, 'high': 100.0}
    >>> PercentileNormalizer.from_meta(None)
    PercentileNormalizer(low=1.0, high=99.8)
    >>> PercentileNormalizer(50, 10)
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: need 0 <= low < high <= 100, got low=50.0, high=10.0
    """

    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InvalidParameterError(f"{name} must be a percentile (a number from 0 to 100), got {value!r}")
            object.__setattr__(self, name, float(value))
        _check_percentiles(self.low, self.high)

    def statistics(self, image: np.ndarray, *, spatial_ndim: int = 2, per_channel: bool = False):
        """The ``low`` and ``high`` percentiles of ``image`` (its min and max where they coincide).

        ``per_channel=True`` takes them for each channel of a channels-last image on its own
        and returns two float32 arrays of one value per channel (:meth:`apply` takes either):
        the normalization of models that declare their channels (cytoplasm + nucleus), whose
        stains differ in brightness.

        ``image`` is ``(Y, X[, C])``, or ``(Z, Y, X[, C])`` with ``spatial_ndim=3``. The
        percentiles come from a sample that strides every spatial axis by one step, so
        memory stays flat for huge images and the statistics barely move: for an image
        ``step = max(1, int(sqrt(Y * X / 4e6)))`` (at most ~4 Mpx); for a volume
        ``step = max(1, round((Z * Y * X / 4e6) ** (1 / 3)))`` (~4 M voxels; rounding
        keeps up to ~13 M where a stride of 2 would leave far fewer).

        >>> PercentileNormalizer(0, 50).statistics(np.arange(24).reshape(2, 3, 4), spatial_ndim=3)
        (0.0, 11.5)
        >>> sparse = np.zeros((10, 100))
        >>> sparse[0, 0] = 7
        >>> PercentileNormalizer().statistics(sparse)  # both percentiles are 0: min and max instead
        (0.0, 7.0)
        """
        sample = self.sample(image, spatial_ndim=spatial_ndim)
        if per_channel:
            if sample.ndim != spatial_ndim + 1:
                raise InvalidImageError(f"per-channel statistics need a channels-last image, got shape {image.shape}")
            pairs = [self.sample_statistics(sample[..., c]) for c in range(sample.shape[-1])]
            return tuple(np.array(values, np.float32) for values in zip(*pairs))
        return self.sample_statistics(sample)

    def sample_statistics(self, sample: np.ndarray) -> tuple[float, float]:
        """The ``low`` and ``high`` percentiles of a :meth:`sample` (its min and max where they coincide)."""
        lo, hi = np.percentile(sample, [self.low, self.high])
        if hi <= lo:
            lo, hi = float(sample.min()), float(sample.max())
        return float(lo), float(hi)

    @staticmethod
    def sample_step(shape: tuple[int, ...], *, spatial_ndim: int = 2) -> int:
        """The stride :meth:`sample` takes along every spatial axis of an image of ``shape``.

        >>> PercentileNormalizer.sample_step((16000, 16000))
        8
        """
        spatial = shape[:spatial_ndim]
        if spatial_ndim == 2:
            return max(1, int(math.sqrt(spatial[0] * spatial[1] / 4e6)))
        return max(1, int(round((math.prod(spatial) / 4e6) ** (1 / 3))))

    @staticmethod
    def sample(image: np.ndarray, *, spatial_ndim: int = 2) -> np.ndarray:
        """The strided float32 sample :meth:`statistics` takes its percentiles from."""
        image = np.asarray(image)
        _check_spatial(image, spatial_ndim)
        step = PercentileNormalizer.sample_step(image.shape, spatial_ndim=spatial_ndim)
        sample = image[(slice(None, None, step),) * spatial_ndim].astype(np.float32)
        if sample.size == 0:
            raise InvalidImageError(f"image is empty (shape {image.shape})")
        return sample

    def apply(self, image: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """``(image - lo) / (hi - lo)`` in float32, for statistics ``lo``, ``hi`` from :meth:`statistics`.

        >>> PercentileNormalizer().apply(np.array([2, 4, 10], np.uint8), 2.0, 6.0).tolist()
        [0.0, 0.5, 2.0]
        >>> PercentileNormalizer().apply(np.array([[2, 4], [6, 4]]), np.array([2, 0]), np.array([6, 8])).tolist()
        [[0.0, 0.5], [1.0, 0.5]]
        """
        if np.ndim(lo) or np.ndim(hi):  # per channel, along the last axis
            lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
            return (np.asarray(image).astype(np.float32) - lo) * (1.0 / np.maximum(hi - lo, np.float32(1e-6)))
        lo, hi = float(lo), float(hi)
        return (np.asarray(image).astype(np.float32) - lo) * (1.0 / max(hi - lo, 1e-6))

    def __call__(self, image: np.ndarray, *, spatial_ndim: int = 2) -> np.ndarray:
        """Normalize ``image`` with its own statistics."""
        lo, hi = self.statistics(image, spatial_ndim=spatial_ndim)
        return self.apply(image, lo, hi)

    def to_meta(self) -> dict:
        """The ``"normalization"`` entry of a model package's metadata."""
        return {"method": "percentile", "low": self.low, "high": self.high}

    @classmethod
    def from_meta(cls, meta: dict | None) -> PercentileNormalizer:
        """The normalizer a ``"normalization"`` entry describes; None or missing values give the defaults.

        >>> PercentileNormalizer.from_meta({"method": "percentile", "low": 2, "high": 98})
        PercentileNormalizer(low=2.0, high=98.0)
        >>> PercentileNormalizer.from_meta({"method": "zscore"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        cytolens.errors.InvalidModelError: unknown normalization method 'zscore' in the model's metadata: ...
        """
        if meta is None:
            return cls()
        if not isinstance(meta, dict):
            raise InvalidModelError(f"the model's normalization metadata must be a mapping like {cls().to_meta()}, "
                                    f"got {meta!r}")
        method = meta.get("method", "percentile")
        if method != "percentile":
            raise InvalidModelError(f"unknown normalization method {method!r} in the model's metadata: this version "
                                    "of cytolens knows only 'percentile' (the model may need a newer cytolens)")
        try:
            return cls(float(meta.get("low", cls.low)), float(meta.get("high", cls.high)))
        except (TypeError, ValueError) as exc:
            raise InvalidModelError(f"the model's normalization metadata {meta!r} is invalid: {exc}") from None


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an image as ``(Y, X, 3)``: grayscale is repeated, alpha is dropped.

    Accepts ``(Y, X)``, ``(Y, X, 1)``, ``(Y, X, 3)`` and ``(Y, X, 4)``.
    """
    return to_channels(image, 3)


def to_channels(image: np.ndarray, channels: int, *, spatial_ndim: int = 2) -> np.ndarray:
    """Return an image as ``(Y, X, channels)`` (``(Z, Y, X, channels)`` with ``spatial_ndim=3``).

    Grayscale (no channel axis, or one channel) is repeated, an image with
    ``channels`` channels passes through, and with ``channels=3`` the alpha channel of
    an RGBA image is dropped; anything else is an error.

    >>> to_channels(np.zeros((4, 5)), 2).shape
    (4, 5, 2)
    >>> to_channels(np.zeros((2, 4, 5, 4)), 3, spatial_ndim=3).shape
    (2, 4, 5, 3)
    >>> to_channels(np.zeros((4, 5, 2)), 3)
    Traceback (most recent call last):
    cytolens.errors.InvalidImageError: expected a 2D image (Y, X) or (Y, X, C) with C in 1, 3, 4; got shape (4, 5, 2)
    """
    _check_spatial_ndim(spatial_ndim)
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise InvalidParameterError(f"channels must be a whole number >= 1, got {channels!r}")
    image = np.asarray(image)
    if image.ndim == spatial_ndim:
        return np.repeat(image[..., None], channels, axis=spatial_ndim)
    if image.ndim == spatial_ndim + 1:
        have = image.shape[spatial_ndim]
        if have == channels or (channels == 3 and have == 4):
            return image[..., :channels]
        if have == 1:
            return np.repeat(image, channels, axis=spatial_ndim)
    accepted = ", ".join(str(c) for c in sorted({1, channels} | ({4} if channels == 3 else set())))
    axes = _spatial_axes(spatial_ndim)
    raise InvalidImageError(f"expected a {spatial_ndim}D image ({axes}) or ({axes}, C) with C in {accepted}; "
                            f"got shape {image.shape}")


_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: a last axis longer than this is taken for X, not for channels
MAX_CHANNELS = 16


def select_channel(image: np.ndarray, channel: int) -> np.ndarray:
    """Plane ``channel`` of a ``(Y, X, C)`` image, e.g. the nuclear stain of a multichannel image.

    >>> select_channel(np.zeros((4, 5, 2)), 1).shape
    (4, 5)
    >>> select_channel(np.zeros((4, 5, 2)), 2)
    Traceback (most recent call last):
    cytolens.errors.InvalidImageError: channel 2 does not exist: the image has 2 channels (0 to 1)
    """
    image = np.asarray(image)
    if isinstance(channel, bool) or not isinstance(channel, numbers.Integral):
        raise InvalidParameterError(f"channel must be a whole number (0 = the first channel), got {channel!r}")
    if image.ndim != 3 or image.shape[2] > MAX_CHANNELS:
        raise InvalidImageError(f"channel={channel} needs a (Y, X, C) image with channels last (C <= {MAX_CHANNELS}); "
                                f"got shape {image.shape} (channels first: numpy.moveaxis(image, 0, -1))")
    if not -image.shape[2] <= channel < image.shape[2]:
        raise InvalidImageError(f"channel {channel} does not exist: the image has {image.shape[2]} channels "
                                f"(0 to {image.shape[2] - 1})")
    return image[..., channel]


def check_image(image: np.ndarray, *, allow_constant: bool = False) -> np.ndarray:
    """Validate an image for segmentation: at least 2D, real, finite, not empty, and not constant unless
    ``allow_constant`` (segmenting a constant image gives no objects, with a warning)."""
    image = np.asarray(image)
    if image.ndim < 2:
        raise InvalidImageError(f"expected a 2D image (Y, X) or (Y, X, C); got an array of shape {image.shape}")
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise InvalidImageError(f"image is empty (shape {image.shape})")
    if np.issubdtype(image.dtype, np.complexfloating):
        raise InvalidImageError(f"image is complex ({image.dtype}); give its magnitude or real part "
                                "(numpy.abs(image) or image.real)")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise InvalidImageError(f"image has a non-numeric dtype {image.dtype}")
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise InvalidImageError("image contains NaN or infinite values; replace them first")
        # models compute in float32, where these values become inf
        if image.dtype.itemsize > 4 and np.abs(image).max() > _FLOAT32_MAX:
            raise InvalidImageError(f"image values reach {np.abs(image).max():.3g}, beyond float32's range "
                                    f"({_FLOAT32_MAX:.3g}); rescale the image first")
    if not allow_constant and is_constant(image):
        raise InvalidImageError("image is constant (all pixels equal): there is nothing to segment")
    return image


def is_constant(image: np.ndarray) -> bool:
    """True when every pixel of a (non-empty) image holds the same value: an empty well, a dark frame.

    >>> is_constant(np.full((4, 4), 7)), is_constant(np.eye(4))
    (True, False)
    """
    return bool(image.min() == image.max())


def _per_axis(value, spatial_ndim: int, name: str) -> tuple:
    """``value`` for every spatial axis: a single value repeated, or a sequence of one per axis."""
    if np.ndim(value) == 0:
        return (value,) * spatial_ndim
    values = tuple(value)
    if len(values) != spatial_ndim:
        raise InvalidParameterError(f"{name} takes one value or {spatial_ndim} (one per spatial axis), got {value!r}")
    return values


def rescale(image: np.ndarray, scale: float | tuple[float, ...], order: int = 1, *,
            spatial_ndim: int = 2) -> np.ndarray:
    """Resize the spatial axes of a ``(Y, X[, C])`` image (``(Z, Y, X[, C])`` with ``spatial_ndim=3``) by ``scale``.

    ``scale`` is one factor for every spatial axis, or one per axis (e.g. ``(1, 0.5, 0.5)``
    for a volume whose planes are sampled finer than its Z steps). ``order=0``
    (nearest) for label images, ``order=1`` (linear) for intensities.

    >>> rescale(np.zeros((4, 6, 3)), 2.0).shape
    (8, 12, 3)
    >>> rescale(np.zeros((5, 8, 8)), (1, 0.5, 0.5), spatial_ndim=3).shape
    (5, 4, 4)
    """
    _check_spatial(np.asarray(image), spatial_ndim)
    scales = _per_axis(scale, spatial_ndim, "scale")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or s <= 0 or not np.isfinite(s):
            raise InvalidParameterError(f"scale must be a positive number, got {scale}")
    if all(abs(s - 1.0) < 1e-6 for s in scales):
        return image
    zoom = scales + (1,) * (image.ndim - spatial_ndim)
    return ndi.zoom(image, zoom, order=order, mode="reflect" if order else "nearest", grid_mode=True)


def resize_to(image: np.ndarray, shape: tuple[int, ...], order: int = 1) -> np.ndarray:
    """Resize the last ``len(shape)`` axes of an array to exactly ``shape``.

    ``(C, Y, X)`` or ``(Y, X)`` data with a 2-tuple, ``(C, Z, Y, X)`` or ``(Z, Y, X)``
    with a 3-tuple; the leading axes are kept.

    >>> resize_to(np.zeros((2, 3, 10, 10)), (6, 5, 20)).shape
    (2, 6, 5, 20)
    """
    shape = tuple(shape)
    if not 1 <= len(shape) <= image.ndim:
        raise InvalidParameterError(f"shape {shape} does not fit an array of shape {image.shape}")
    spatial = image.shape[-len(shape):]
    if tuple(spatial) == shape:
        return image
    zoom = (1,) * (image.ndim - len(shape)) + tuple(s / n for s, n in zip(shape, spatial))
    out = ndi.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)
    return out[(Ellipsis, *(slice(None, s) for s in shape))]


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def fitted_tile(length: int, tile_size: int, overlap: int, size_divisor: int) -> int:
    """The smallest tile side that covers ``length`` with as few tiles as ``tile_size`` needs.

    A 520 px side takes two 512 px tiles that mostly overlap; two 304 px tiles cover it
    too, for 40 % less network work. The side stays a multiple of ``size_divisor``.

    >>> fitted_tile(520, 512, 64, 16), fitted_tile(2048, 512, 64, 16), fitted_tile(300, 512, 64, 16)
    (304, 464, 304)
    """
    covering = -(-length // size_divisor) * size_divisor
    if covering <= tile_size:
        return covering
    count = -(-(length - overlap) // (tile_size - overlap))
    fitted = -(-(length + (count - 1) * overlap) // count)
    fitted = -(-fitted // size_divisor) * size_divisor
    return fitted if 2 * overlap < fitted <= tile_size else tile_size


def _ramp(n: int, overlap: int) -> np.ndarray:
    """1 inside, rising linearly over ``overlap`` pixels at both ends."""
    w = np.ones(n, dtype=np.float32)
    k = min(overlap, n // 2)
    if k > 0:
        edge = (np.arange(k, dtype=np.float32) + 0.5) / k
        w[:k] = edge
        w[n - k :] = edge[::-1]
    return w


def predict_tiled(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    out_channels: int,
    tile_size: int | tuple[int, ...] = 512,
    overlap: int | tuple[int, ...] = 64,
    size_divisor: int = 16,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    spatial_ndim: int = 2,
) -> np.ndarray:
    """Apply ``predict`` to overlapping tiles of an image and blend the results.

    ``image`` is ``(C, Y, X)``, or any array whose tiles ``prepare`` turns into
    ``(C, y, x)`` float32 (e.g. a ``(Y, X)`` uint8 image, normalized per tile, so
    a huge image is never converted as a whole). Tiles cut from ``image[..., y, x]``
    when ``prepare`` is None, else ``image[y, x, ...]``. ``predict`` maps a
    ``(C, y, x)`` tile whose sides are multiples of ``size_divisor`` to
    ``(out_channels, y, x)``. Overlaps are averaged with linear ramps, so seams
    do not show; memory is one tile plus the ``(out_channels, Y, X)`` output.
    Tiles are shrunk to the smallest side that needs no more of them (:func:`fitted_tile`).

    With ``spatial_ndim=3`` the same holds for volumes: ``(C, Z, Y, X)`` (or
    ``(Z, Y, X, ...)`` with ``prepare``), ``(C, z, y, x)`` tiles, an
    ``(out_channels, Z, Y, X)`` output, and blending weights that are the product of
    the ramps of the three axes. ``tile_size`` and ``overlap`` are one value for every
    spatial axis or one per axis (e.g. ``tile_size=(32, 256, 256)``).

    Examples
    --------
    >>> img = np.random.default_rng(0).random((1, 100, 130)).astype(np.float32)
    >>> out = predict_tiled(lambda t: t * 2, img, 1, tile_size=48, overlap=16)
    >>> bool(np.allclose(out, img * 2, atol=1e-5))
    True
    >>> vol = np.random.default_rng(0).random((1, 20, 40, 50)).astype(np.float32)
    >>> out = predict_tiled(lambda t: t * 2, vol, 1, tile_size=(16, 32, 32), overlap=4, spatial_ndim=3)
    >>> bool(np.allclose(out, vol * 2, atol=1e-5))
    True
    """
    _check_spatial(np.asarray(image), spatial_ndim)
    tiles = _per_axis(tile_size, spatial_ndim, "tile_size")
    overlaps = _per_axis(overlap, spatial_ndim, "overlap")
    for tile, lap in zip(tiles, overlaps):
        if tile % size_divisor or tile <= 2 * lap:
            raise InvalidParameterError(
                f"tile_size ({tile}) must be a multiple of {size_divisor} and > 2*overlap ({lap})"
            )
    channels_first = prepare is None
    size = image.shape[-spatial_ndim:] if channels_first else image.shape[:spatial_ndim]
    if prepare is None:
        def prepare(tile):
            return np.asarray(tile, dtype=np.float32)

    fitted = tuple(fitted_tile(n, tile, lap, size_divisor) for n, tile, lap in zip(size, tiles, overlaps))
    output = np.zeros((out_channels, *size), dtype=np.float32)
    weights = np.zeros(size, dtype=np.float32)
    starts = (_tile_starts(n, tile, tile - lap) for n, tile, lap in zip(size, fitted, overlaps))
    for origin in itertools.product(*starts):
        ends = tuple(min(start + tile, n) for start, tile, n in zip(origin, fitted, size))
        lengths = tuple(end - start for start, end in zip(origin, ends))
        window_at = tuple(slice(start, end) for start, end in zip(origin, ends))
        tile = prepare(image[(Ellipsis, *window_at)] if channels_first else image[window_at])
        pads = tuple(tile_side - length for tile_side, length in zip(fitted, lengths))
        if any(pads):
            mode = "reflect" if min(tile.shape[1:]) > max(pads) else "symmetric"
            tile = np.pad(tile, ((0, 0), *((0, pad) for pad in pads)), mode=mode)
        result = predict(tile)[(slice(None), *(slice(None, length) for length in lengths))]
        # ramps only where a neighbouring tile overlaps, so image borders keep full weight
        ramps = [_ramp(tile_side, lap)[:length] if n > tile_side else np.ones(length, np.float32)
                 for n, tile_side, lap, length in zip(size, fitted, overlaps, lengths)]
        window = functools.reduce(np.multiply.outer, ramps)
        output[(slice(None), *window_at)] += result * window
        weights[window_at] += window
    output /= np.maximum(weights, 1e-8)
    return output
