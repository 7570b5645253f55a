"""Helpers shared by the instance-segmentation schemas."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as a 2D integer array; raise ``ValueError`` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (Y, X), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be >= 0 (0 = background)")
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
        distance = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
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
    """Renumber labels to 1..N keeping 0 as background, as uint32."""
    unique = np.unique(labels)
    unique = unique[unique != 0]
    lookup = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.uint32)
    lookup[unique] = np.arange(1, len(unique) + 1, dtype=np.uint32)
    return lookup[labels]


def remove_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects with fewer than ``min_size`` pixels to background and renumber."""
    if min_size <= 0 or labels.max() == 0:
        return relabel_sequential(labels)
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    labels = labels.copy()
    labels[small[labels]] = 0
    return relabel_sequential(labels)


def add_unclaimed_regions(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give each connected part of ``mask`` that no object covers a new label of its own.

    Post-processing grows objects from markers; a foreground blob without a marker
    would otherwise vanish silently.
    """
    unclaimed, count = ndi.label(mask & (labels == 0))
    if not count:
        return labels
    return np.where(unclaimed > 0, unclaimed + labels.max(), labels)
