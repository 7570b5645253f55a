"""Link costs: what linking asks of a cost (:class:`LinkCost`), and the hand-made cost.

Linking (:mod:`cytolens.track.linking`) prices three kinds of candidates, each against its
alternative: frame-to-frame links (against a death plus a birth), gap closings (against a
birth) and splits (against a birth). Any object with the four methods of :class:`LinkCost`
can price them:

- :class:`HandLinkCost`: squared displacement in search radii, area change, mask overlap
  and the division cost of :func:`hand_split_cost` (``link_cost="hand"``, the default);
- :class:`cytolens.track.learned.LinkCostModel`: log-odds of fitted logistic regressions
  (``link_cost="learned"``).

Linking receives the cost as an object and never reads a model file: :func:`cytolens.track.track`
picks the cost the config names (:func:`cytolens.track.pipeline.link_cost_for`).

>>> isinstance(HandLinkCost(), LinkCost)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from cytolens.track.config import TrackingConfig
from cytolens.track.detections import Movie


@dataclass(frozen=True)
class LinkPairs:
    """Candidate links: detection rows ``earlier[k]`` and ``later[k]`` may be the same cell.

    ``distance`` is in pixels, ``iou`` the IoU of their masks (0 when unknown or not in
    consecutive frames), ``gap`` the frames missed between them (0 = consecutive frames).
    """

    earlier: np.ndarray
    later: np.ndarray
    distance: np.ndarray
    iou: np.ndarray
    gap: np.ndarray | int = 0


@runtime_checkable
class LinkCost(Protocol):
    """What linking asks of a cost; lower is likelier, and a candidate dearer than its alternative is refused."""

    def check(self, movie: Movie) -> None:
        """Raise a :class:`~cytolens.errors.CytolensError` when ``movie`` lacks what this cost needs."""

    def frame_costs(self, movie: Movie, pairs: LinkPairs, cfg: TrackingConfig) -> tuple[np.ndarray, float]:
        """Step 1: the cost of each frame-to-frame link, and of leaving a detection unlinked."""

    def gap_costs(self, movie: Movie, pairs: LinkPairs, cfg: TrackingConfig) -> tuple[np.ndarray, float]:
        """Step 2: the cost of each gap closing, and of a birth (every segment start's alternative)."""

    def split_costs(self, division: dict[str, np.ndarray], cfg: TrackingConfig) -> np.ndarray:
        """Step 2: the cost of each split, from :func:`~cytolens.track.linking.division_features`,
        on the scale of :meth:`gap_costs`."""


def _log_area_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log2(np.asarray(b, float) / np.asarray(a, float))
    return np.where(np.isfinite(ratio), ratio, 0.0)


def _area_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared log2 area ratio, capped at 1: objects leaving the field or dying may shrink a lot."""
    return np.minimum(_log_area_ratio(a, b) ** 2, 1.0)


class HandLinkCost:
    """The hand-made cost (the default): squared displacements in units of the search radius,
    plus the squared log2 area change and, for label movies, ``overlap_weight * (1 - IoU)``;
    splits are priced by :func:`hand_split_cost`. Every weight comes from the config.
    """

    def check(self, movie: Movie) -> None:
        """Any detections will do: areas, masks and intensities are used when present."""

    def frame_costs(self, movie: Movie, pairs: LinkPairs, cfg: TrackingConfig) -> tuple[np.ndarray, float]:
        """A link is worth taking when cheaper than one death plus one birth (``link_cutoff`` at the search radius)."""
        with_masks = movie.overlaps is not None
        cost = (pairs.distance / cfg.search_radius) ** 2 + cfg.use_area * cfg.area_weight * _area_change(
            movie.area[pairs.earlier], movie.area[pairs.later])
        if with_masks:
            cost = cost + cfg.overlap_weight * (1.0 - pairs.iou)
        alternative = 0.5 * cfg.link_cutoff * (1.0 + cfg.overlap_weight * with_masks + cfg.use_area * cfg.area_weight)
        return cost, alternative

    def gap_costs(self, movie: Movie, pairs: LinkPairs, cfg: TrackingConfig) -> tuple[np.ndarray, float]:
        """The search radius grows with the square root of the frames elapsed; ``gap_penalty`` per missed frame."""
        radius = cfg.search_radius * np.sqrt(pairs.gap + 1)
        cost = ((pairs.distance / radius) ** 2
                + cfg.use_area * cfg.gap_area_weight * _area_change(movie.area[pairs.earlier], movie.area[pairs.later])
                + cfg.gap_penalty * pairs.gap)
        return cost, cfg.birth_cost

    def split_costs(self, division: dict[str, np.ndarray], cfg: TrackingConfig) -> np.ndarray:
        """:func:`hand_split_cost`."""
        return hand_split_cost(division, cfg)


def hand_split_cost(features: dict[str, np.ndarray], cfg: TrackingConfig) -> np.ndarray:
    """Hand-made cost that a daughter split off a mother (compared with ``birth_cost``).

    Squared mother-to-daughter distance in units of the division radius; the daughters
    should sit on either side of the mother (squared offset of their midpoint, or 0.5 with
    no sister); the larger daughter should be smaller than the mother (by 2^-0.5); the
    mother's mask should cover the daughter; and ``gap_penalty`` per frame the daughter
    appears late. Sizes can also speak *for* a division: two daughters that are each at
    most half the mother and alike (a symmetric division) earn up to
    ``division_symmetry_weight`` off, which can make up for daughters off the mother's
    axis (markers placed off-centre, fast motion during mitosis). Sisters more than a
    factor 4 apart in area cost ``division_unlike_weight`` per further factor 2 (a speck
    of debris next to a nucleus is no sister). Size terms are dropped for mothers cut by
    the image border, whose area is not their size.

    Daughters whose masks touch in every frame they share cost ``division_touch_penalty``
    more: a nucleus that the segmentation cuts in two gives pieces that never part, while
    daughter nuclei separate, even when they touch for their first frames (the
    ``sisters_touch`` feature follows both daughters' frame-to-frame links).
    """
    reach = cfg.division_radius / cfg.cell_diameter  # features are in cell diameters
    cost = (features["distance"] / reach) ** 2
    has_sister = features["has_sister"] > 0
    cost = cost + np.where(has_sister, (features["offset"] / reach) ** 2, 0.5)
    larger = features["larger_daughter"]
    shrink = cfg.division_shrink_weight * np.maximum(larger + 0.5, 0.0) ** 2
    halving = np.clip((-0.5 - larger) / 0.5, 0.0, 1.0)  # 0 above 2^-0.5 of the mother, 1 at half or below
    alike = np.where(has_sister, np.maximum(1.0 - features["sisters"], 0.0), 0.0)  # 1 equal, 0 a factor 2 apart
    unlike = np.where(has_sister, np.maximum(features["sisters"] - 2.0, 0.0), 0.0)  # log2 units beyond a factor 4
    size = shrink - cfg.division_symmetry_weight * halving * alike + cfg.division_unlike_weight * unlike
    cost = cost + cfg.use_area * np.where(features["mother_on_border"] > 0, 0.0, size)
    cost = cost + 0.5 * cfg.overlap_weight * (1.0 - features["overlap"])
    cost = cost + cfg.division_touch_penalty * features["sisters_touch"]
    return cost + cfg.gap_penalty * features["gap"]
