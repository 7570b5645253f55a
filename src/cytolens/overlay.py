"""Pictures for checking a segmentation by eye: object outlines drawn over the image.

``cytolens segment --overlay`` writes one per image (``<stem>_overlay.png``), as Cellpose's
``--save_png`` does; from Python:

>>> import numpy as np
>>> image = np.zeros((20, 20), np.uint16); image[4:13, 4:13] = 500
>>> labels = np.zeros((20, 20), np.uint16); labels[5:12, 5:12] = 1
>>> picture = outline_overlay(image, labels)
>>> picture.shape, picture.dtype.name
((20, 20, 3), 'uint8')
>>> bool((picture[5, 5:12] != picture[8, 8]).any(axis=-1).all())  # the outline is drawn, not the inside
True
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError


def display_rgb(image: np.ndarray, channel: int | None = None) -> np.ndarray:
    """An image as ``(Y, X, 3)`` uint8 for display, stretched between its 1st and 99.8th percentiles.

    Gray images stay gray and RGB(A) images keep their colours (alpha dropped, one stretch for
    all channels); other channel counts show ``channel`` when given, else the channels' mean.

    >>> display_rgb(np.array([[0, 10], [20, 30]])).shape
    (2, 2, 3)
    """
    from cytolens.preprocess import normalize_percentile, select_channel, to_rgb

    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise InvalidImageError(f"expected a 2D image (Y, X) or (Y, X, C) to draw on; got shape {image.shape}")
    if image.ndim == 3 and channel is not None:
        image = select_channel(image, channel)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]  # alpha takes no part in the stretch
    if image.ndim == 3 and image.shape[2] not in (1, 3):
        image = image.mean(axis=2)
    # stretched before gray is repeated to RGB: percentiles of repeated pixels interpolate differently
    pixels = normalize_percentile(np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 1.0, 99.8)
    return to_rgb((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def outline_colours(count: int) -> np.ndarray:
    """``(count + 1, 3)`` uint8 colours for labels 0..count: fully saturated hues from orange through
    yellow and green to cyan (none of the reds, blues and purples of stained nuclei), a golden-ratio step
    apart so that labels in a row differ; they stand out on dark backgrounds and on stained nuclei.

    >>> outline_colours(2).tolist()
    [[255, 122, 0], [0, 255, 10], [236, 255, 0]]
    """
    from skimage.color import hsv2rgb

    hues = 0.08 + (np.arange(count + 1) * 0.6180339887) % 1.0 * 0.42
    full = np.ones(count + 1)
    return np.round(hsv2rgb(np.stack([hues, full, full], axis=-1)[None])[0] * 255).astype(np.uint8)


def outline_overlay(image: np.ndarray, labels: np.ndarray, channel: int | None = None) -> np.ndarray:
    """``(Y, X, 3)`` uint8: ``image`` (see :func:`display_rgb`) with each object's inner outline in a colour of its own."""
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    picture = display_rgb(image, channel)
    if labels.shape != picture.shape[:2]:
        raise InvalidParameterError(f"labels of shape {labels.shape} do not fit an image of {picture.shape[:2]}")
    edges = find_boundaries(labels, mode="inner")
    picture[edges] = outline_colours(int(labels.max()))[labels[edges]]
    return picture


def write_overlay(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, channel: int | None = None,
                  overwrite: bool = False) -> Path:
    """Write :func:`outline_overlay` as a PNG (through a temporary file; an existing file only with ``overwrite``)."""
    import imageio.v3 as iio

    from cytolens.io.images import atomic_write

    picture = outline_overlay(image, labels, channel)
    path = Path(path)
    atomic_write(path, lambda tmp: iio.imwrite(tmp, picture, extension=".png"), overwrite)
    return path


__all__ = ["display_rgb", "outline_colours", "outline_overlay", "write_overlay"]
