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


#: labels whose ids are split into more separate pieces than this, on average, are taken for an intensity image
MAX_PIECES_PER_ID = 4
#: ... when they count at least this many pieces (a small hand-made label image is never refused)
MIN_PIECES = 50
#: the pieces are counted in a window of at most this side (the check stays fast on a whole slide)
PIECES_WINDOW = 1024


def _validate_labels(labels, force: bool = False) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InvalidImageError(
            f"labels must be a 2D (Y, X) label image or a 3D (Z, Y, X) label volume, got shape {labels.shape}; "
            "measure each frame of a movie separately")
    if labels.size == 0:
        raise InvalidImageError(f"label image is empty (shape {labels.shape})")
    if np.issubdtype(labels.dtype, np.floating):
        labels = _whole_numbers(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidImageError(
            f"labels must be integers (0 = background, one positive id per object), got dtype {labels.dtype}; "
            "for a boolean mask use skimage.measure.label(mask) first")
    if labels.size and labels.min() < 0:
        raise InvalidImageError(
            f"labels must be non-negative (0 = background), found {labels.min()}; relabel the objects")
    if not force:
        _refuse_intensity_image(labels)
    return labels


def _whole_numbers(labels: np.ndarray) -> np.ndarray:
    """Float labels as integers when every value is a whole number (some tools save labels as float32)."""
    if not np.isfinite(labels).all():
        raise InvalidImageError("labels hold NaN or infinite values; a label image holds whole numbers "
                                "(0 = background, one positive id per object)")
    fractional = labels[labels != np.round(labels)]
    if fractional.size:
        raise InvalidImageError(f"labels hold fractional values (e.g. {fractional.flat[0]:.4g}): this is an "
                                "intensity image, not a label image (whole numbers, 0 = background, one positive "
                                "id per object); give the label image, e.g. <stem>_labels.tif from cytolens segment")
    if np.abs(labels).max() > 2**53:  # beyond this a float no longer holds every whole number
        raise InvalidImageError(f"labels reach {np.abs(labels).max():.3g}, too large for label ids held as floats")
    return labels.astype(np.int64)


def _refuse_intensity_image(labels: np.ndarray) -> None:
    """Raise when ``labels`` look like an intensity image (or a mask): ids split into many pieces each.

    In a label image each id is one connected object (give or take a piece): DSB2018's 670
    label images have at most 1.01 pieces (8-connected) per id. Read as labels, an intensity
    image's grey values are scattered over the image: 55 or more pieces per value on 60 of
    DSB2018's images (a simulated movie frame: 233 values in 333,014 pieces). A mask (one id for every
    object) is split into one piece per object. So more than :data:`MAX_PIECES_PER_ID` pieces per
    id, counting at least :data:`MIN_PIECES`, is refused (``force=True`` measures it anyway).
    """
    from skimage.measure import label as connected_pieces

    height, width = labels.shape
    y, x = max(0, (height - PIECES_WINDOW) // 2), max(0, (width - PIECES_WINDOW) // 2)
    window = labels[y : y + PIECES_WINDOW, x : x + PIECES_WINDOW]
    if not window.any():
        return
    n_ids = len(np.unique(window)) - (window.min() == 0)
    n_pieces = int(connected_pieces(window, background=0, connectivity=2).max())
    if n_pieces >= MIN_PIECES and n_pieces > MAX_PIECES_PER_ID * n_ids:
        where = "" if window.shape == labels.shape else f" (in a {window.shape[0]}x{window.shape[1]} window)"
        raise InvalidImageError(
            f"this does not look like a label image: its {n_ids} ids lie in {n_pieces} separate pieces{where} "
            f"({n_pieces / n_ids:.0f} per id; a label image has one object per id): an intensity image, or a mask "
            "(label it with skimage.measure.label)? Give the label image (e.g. <stem>_labels.tif from cytolens "
            "segment), or pass force=True (CLI: --force) to measure it anyway")


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
            spacing: float | Sequence[float] | None = None, *, force: bool = False) -> pd.DataFrame:
    """Measure every object of a label image: shape, position and intensity.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Label image, 0 = background, each object one positive id. A ``(Z, Y, X)``
        label volume is measured in 3D instead (volume, surface area, equivalent
        diameter, 3D centroid; ``spacing`` = ``(dz, dy, dx)``): see
        :func:`cytolens.measure3d.measure_volume`.
    image : ndarray, shape (Y, X) or (Y, X, C), optional
        Intensity image with the same Y, X as ``labels``, channels last.
    spacing : float or (float, float), optional
        Pixel size ``(dy, dx)`` (one number for square pixels). When given,
        centroids, area and perimeter are in these physical units; bounding boxes
        stay in pixel indices. scikit-image measures perimeters only for square
        pixels, so ``perimeter`` is NaN when ``dy != dx``.
    force : bool
        Measure ``labels`` even when they look like an intensity image or a mask
        (their ids split into more than 4 separate pieces each, on average, counting at
        least 50 pieces; a label image has one object per id).

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
        ``labels`` is not a 2D array of non-negative whole numbers (float labels are
        accepted when every value is whole), looks like an intensity image (see
        ``force``), or ``image`` does not match its shape.
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
    if np.ndim(labels) == 3:  # a (Z, Y, X) label volume: volume, surface area, 3D centroid
        from cytolens.measure3d import measure_volume

        return measure_volume(labels, image, spacing)
    labels = _validate_labels(labels, force)
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
