"""Flow-field schema for whole cells of any shape: each pixel predicts where its cell's centre lies along the cell.

Watershed schemas grow objects from peaks of a distance to the border; a cell with
two lobes or a U shape has two such peaks and is cut in two. Here (the idea of Cellpose,
Stringer et al. 2021) each object's pixels get a *flow*: the unit gradient of a heat map
diffused inside the object from its centre (the object pixel nearest its median
coordinates), so every path along the flow stays inside the object and ends at that one
centre, whatever the shape. The network has three output channels:

0. foreground logit;
1. flow along Y, 2. flow along X (``FLOW_SCALE`` × the unit vector).

Post-processing moves every foreground pixel ``steps`` times along the predicted flow
(bilinear interpolation, Euler steps of one pixel), counts where the pixels end up,
takes each connected cluster of end points holding at least ``min_sink`` pixels as one
object's sink and gives each pixel the label of the sink it reached (end points within
``sink_radius`` pixels of a sink count). Pixels that reach no sink are dropped, then
objects under ``min_size`` pixels.

Example
-------
>>> import numpy as np
>>> lab = np.zeros((40, 40), np.int32); lab[5:35, 5:12] = 1; lab[28:35, 5:30] = 1; lab[5:35, 23:30] = 1  # a U
>>> fg, fy, fx = targets(lab)
>>> logit = 20 * (fg - 0.5)
>>> int(postprocess(np.stack([logit, FLOW_SCALE * fy, FLOW_SCALE * fx])).max())  # one cell, not two arms
1
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.tasks.segmentation._common import check_labels, remove_small_objects, sigmoid

OUTPUT_CHANNELS = 3
#: Target channels that are 0/1 masks: kept binary when training crops are zoomed.
BINARY_TARGETS = (0,)
#: (y, x) target channels that form a vector field: turned with the crops' flips and rotations.
VECTOR_TARGETS = ((1, 2),)
#: the network predicts flows this many times the unit vector (Cellpose's scale: a loss of useful size)
FLOW_SCALE = 5.0


@dataclass(frozen=True)
class FlowFieldParams:
    """Post-processing settings; stored as defaults in a model package."""

    foreground_threshold: float = 0.5
    steps: int = 200
    min_sink: int = 4
    sink_radius: int = 2
    min_size: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


PARAMS = FlowFieldParams


def _centre(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` nearest its median coordinates (inside the object even when it is not convex)."""
    ys, xs = np.nonzero(mask)
    my, mx = np.median(ys), np.median(xs)
    nearest = np.argmin((ys - my) ** 2 + (xs - mx) ** 2)
    return int(ys[nearest]), int(xs[nearest])


def heat_map(mask: np.ndarray, iterations: int | None = None) -> np.ndarray:
    """Heat diffused inside ``mask`` from its centre: ``log(1 + T)``, 0 outside, highest at the centre.

    Each iteration adds 1 at the centre and replaces every object pixel by the mean of its
    3x3 neighbourhood (pixels outside the object count as 0, so heat leaks out at the
    border); ``iterations`` defaults to twice the sum of the mask's bounding-box sides,
    enough for heat to reach every pixel along the object.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    height, width = mask.shape
    iterations = iterations or 2 * (height + width)
    cy, cx = _centre(mask)
    heat = np.zeros((height + 2, width + 2), np.float64)
    inside = np.pad(mask, 1)
    for _ in range(iterations):
        heat[cy + 1, cx + 1] += 1
        total = heat[:-2, :-2] + heat[:-2, 1:-1] + heat[:-2, 2:] + heat[1:-1, :-2] + heat[1:-1, 1:-1] \
            + heat[1:-1, 2:] + heat[2:, :-2] + heat[2:, 1:-1] + heat[2:, 2:]
        heat[1:-1, 1:-1] = total / 9
        heat *= inside
    return np.log1p(heat[1:-1, 1:-1]).astype(np.float32)


def flows(labels: np.ndarray) -> np.ndarray:
    """Unit flows ``(2, Y, X)`` (dy, dx) float32: each object's heat-map gradient, 0 on background.

    >>> lab = np.zeros((9, 9), int); lab[2:7, 2:7] = 1
    >>> f = flows(lab)
    >>> float(f[0, 2, 4]) > 0.9, float(f[1, 4, 2]) > 0.9  # above the centre: down; left of it: right
    (True, True)
    """
    labels = check_labels(labels)
    if labels.ndim != 2:
        raise InvalidParameterError("flow_field targets are 2D; segment volumes with a 2D model plane by plane")
    out = np.zeros((2, *labels.shape), np.float32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        mask = labels[box] == index
        heat = heat_map(mask)
        gy, gx = np.gradient(heat)
        norm = np.sqrt(gy**2 + gx**2)
        norm[norm == 0] = 1
        out[0][box][mask] = (gy / norm)[mask]
        out[1][box][mask] = (gx / norm)[mask]
    return out


def targets(labels: np.ndarray) -> np.ndarray:
    """Training targets ``(3, Y, X)`` float32: foreground (0/1) and the unit flows (dy, dx)."""
    labels = check_labels(labels)
    return np.concatenate([(labels > 0).astype(np.float32)[None], flows(labels)])


def follow_flows(flow: np.ndarray, mask: np.ndarray, steps: int = 200) -> np.ndarray:
    """End points ``(2, N)`` of the pixels of ``mask`` moved ``steps`` times along ``flow`` ``(2, Y, X)``.

    Each step moves a point by the flow at its position (bilinear), kept inside the image.
    """
    points = np.array(np.nonzero(mask), dtype=np.float32)
    upper = np.array(mask.shape, np.float32)[:, None] - 1
    for _ in range(steps):
        step = np.stack([ndi.map_coordinates(flow[0], points, order=1, mode="nearest"),
                         ndi.map_coordinates(flow[1], points, order=1, mode="nearest")])
        points = np.clip(points + step, 0, upper)
    return points


def labels_from_flows(flow: np.ndarray, mask: np.ndarray, steps: int = 200, min_sink: int = 4,
                      sink_radius: int = 2, min_size: int = 8) -> np.ndarray:
    """Labels ``(Y, X)`` uint32 from unit-scale flows ``(2, Y, X)`` and a foreground ``mask``.

    >>> lab = np.zeros((12, 20), int); lab[2:10, 2:10] = 1; lab[2:10, 10:18] = 2  # two touching squares
    >>> labels_from_flows(flows(lab), lab > 0, min_size=1).max()
    np.uint32(2)
    """
    if steps < 0 or min_sink < 1 or sink_radius < 0:
        raise InvalidParameterError(f"need steps >= 0, min_sink >= 1 and sink_radius >= 0; got {steps}, "
                                    f"{min_sink}, {sink_radius}")
    labels = np.zeros(mask.shape, np.uint32)
    if not mask.any():
        return labels
    ends = follow_flows(flow, mask, steps)
    where = np.round(ends).astype(np.intp)
    counts = np.zeros(mask.shape, np.int64)
    np.add.at(counts, (where[0], where[1]), 1)
    sinks, _ = ndi.label(ndi.binary_dilation(counts > 0))  # end points a pixel apart: one sink
    # a sink's pixel total decides whether it is an object
    totals = ndi.sum_labels(counts, sinks, index=np.arange(sinks.max() + 1))
    keep = totals >= min_sink
    keep[0] = False
    sinks = np.where(keep[sinks], sinks, 0)
    if sink_radius:
        from skimage.segmentation import expand_labels

        sinks = expand_labels(sinks, sink_radius)
    labels[mask] = sinks[where[0], where[1]]
    return remove_small_objects(labels, min_size)


def filter_maps(outputs: np.ndarray) -> np.ndarray:
    """The two logit maps an object filter reads (:mod:`.object_filter`): the foreground, and the flow's
    length in place of the watershed schemas' inner distance (near 1 where the network is sure of the
    direction to a cell's centre; it falls at sinks, at edges and on fragments).

    >>> maps = filter_maps(np.stack([np.full((4, 4), 3.0), np.full((4, 4), FLOW_SCALE), np.zeros((4, 4))]))
    >>> maps.shape, bool(maps[1, 0, 0] > 5)
    ((2, 4, 4), True)
    """
    length = np.clip(np.hypot(outputs[1], outputs[2]) / FLOW_SCALE, 1e-3, 1 - 1e-3)
    return np.stack([outputs[0], np.log(length / (1 - length))]).astype(np.float32)


def postprocess(outputs: np.ndarray, foreground_threshold: float = 0.5, steps: int = 200, min_sink: int = 4,
                sink_radius: int = 2, min_size: int = 8) -> np.ndarray:
    """Turn network outputs ``(3, Y, X)`` into a label image ``(Y, X)`` uint32 (see the module docstring)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim != 3 or outputs.shape[0] != OUTPUT_CHANNELS:
        raise InvalidModelError(f"expected network outputs of shape (3, Y, X), got {outputs.shape}: the model's "
                                "architecture does not fit the flow_field schema")
    mask = sigmoid(outputs[0]) > foreground_threshold
    return labels_from_flows(outputs[1:] / FLOW_SCALE, mask, int(steps), int(min_sink), int(sink_radius),
                             int(min_size))


__all__ = [
    "FLOW_SCALE",
    "OUTPUT_CHANNELS",
    "FlowFieldParams",
    "flows",
    "follow_flows",
    "heat_map",
    "labels_from_flows",
    "postprocess",
    "targets",
]
