"""Helpers shared by the instance-segmentation schemas."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidImageError


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as a 2D (or 3D) integer array; raise :class:`~cytolens.errors.InvalidImageError` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InvalidImageError(f"labels must be 2D (Y, X) or 3D (Z, Y, X), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidImageError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InvalidImageError("labels must be >= 0 (0 = background)")
    return labels


def normalized_inner_distance(labels: np.ndarray) -> np.ndarray:
    """Distance to the object's border divided by the object's largest such distance.

    Each object gets 1.0 at its most interior pixel(s) and falls towards 0 at its
    border; background is 0. Computed per object so touching objects each keep a
    peak of their own, which is what makes them separable.

    Examples
    --------
    >>> lab = np.zeros((5, 9), int); lab[1:4, 1:4] = 1; lab[1:4, 4:8] = 2
    >>> d = normalized_inner_distance(lab)
    >>> float(d[2, 2]), float(d[0, 0])
    (1.0, 0.0)
    """
    labels = check_labels(labels)
    out = np.zeros(labels.shape, dtype=np.float32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        padded_box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        mask = labels[padded_box] == index
        distance = ndi.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]
        peak = distance.max()
        if peak > 0:
            out[padded_box][mask] = (distance[mask] / peak).astype(np.float32)
    return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-logits))`` as float32 with one new array, not four temporaries.

    Post-processing runs on whole-image maps (8000² × float32 = 256 MB each), so the
    temporaries of the plain expression would dominate peak memory.

    >>> sigmoid(np.array([0.0, 100.0], np.float32)).tolist()
    [0.5, 1.0]
    """
    out = np.negative(logits, dtype=np.float32)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 1..N keeping 0 as background and the order of ids, as uint32.

    >>> relabel_sequential(np.array([[0, 7, 7], [3, 0, 9]])).tolist()
    [[0, 2, 2], [1, 0, 3]]
    """
    top = int(labels.max()) if labels.size else 0
    if top <= max(labels.size, 1024):  # a count per id is cheaper than sorting the pixels
        present = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=top + 1) > 0
    else:
        present = np.zeros(top + 1, bool)
        present[np.unique(labels)] = True
    return _renumbered(labels, present)


def remove_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects with fewer than ``min_size`` pixels to background and renumber 1..N (uint32).

    >>> remove_small_objects(np.array([[5, 5, 0, 2]]), min_size=2).tolist()
    [[1, 1, 0, 0]]
    """
    if labels.size == 0 or labels.max() == 0:
        return np.zeros(labels.shape, np.uint32)
    sizes = np.bincount(labels.ravel().astype(np.intp, copy=False))
    return _renumbered(labels, sizes >= max(min_size, 1))


def _renumbered(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Ids where ``keep[id]`` renumbered 1..N in order, every other id (and 0) set to 0: one pass over the pixels."""
    keep[0] = False
    lookup = np.zeros(len(keep), dtype=np.uint32)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lookup[labels]


def add_unclaimed_regions(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give each connected part of ``mask`` that no object covers a new label of its own.

    Post-processing grows objects from markers; a foreground blob without a marker
    would otherwise vanish silently.
    """
    unclaimed, count = ndi.label(mask & (labels == 0))
    if not count:
        return labels
    return np.where(unclaimed > 0, unclaimed + labels.max(), labels)
