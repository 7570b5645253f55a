"""Temporal consistency of a segmented movie: undo splits that come and go.

A segmentation network sometimes cuts one nucleus in two for a frame or two (texture,
a dim band), and a tracker then sees a short-lived extra cell, often as a false
division. :func:`merge_flickering_splits` merges two touching objects of a frame when
one object of an earlier frame (within ``max_frames``) and one of a later frame (within
``max_frames``) each cover both of them: the cell was whole before and is whole again.
A real division never merges (its daughters do not become one object again), and a
split that lasts longer than ``max_frames`` is kept.

Example
-------
>>> movie = np.zeros((3, 10, 12), np.int32)
>>> movie[:, 2:8, 2:10] = 1
>>> movie[1, 2:8, 6:10] = 2          # frame 1 cuts the cell in two
>>> merged = merge_flickering_splits(movie)
>>> [len(np.unique(f)) - 1 for f in merged]
[1, 1, 1]
"""

from __future__ import annotations

import numpy as np

from cytolens.errors import InvalidParameterError
from cytolens.track.detections import mask_overlaps, touching_labels


def _overlaps(frame: np.ndarray, other: np.ndarray) -> dict[int, dict[int, int]]:
    """``{label in frame: {label in other: shared pixels}}``."""
    table: dict[int, dict[int, int]] = {}
    for a, b, count in zip(*mask_overlaps(frame, other)):
        table.setdefault(int(a), {})[int(b)] = int(count)
    return table


def _whole_in(pair, areas, overlaps, other_areas, *, min_iou: float) -> bool:
    """Does one object of the other frame cover both parts of ``pair`` (each mostly, the union by IoU)?"""
    a, b = pair
    for candidate, shared_a in overlaps.get(a, {}).items():
        shared_b = overlaps.get(b, {}).get(candidate, 0)
        if shared_a < 0.5 * areas[a] or shared_b < 0.5 * areas[b]:
            continue
        union = areas[a] + areas[b] + other_areas[candidate] - shared_a - shared_b
        if (shared_a + shared_b) / union >= min_iou:
            return True
    return False


def merge_flickering_splits(labels: np.ndarray, *, max_frames: int = 2, min_iou: float = 0.5) -> np.ndarray:
    """Merge touching objects that are one object both before and after (see the module docstring).

    Parameters
    ----------
    labels : ndarray (T, Y, X)
        Label movie; ids need not agree between frames.
    max_frames : int
        How far back and ahead to look for the whole object; 0 returns the movie unchanged.
    min_iou : float
        IoU between the merged pair and the whole object required in both directions.

    Returns
    -------
    ndarray (T, Y, X), a copy: the merged object keeps the smaller id.
    """
    labels = np.array(labels, copy=True)
    if labels.ndim != 3:
        raise InvalidParameterError(f"a label movie must be (T, Y, X); got shape {labels.shape}")
    if max_frames < 0 or not 0 < min_iou <= 1:
        raise InvalidParameterError(f"need max_frames >= 0 and 0 < min_iou <= 1; got {max_frames}, {min_iou}")
    if max_frames == 0:
        return labels
    areas = [np.bincount(frame.ravel()) for frame in labels]
    for t in range(len(labels)):
        before = list(range(t - 1, max(t - max_frames, 0) - 1, -1))
        after = list(range(t + 1, min(t + max_frames, len(labels) - 1) + 1))
        if before and after:
            while _merge_one_pair(labels, areas, t, before=before, after=after, min_iou=min_iou):
                pass  # a nucleus cut in three merges pair by pair
    return labels


def _merge_one_pair(labels, areas, t: int, *, before: list[int], after: list[int], min_iou: float) -> bool:
    """Merge the first touching pair of frame ``t`` that is whole before and after; False if none is."""
    firsts, seconds = touching_labels(labels[t], reach=1)  # sharing an edge; sorted pairs
    if not len(firsts):
        return False
    tables = {s: _overlaps(labels[t], labels[s]) for s in before + after}

    def whole_in(pair, frames) -> bool:
        return any(_whole_in(pair, areas[t], tables[s], areas[s], min_iou=min_iou) for s in frames)

    for a, b in zip(firsts.tolist(), seconds.tolist()):
        if whole_in((a, b), before) and whole_in((a, b), after):
            labels[t][labels[t] == b] = a
            areas[t] = np.bincount(labels[t].ravel(), minlength=len(areas[t]))
            return True
    return False
