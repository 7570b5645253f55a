"""Tiny hand-made label movies for the tracking tests."""

from __future__ import annotations

import numpy as np


def disc(frame: np.ndarray, cy: float, cx: float, radius: float, label: int) -> None:
    yy, xx = np.ogrid[: frame.shape[0], : frame.shape[1]]
    frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = label


def movie_of(objects: list[list[tuple[float, float, float]]], shape=(64, 64), seed=0) -> np.ndarray:
    """``objects[t]`` = list of (y, x, radius); labels are shuffled per frame so no identity leaks."""
    rng = np.random.default_rng(seed)
    movie = np.zeros((len(objects), *shape), np.uint16)
    for t, frame_objects in enumerate(objects):
        ids = rng.permutation(len(frame_objects)) + 1
        for (y, x, r), label in zip(frame_objects, ids):
            disc(movie[t], y, x, r, int(label))
    return movie
