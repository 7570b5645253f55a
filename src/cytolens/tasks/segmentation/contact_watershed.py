"""Contact watershed schema: deep watershed plus a third output for touching objects.

Most errors of the deep watershed model on DSB2018 are merges: two touching nuclei
whose predicted distance does not dip between them, so they get one marker. This
schema adds an output trained on exactly those places, the *contacts* (pixels within
``CONTACT_RADIUS`` of two different objects), as the first-place DSB2018 solution
did with its "touching borders" channel. The network has three output channels:

0. foreground logit;
1. inner-distance logit (as :mod:`~cytolens.tasks.segmentation.deep_watershed`);
2. contact logit (sigmoid → probability that two objects meet here).

Post-processing lowers the distance where contacts are predicted,
``distance × (1 − contact_weight × contact)``, and then runs the deep watershed
steps (markers from h-maxima of that distance, watershed inside the foreground).
With ``contact_weight = 0`` it is exactly the deep watershed of the first two channels,
which is why a deep watershed model can be the parent of a contact watershed model.

Example
-------
>>> import numpy as np
>>> lab = np.zeros((32, 32), np.int32); lab[4:14, 4:14] = 1; lab[4:14, 14:26] = 2
>>> fg, dist, contact = targets(lab)
>>> int(contact[8, 13]), int(contact[8, 5])
(1, 0)
>>> logit = lambda p: np.log(np.clip(p, 1e-4, 1 - 1e-4) / (1 - np.clip(p, 1e-4, 1 - 1e-4)))
>>> int(postprocess(np.stack([logit(fg), logit(dist), logit(contact)])).max())
2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.tasks.segmentation._common import check_labels, normalized_inner_distance, sigmoid
from cytolens.tasks.segmentation.deep_watershed import DeepWatershedParams, objects_from_maps

OUTPUT_CHANNELS = 3
#: Target channels that are 0/1 masks (foreground, contacts): kept binary when crops are zoomed.
BINARY_TARGETS = (0, 2)
#: Contacts are the pixels with two different objects within this many pixels (model scale).
CONTACT_RADIUS = 2
#: The schema whose outputs are this schema's first channels (its models can be parents).
EXTENDS = "deep_watershed"


@dataclass(frozen=True)
class ContactWatershedParams(DeepWatershedParams):
    """Post-processing thresholds (the deep watershed's plus ``contact_weight``); stored in a model package."""

    contact_weight: float = 1.0


PARAMS = ContactWatershedParams


def contact_map(labels: np.ndarray, radius: int = CONTACT_RADIUS) -> np.ndarray:
    """1 where two different objects lie within ``radius`` pixels (chessboard), else 0.

    Gaps of up to ``2 × radius − 1`` background pixels between two objects count too:
    that is where a too-wide foreground would join them.

    >>> lab = np.zeros((3, 8), int); lab[:, 1:4] = 1; lab[:, 4:7] = 2
    >>> contact_map(lab, radius=1)[1].astype(int).tolist()
    [0, 0, 0, 1, 1, 0, 0, 0]
    """
    labels = check_labels(labels)
    size = 2 * radius + 1
    labels = labels.astype(np.int64)
    above_all = int(labels.max()) + 1  # background counts as higher than every object for the minimum
    highest = ndi.maximum_filter(labels, size=size)
    lowest = ndi.minimum_filter(np.where(labels > 0, labels, above_all), size=size)
    return ((highest > 0) & (lowest < above_all) & (highest != lowest)).astype(np.float32)


def targets(labels: np.ndarray) -> np.ndarray:
    """Training targets ``(3, Y, X)`` float32: foreground (0/1), inner distance, contacts (0/1)."""
    labels = check_labels(labels)
    foreground = (labels > 0).astype(np.float32)
    return np.stack([foreground, normalized_inner_distance(labels), contact_map(labels)])


def postprocess(
    outputs: np.ndarray,
    foreground_threshold: float = 0.5,
    marker_threshold: float = 0.5,
    min_size: int = 8,
    smoothing: float = 0.0,
    marker_dynamic: float = 0.0,
    contact_weight: float = 1.0,
) -> np.ndarray:
    """Turn network outputs ``(3, Y, X)`` into a label image ``(Y, X)`` uint32.

    ``contact_weight`` in [0, 1] sets how strongly predicted contacts cut the distance
    before markers are found; the other parameters are those of
    :func:`cytolens.tasks.segmentation.deep_watershed.postprocess`.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim not in (3, 4) or outputs.shape[0] != OUTPUT_CHANNELS:
        raise InvalidModelError(f"expected network outputs of shape (3, Y, X) or (3, Z, Y, X), got {outputs.shape}: "
                                "the model's architecture does not fit its schema")
    if not 0 <= contact_weight <= 1:
        raise InvalidParameterError(f"contact_weight must be in [0, 1], got {contact_weight}")
    probability, distance = sigmoid(outputs[0]), sigmoid(outputs[1])
    if contact_weight > 0:  # distance × (1 − w × contact), in place: these maps can be whole slides
        keep = sigmoid(outputs[2])
        keep *= -contact_weight
        keep += 1
        distance *= keep
        del keep
    return objects_from_maps(probability, distance, foreground_threshold, marker_threshold, min_size,
                             smoothing, marker_dynamic)


__all__ = ["ContactWatershedParams", "OUTPUT_CHANNELS", "CONTACT_RADIUS", "contact_map", "targets", "postprocess"]
