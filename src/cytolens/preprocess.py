"""Normalization, channel handling, rescaling and tiled prediction.

Everything here is numpy in, numpy out, and stateless between calls (safe in a
server). Torch is only touched by :func:`predict_tiled` through the callable it is
given.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidImageError, InvalidParameterError


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
    if not 0 <= low < high <= 100:
        raise InvalidParameterError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    image = np.asarray(image, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(image, [low, high]))
    return (image - lo) / max(hi - lo, eps)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an image as ``(Y, X, 3)``: grayscale is repeated, alpha is dropped.

    Accepts ``(Y, X)``, ``(Y, X, 1)``, ``(Y, X, 3)`` and ``(Y, X, 4)``.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        if image.shape[2] == 1:
            return np.repeat(image, 3, axis=2)
        return image[..., :3]
    raise InvalidImageError(
        f"expected a 2D image (Y, X) or (Y, X, C) with C in 1, 3, 4; got shape {image.shape}"
    )


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


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an image for segmentation: at least 2D, real, finite, not empty, not constant."""
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
    if image.min() == image.max():
        raise InvalidImageError("image is constant (all pixels equal): there is nothing to segment")
    return image


def rescale(image: np.ndarray, scale: float, order: int = 1) -> np.ndarray:
    """Resize the two spatial axes of a ``(Y, X[, C])`` image by ``scale``.

    ``order=0`` (nearest) for label images, ``order=1`` (bilinear) for intensities.
    """
    if scale <= 0 or not np.isfinite(scale):
        raise InvalidParameterError(f"scale must be a positive number, got {scale}")
    if abs(scale - 1.0) < 1e-6:
        return image
    zoom = (scale, scale) + (1,) * (image.ndim - 2)
    return ndi.zoom(image, zoom, order=order, mode="reflect" if order else "nearest", grid_mode=True)


def resize_to(image: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize the spatial axes of ``(C, Y, X)`` or ``(Y, X)`` data to exactly ``shape``."""
    spatial = image.shape[-2:]
    if tuple(spatial) == tuple(shape):
        return image
    zoom = (1,) * (image.ndim - 2) + (shape[0] / spatial[0], shape[1] / spatial[1])
    out = ndi.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)
    return out[..., : shape[0], : shape[1]]


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
    tile_size: int = 512,
    overlap: int = 64,
    size_divisor: int = 16,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
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

    Examples
    --------
    >>> img = np.random.default_rng(0).random((1, 100, 130)).astype(np.float32)
    >>> out = predict_tiled(lambda t: t * 2, img, 1, tile_size=48, overlap=16)
    >>> bool(np.allclose(out, img * 2, atol=1e-5))
    True
    """
    if tile_size % size_divisor or tile_size <= 2 * overlap:
        raise InvalidParameterError(
            f"tile_size ({tile_size}) must be a multiple of {size_divisor} and > 2*overlap ({overlap})"
        )
    channels_first = prepare is None
    height, width = image.shape[-2:] if channels_first else image.shape[:2]
    if prepare is None:
        def prepare(tile):
            return np.asarray(tile, dtype=np.float32)

    tile_y, tile_x = (fitted_tile(n, tile_size, overlap, size_divisor) for n in (height, width))
    output = np.zeros((out_channels, height, width), dtype=np.float32)
    weights = np.zeros((height, width), dtype=np.float32)
    for y0 in _tile_starts(height, tile_y, tile_y - overlap):
        for x0 in _tile_starts(width, tile_x, tile_x - overlap):
            y1, x1 = min(y0 + tile_y, height), min(x0 + tile_x, width)
            region = image[..., y0:y1, x0:x1] if channels_first else image[y0:y1, x0:x1]
            tile = prepare(region)
            pad_y, pad_x = tile_y - (y1 - y0), tile_x - (x1 - x0)
            if pad_y or pad_x:
                mode = "reflect" if min(tile.shape[1:]) > max(pad_y, pad_x) else "symmetric"
                tile = np.pad(tile, ((0, 0), (0, pad_y), (0, pad_x)), mode=mode)
            result = predict(tile)[:, : y1 - y0, : x1 - x0]
            # ramps only where a neighbouring tile overlaps, so image borders keep full weight
            wy = _ramp(tile_y, overlap)[: y1 - y0] if height > tile_y else np.ones(y1 - y0, np.float32)
            wx = _ramp(tile_x, overlap)[: x1 - x0] if width > tile_x else np.ones(x1 - x0, np.float32)
            window = np.outer(wy, wx)
            output[:, y0:y1, x0:x1] += result * window
            weights[y0:y1, x0:x1] += window
    output /= np.maximum(weights, 1e-8)
    return output
