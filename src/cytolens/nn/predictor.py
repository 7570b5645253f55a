"""A network as a numpy function over tiles, for :func:`cytolens.preprocess.predict_tiled`.

>>> import numpy as np, torch
>>> predict = network_predictor(torch.nn.Conv2d(1, 1, 1, bias=False).requires_grad_(False))
>>> predict(np.ones((1, 4, 4), np.float32)).shape
(1, 4, 4)
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np
import torch


def network_predictor(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a network as a numpy ``(C, *spatial) → (K, *spatial)`` function (one tile, no gradients)."""
    device = next(model.parameters()).device

    def predict(tile: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(tile))[None].to(device))[0]
            return out.float().contiguous().cpu().numpy()  # float(): bfloat16 under autocast has no numpy dtype
    return predict


def flip_averaged(predict: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Test-time augmentation: average ``predict`` over every flip of a tile's last two axes (4× the work).

    >>> tta = flip_averaged(lambda tile: tile * 2)
    >>> float(tta(np.arange(4, dtype=np.float32).reshape(1, 2, 2))[0, 1, 1])
    6.0
    """
    def predict_flips(tile: np.ndarray) -> np.ndarray:
        total = None
        spatial = (tile.ndim - 2, tile.ndim - 1)
        for axes in ((), *combinations(spatial, 1), spatial):
            flipped = np.flip(tile, axes) if axes else tile
            out = predict(np.ascontiguousarray(flipped))
            out = np.flip(out, axes) if axes else out
            total = out if total is None else total + out
        return total / 4
    return predict_flips
