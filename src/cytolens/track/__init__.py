"""Tracking: follow every cell through a movie, divisions and lineages included.

Detections come from a label movie (``T, Y, X``; 0 = background), a CTC folder or a
table; :func:`link` joins them in the Jaqaman style (frame-to-frame assignment, then
gap closing and division detection over track segments), priced by a :class:`LinkCost`;
:class:`TrackingResult` writes a CTC folder, a tracks table, napari Tracks data and a
lineage plot. :func:`fit_link_model` learns link and division probabilities from annotated
tracks, an alternative to the hand-made costs (``link_cost="learned"``).

The package itself is callable, so ``cytolens.track(labels=movie)`` is the same as
``cytolens.track.track(labels=movie)``.

>>> import numpy as np, cytolens.track
>>> movie = np.zeros((2, 8, 8), np.uint8); movie[:, 2:4, 2:4] = 3
>>> cytolens.track(labels=movie).tracks[["track_id", "t"]].values.tolist()
[[1, 0], [1, 1]]
"""

import sys
import types

from cytolens.track.config import TrackingConfig
from cytolens.track.costs import HandLinkCost, LinkCost
from cytolens.track.detections import (
    as_label_movie,
    detect,
    detections_from_table,
    label_contacts,
    label_overlaps,
    read_label_movie,
)
from cytolens.track.learned import LinkCostModel, fit_link_model, fit_link_model_ctc, load_link_model
from cytolens.track.lineage import TrackingResult, ctc_tracks, napari_tracks, plot_lineage, relabel
from cytolens.track.linking import link, solve_assignment
from cytolens.track.pipeline import link_cost_for, segment_movie, track

__all__ = [
    "HandLinkCost", "LinkCost", "LinkCostModel", "TrackingConfig", "TrackingResult", "as_label_movie", "ctc_tracks",
    "detect", "detections_from_table", "fit_link_model", "fit_link_model_ctc", "label_contacts", "label_overlaps",
    "link", "link_cost_for", "load_link_model", "napari_tracks", "plot_lineage", "read_label_movie", "relabel",
    "segment_movie", "solve_assignment", "track",
]


class _CallableModule(types.ModuleType):
    """``cytolens.track`` is both this package and the top-level function (the API names them alike)."""

    def __call__(self, *args, **kwargs):
        return track(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
