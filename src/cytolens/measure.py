"""Per-object tables: morphology and per-channel intensity of a label image.

A thin, validated layer over :func:`skimage.measure.regionprops_table` that gives
every table the same, flat column names whatever the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import regionprops_table
from skimage.segmentation import relabel_sequential

from cytolens.errors import InvalidImageError, InvalidParameterError

__all__ = ["MORPHOLOGY_COLUMNS", "INTENSITY_STATISTICS", "measure"]

MORPHOLOGY_COLUMNS = (
    "label", "centroid_y", "centroid_x", "area", "perimeter", "eccentricity", "solidity",
    "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x",
)
INTENSITY_STATISTICS = ("mean_intensity", "min_intensity", "max_intensity", "total_intensity")

# our column name -> regionprops_table key
_MORPHOLOGY_KEYS = {
    "label": "label", "centroid_y": "centroid-0", "centroid_x": "centroid-1", "area": "area",
    "perimeter": "perimeter", "eccentricity": "eccentricity", "solidity": "solidity",
    "bbox_min_y": "bbox-0", "bbox_min_x": "bbox-1", "bbox_max_y": "bbox-2", "bbox_max_x": "bbox-3",
}
_INTENSITY_KEYS = {"mean_intensity": "intensity_mean", "min_intensity": "intensity_min",
                   "max_intensity": "intensity_max"}
#: label ids above this are renumbered before measuring or tracking: arrays indexed by id would not fit in memory
DENSE_ID_LIMIT = 1 << 20
_INTEGER_COLUMNS = ("label", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x")


def _validate_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InvalidImageError(
            f"labels must be a 2D (Y, X) label image, got shape {labels.shape}; "
            "measure each frame or plane of a stack separately")
    if labels.size == 0:
        raise InvalidImageError(f"label image is empty (shape {labels.shape})")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidImageError(
            f"labels must be integers (0 = background, one positive id per object), got dtype {labels.dtype}; "
            "for a boolean mask use skimage.measure.label(mask) first")
    if labels.size and labels.min() < 0:
        raise InvalidImageError(
            f"labels must be non-negative (0 = background), found {labels.min()}; relabel the objects")
    return labels


def _validate_image(image, labels_shape: tuple[int, ...]) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InvalidImageError(f"image must hold real numbers, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or image.shape[:2] != labels_shape:
        raise InvalidImageError(
            f"image shape {image.shape} does not match labels shape {labels_shape}: the image must be "
            f"(Y, X) or (Y, X, C) with channels last and the same Y, X as the labels")
    return image


def _validate_spacing(spacing) -> tuple[float, float] | None:
    if spacing is None:
        return None
    values = (spacing, spacing) if np.isscalar(spacing) else tuple(spacing)
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"spacing must be a number or (dy, dx) numbers, got {spacing!r}") from None
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidParameterError(f"spacing must be one or two positive numbers (dy, dx), got {spacing!r}")
    return values


def _intensity_columns(n_channels: int | None) -> list[tuple[str, int | None]]:
    """``(column name, channel)`` for each intensity column, in table order."""
    if n_channels is None:
        return [(name, None) for name in INTENSITY_STATISTICS]
    return [(f"{name}_c{c}", c) for c in range(n_channels) for name in INTENSITY_STATISTICS]


def measure(labels: np.ndarray, image: np.ndarray | None = None,
            spacing: float | Sequence[float] | None = None) -> pd.DataFrame:
    """Measure every object of a label image: shape, position and intensity.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Label image, 0 = background, each object one positive id.
    image : ndarray, shape (Y, X) or (Y, X, C), optional
        Intensity image with the same Y, X as ``labels``, channels last.
    spacing : float or (float, float), optional
        Pixel size ``(dy, dx)`` (one number for square pixels). When given,
        centroids, area and perimeter are in these physical units; bounding boxes
        stay in pixel indices. scikit-image measures perimeters only for square
        pixels, so ``perimeter`` is NaN when ``dy != dx``.

    Returns
    -------
    pandas.DataFrame
        One row per object, sorted by label, with columns ``label, centroid_y,
        centroid_x, area, perimeter, eccentricity, solidity, bbox_min_y,
        bbox_min_x, bbox_max_y, bbox_max_x`` (``bbox_max_*`` exclusive, as in
        Python slices), then when ``image`` is given ``mean_intensity,
        min_intensity, max_intensity, total_intensity`` (sum of the pixel values)
        for a (Y, X) image, or the same with suffixes ``_c0``, ``_c1``, ... per
        channel of a (Y, X, C) image. A label image without objects gives an empty
        table with the same columns.

    Raises
    ------
    InvalidImageError
        ``labels`` is not a 2D non-negative integer array, or ``image`` does not
        match its shape.
    InvalidParameterError
        ``spacing`` is not one or two positive numbers.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 6), dtype=np.uint16)
    >>> labels[1:3, 1:4] = 7
    >>> table = measure(labels, image=np.full((5, 6), 10))
    >>> table[["label", "area", "centroid_y", "centroid_x", "total_intensity"]].to_dict("records")
    [{'label': 7, 'area': 6.0, 'centroid_y': 1.5, 'centroid_x': 2.0, 'total_intensity': 60.0}]
    """
    labels = _validate_labels(labels)
    spacing = _validate_spacing(spacing)
    if image is not None:
        image = _validate_image(image, labels.shape)
    n_channels = image.shape[2] if image is not None and image.ndim == 3 else None

    isotropic = spacing is None or spacing[0] == spacing[1]
    properties = ["label", "centroid", "area", "eccentricity", "solidity", "bbox"]
    if isotropic:
        properties.append("perimeter")
    if image is not None:
        properties += list(_INTENSITY_KEYS.values())
    original_ids = None
    if labels.max() > DENSE_ID_LIMIT:  # regionprops allocates per id up to the largest: number them 1..N
        labels, _, original_ids = relabel_sequential(labels)
    props = regionprops_table(labels, intensity_image=image, properties=properties, spacing=spacing)
    ids = np.asarray(props["label"], dtype=np.int64)

    columns: dict[str, np.ndarray] = {}
    for name, key in _MORPHOLOGY_KEYS.items():
        columns[name] = props[key] if key in props else np.full(len(ids), np.nan)
    if image is not None:
        for name, channel in _intensity_columns(n_channels):
            plane = image if channel is None else image[..., channel]
            statistic = name if channel is None else name.rsplit("_c", 1)[0]
            if statistic == "total_intensity":
                # sum over pixels, independent of spacing (regionprops has no such property)
                columns[name] = ndimage.sum_labels(plane.astype(np.float64), labels, index=ids)
            else:
                key = _INTENSITY_KEYS[statistic]
                columns[name] = props[key if channel is None else f"{key}-{channel}"]

    if original_ids is not None:
        columns["label"] = np.asarray(original_ids[ids], dtype=np.int64)
    table = pd.DataFrame({name: np.asarray(values, dtype=np.int64 if name in _INTEGER_COLUMNS else np.float64)
                          for name, values in columns.items()})
    return table.sort_values("label", ignore_index=True)
