"""Pixel-classification schema: background / interior / edge, then seeded watershed.

The network has three output channels (softmax logits): 0 background,
1 object interior, 2 object edge (the inner boundary of each object, which also
separates touching objects). Post-processing labels the connected interior
regions as seeds and grows them over interior+edge pixels by watershed.

Example
-------
>>> import numpy as np
>>> lab = np.zeros((32, 32), np.int32); lab[4:14, 4:14] = 1; lab[4:14, 14:26] = 2
>>> classes = targets(lab)
>>> logits = np.stack([(classes == c) * 10.0 for c in range(3)])
>>> int(postprocess(logits).max())
2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries, watershed

from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.tasks.segmentation._common import (
    add_unclaimed_regions,
    check_labels,
    relabel_sequential,
    remove_small_objects,
)

OUTPUT_CHANNELS = 3
#: Its one target channel holds class ids, not a 0/1 mask (zoomed by nearest neighbour instead).
BINARY_TARGETS = ()
BACKGROUND, INTERIOR, EDGE = 0, 1, 2


@dataclass(frozen=True)
class PixelClassesParams:
    """Post-processing thresholds; stored as defaults in a model package."""

    interior_threshold: float = 0.5
    min_size: int = 8
    #: class weights of the training loss; dividing by them undoes the shift they cause
    class_weights: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


PARAMS = PixelClassesParams


def targets(labels: np.ndarray) -> np.ndarray:
    """Class map ``(Y, X)`` int64: 0 background, 1 interior, 2 edge."""
    labels = check_labels(labels)
    classes = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.int64)
    edges = find_boundaries(labels, mode="inner") & (labels > 0)
    classes[edges] = EDGE
    return classes


def class_weights(class_maps: list[np.ndarray]) -> np.ndarray:
    """Inverse-frequency weights for the three classes, normalized to mean 1."""
    counts = np.zeros(OUTPUT_CHANNELS)
    for class_map in class_maps:
        counts += np.bincount(class_map.ravel(), minlength=OUTPUT_CHANNELS)[:OUTPUT_CHANNELS]
    weights = counts.sum() / np.maximum(counts, 1) / OUTPUT_CHANNELS
    return weights / weights.mean()


def postprocess(outputs: np.ndarray, interior_threshold: float = 0.5, min_size: int = 8,
                class_weights: Sequence[float] | None = None) -> np.ndarray:
    """Turn logits ``(3, Y, X)`` into a label image ``(Y, X)`` uint32.

    A loss with class weights ``w`` trains the network towards ``p(c) ∝ w_c p_true(c)``
    (the rare edge class is over-predicted, so objects come out too large); passing the
    same ``class_weights`` divides them out again before thresholding.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim != 3 or outputs.shape[0] != OUTPUT_CHANNELS:
        raise InvalidModelError(f"expected network outputs of shape (3, Y, X), got {outputs.shape}: the model's "
                                "architecture does not fit its schema")
    shifted = np.exp(outputs - outputs.max(axis=0, keepdims=True))
    if class_weights is not None:
        weights = np.asarray(class_weights, dtype=np.float32)
        if weights.shape != (OUTPUT_CHANNELS,) or not np.all(weights > 0):
            raise InvalidParameterError(
                f"class_weights must be {OUTPUT_CHANNELS} positive numbers, got {class_weights}")
        shifted /= weights[:, None, None]
    probabilities = shifted / shifted.sum(axis=0, keepdims=True)
    seeds, _ = ndi.label(probabilities[INTERIOR] > interior_threshold)
    mask = probabilities[BACKGROUND] < 0.5
    labels = watershed(probabilities[BACKGROUND], seeds, mask=mask)
    labels = add_unclaimed_regions(labels, mask)
    return remove_small_objects(relabel_sequential(labels), min_size)
