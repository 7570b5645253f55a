"""Deep watershed schema: predict foreground and inner distance, then watershed.

The network has two output channels:

0. foreground logit (sigmoid → probability that a pixel belongs to any object);
1. inner-distance logit (sigmoid → normalized inner distance, 1 at an object's
   centre, 0 at its border).

Post-processing optionally smooths the predicted distance (``smoothing`` = Gaussian
sigma in the model's pixels; texture inside a nucleus otherwise splits its peak),
takes the connected regions where it exceeds ``marker_threshold`` as markers (one
per object) and grows them by watershed on the inverted distance inside the
foreground mask. With ``marker_dynamic`` = h > 0, markers are instead the peaks of
the distance that rise at least h above the saddle to any higher peak (h-maxima,
Soille 2003) and exceed ``marker_threshold``: two peaks of one textured nucleus,
joined by a shallow saddle, give one marker, while touching nuclei (whose distance
falls to ~0 between them) keep theirs. This is the DeepCell
"deep watershed" idea (Bannon et al. 2021), with a per-object normalized distance.

Example
-------
>>> import numpy as np
>>> lab = np.zeros((32, 32), np.int32); lab[4:14, 4:14] = 1; lab[4:14, 14:26] = 2
>>> fg, dist = targets(lab)
>>> logit = lambda p: np.log(np.clip(p, 1e-4, 1 - 1e-4) / (1 - np.clip(p, 1e-4, 1 - 1e-4)))
>>> pred = postprocess(np.stack([logit(fg), logit(dist)]))
>>> int(pred.max())
2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.tasks.segmentation._common import (
    add_unclaimed_regions,
    check_labels,
    normalized_inner_distance,
    remove_small_objects,
    sigmoid,
)

OUTPUT_CHANNELS = 2
#: Target channels that are 0/1 masks: kept binary when training crops are zoomed.
BINARY_TARGETS = (0,)


@dataclass(frozen=True)
class DeepWatershedParams:
    """Post-processing thresholds; stored as defaults in a model package."""

    foreground_threshold: float = 0.5
    marker_threshold: float = 0.5
    min_size: int = 8
    smoothing: float = 0.0
    marker_dynamic: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


#: The post-processing settings of this schema (their defaults go into a new model package).
PARAMS = DeepWatershedParams


def targets(labels: np.ndarray) -> np.ndarray:
    """Training targets ``(2, Y, X)`` float32: foreground (0/1) and inner distance."""
    labels = check_labels(labels)
    foreground = (labels > 0).astype(np.float32)
    return np.stack([foreground, normalized_inner_distance(labels)])


def postprocess(
    outputs: np.ndarray,
    foreground_threshold: float = 0.5,
    marker_threshold: float = 0.5,
    min_size: int = 8,
    smoothing: float = 0.0,
    marker_dynamic: float = 0.0,
) -> np.ndarray:
    """Turn network outputs ``(2, Y, X)`` into a label image ``(Y, X)`` uint32 (``(2, Z, Y, X)``: a volume).

    ``outputs[0]`` is the foreground logit, ``outputs[1]`` the inner-distance logit.
    ``smoothing`` is the sigma (pixels of ``outputs``) of a Gaussian applied to the
    distance before markers are found; 0 turns it off. ``marker_dynamic`` > 0 finds
    markers as h-maxima of the distance (see the module docstring); 0 turns it off.
    Foreground regions that hold no marker still become objects (if large enough),
    so a faint object is never silently dropped because its peak was low.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim not in (3, 4) or outputs.shape[0] != OUTPUT_CHANNELS:
        raise InvalidModelError(f"expected network outputs of shape (2, Y, X) or (2, Z, Y, X), got {outputs.shape}: "
                                "the model's architecture does not fit its schema")
    probability, distance = sigmoid(outputs[0]), sigmoid(outputs[1])
    return objects_from_maps(probability, distance, foreground_threshold, marker_threshold, min_size,
                             smoothing, marker_dynamic)


def objects_from_maps(
    probability: np.ndarray,
    distance: np.ndarray,
    foreground_threshold: float = 0.5,
    marker_threshold: float = 0.5,
    min_size: int = 8,
    smoothing: float = 0.0,
    marker_dynamic: float = 0.0,
) -> np.ndarray:
    """Labels from a foreground probability and an inner distance map (both in [0, 1]).

    The watershed step of :func:`postprocess`, shared with schemas that derive the
    distance differently (e.g. :mod:`~cytolens.tasks.segmentation.contact_watershed`).
    ``distance`` must be float and may be overwritten (pass a copy to keep it): on whole-slide
    maps a copy would cost as much memory as the map itself.
    """
    if np.any(np.asarray(smoothing) < 0):  # one sigma, or one per axis (anisotropic volumes)
        raise InvalidParameterError(f"smoothing must be >= 0, got {smoothing}")
    if not 0 <= marker_dynamic < 1:
        raise InvalidParameterError(f"marker_dynamic must be in [0, 1), got {marker_dynamic}")
    if np.any(np.asarray(smoothing) > 0):
        distance = ndi.gaussian_filter(distance, smoothing)
    mask = probability > foreground_threshold
    if marker_dynamic > 0:
        markers, _ = ndi.label(_dynamic_peaks(distance, mask, marker_dynamic) & (distance > marker_threshold))
    else:
        markers, _ = ndi.label((distance > marker_threshold) & mask)
    labels = watershed(np.negative(distance, out=distance), markers, mask=mask)  # in place: no 4th map
    labels = add_unclaimed_regions(labels, mask)
    return remove_small_objects(labels, min_size)  # renumbers 1..N too


def _dynamic_peaks(distance: np.ndarray, mask: np.ndarray, h: float) -> np.ndarray:
    """h-maxima of ``distance`` inside ``mask``, one connected region of the mask at a time.

    Objects in different regions are apart anyway; working region by region keeps the
    memory of the morphological reconstruction bounded by the largest region, not the image.
    """
    regions, _ = ndi.label(mask)
    peaks = np.zeros(mask.shape, bool)
    for index, box in enumerate(ndi.find_objects(regions), start=1):
        if box is None:
            continue
        inside = regions[box] == index
        local = np.where(inside, distance[box], 0.0).astype(np.float64)
        peaks[box] |= h_maxima(local, h).astype(bool) & inside
    return peaks


__all__ = ["DeepWatershedParams", "OUTPUT_CHANNELS", "targets", "postprocess", "objects_from_maps", "check_labels"]
