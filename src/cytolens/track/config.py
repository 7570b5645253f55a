"""Linking settings as one validated model: ``None`` means "estimate from the data"."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cytolens.errors import InvalidParameterError


class TrackingConfig(BaseModel):
    """How detections are linked into tracks (Jaqaman-style two-step LAP).

    Lengths are in pixels, times in frames. Every ``None`` is estimated from the
    detections by :meth:`resolved`; the resolved copy is what a result records.

    Examples
    --------
    >>> TrackingConfig(max_gap=1).max_gap
    1
    >>> TrackingConfig.from_kwargs(max_gapp=1)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: invalid tracking setting: max_gapp: Extra inputs are not permitted
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cell_diameter: float | None = Field(
        None, gt=0, description="Typical object diameter (px); None = from the median detection area.")
    search_radius: float | None = Field(
        None, gt=0, description="Largest frame-to-frame displacement (px); None = max(diameter, 4 x the "
                                "median nearest-neighbour displacement between frames).")
    max_gap: int = Field(2, ge=0, description="Missed frames a track may bridge (gap closing), and how many "
                                             "frames late the daughters of a vanished mother may appear; 0 = off.")
    divisions: bool = Field(True, description="Detect divisions (a new track splitting off an existing one).")
    division_radius: float | None = Field(
        None, gt=0, description="Largest mother-to-daughter distance (px); None = 1.5 x cell diameter.")
    use_overlap: bool = Field(True, description="Use mask overlap between consecutive frames when labels are given.")
    overlap_weight: float = Field(0.5, ge=0, description="Cost of a link with no overlap relative to one with "
                                                         "full overlap (in units of (displacement/radius)^2).")
    use_area: bool | None = Field(
        None, description="Use object areas in the costs; None = when areas are known and vary (coefficient of "
                          "variation >= 0.1; fixed-size markers carry no size information).")
    area_weight: float = Field(0.5, ge=0, description="Weight of the squared log2 area change (capped at 1) in "
                                                            "frame-to-frame link costs.")
    gap_area_weight: float = Field(1.0, ge=0, description="Weight of the squared log2 area change when closing "
                                                          "gaps (size is the main identity cue across a gap).")
    division_shrink_weight: float = Field(
        1.0, ge=0, description="Penalty weight for a putative mother whose larger daughter is not smaller than "
                               "it (area ratio above 2^-0.5; the mother's size is its largest area over its last "
                               "3 frames, at most 1.5 x its last, since nuclei condense before they split).")
    division_symmetry_weight: float = Field(
        0.8, ge=0, description="Bonus for a symmetric division: both daughters at most half the mother's size and "
                               "alike (within a factor 2); it can make up for daughters off the mother's axis.")
    division_unlike_weight: float = Field(
        0.5, ge=0, description="Penalty per factor 2 by which two putative sisters differ in area beyond a factor 4 "
                               "(daughters of one mitosis are alike; a speck of debris next to a nucleus is no "
                               "sister).")
    division_touch_penalty: float = Field(
        1.0, ge=0, description="Extra cost of a division whose two daughters' masks touch (within 2 px) in every "
                               "frame they share: a nucleus cut in two by the segmentation gives pieces that never "
                               "part, while daughter nuclei separate, if only later (they may touch at first). "
                               "Needs label images.")
    link_cutoff: float = Field(
        1.4, gt=0, description="A frame-to-frame link is refused when its cost exceeds this multiple of the cost of "
                               "a link at the search radius with no overlap (its birth + death alternative).")
    birth_cost: float = Field(1.0, gt=0, description="Cost of starting a track instead of closing a gap or "
                                                     "splitting; links and splits above it are refused.")
    gap_penalty: float = Field(0.1, ge=0, description="Extra cost per missed frame in gap closing.")
    link_cost: Literal["hand", "learned"] = Field(
        "hand", description="'hand': the costs above; 'learned': a model fitted to annotated tracks "
                            "(cytolens.track.learned) gives the probabilities of links and divisions.")
    link_model: str | None = Field(None, description="Path to the learned model's JSON file (link_cost='learned').")

    @model_validator(mode="after")
    def _learned_needs_a_model(self) -> TrackingConfig:
        if self.link_cost == "learned" and not self.link_model:
            raise ValueError("link_cost='learned' needs link_model, the path of a model fitted with "
                             "cytolens.track.learned.fit_link_model")
        return self

    @classmethod
    def from_kwargs(cls, config: TrackingConfig | dict | None = None, **overrides) -> TrackingConfig:
        """Build a config from another config, a dict, and/or keyword overrides; bad values raise a CytolensError."""
        try:
            if config is None:
                base: dict = {}
            elif isinstance(config, TrackingConfig):
                base = config.model_dump()
            elif isinstance(config, dict):
                base = dict(config)
            else:
                raise InvalidParameterError(f"config must be a TrackingConfig or a dict, not {type(config).__name__}")
            base.update(overrides)
            return cls(**base)
        except ValidationError as exc:
            raise InvalidParameterError(f"invalid tracking setting: {_summary(exc)}") from None

    def resolved(self, detections: pd.DataFrame) -> TrackingConfig:
        """A copy with every ``None`` estimated from ``detections`` (columns t, y, x and optionally area)."""
        values = self.model_dump()
        if values["cell_diameter"] is None:
            values["cell_diameter"] = estimate_diameter(detections)
        if values["search_radius"] is None:
            motion = estimate_motion(detections)
            values["search_radius"] = max(values["cell_diameter"], 4.0 * motion)
        if values["use_area"] is None:
            values["use_area"] = areas_vary(detections)
        if values["division_radius"] is None:
            values["division_radius"] = max(1.5 * values["cell_diameter"], values["search_radius"])
        return TrackingConfig(**values)


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "config"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def estimate_diameter(detections: pd.DataFrame) -> float:
    """Typical diameter: that of a disk with the median area; without areas, half the median neighbour spacing."""
    if "area" in detections and len(detections):
        area = float(np.median(detections["area"]))
        if area > 0:
            return float(2.0 * np.sqrt(area / np.pi))
    from scipy.spatial import cKDTree

    spacings = []
    for _, frame in detections.groupby("t"):
        if len(frame) > 1:
            points = frame[["y", "x"]].to_numpy(float)
            distance, _ = cKDTree(points).query(points, k=2)
            spacings.append(distance[:, 1])
    if not spacings:
        return 10.0
    return max(float(np.median(np.concatenate(spacings))) / 2.0, 1.0)


def estimate_motion(detections: pd.DataFrame) -> float:
    """Median distance from each detection to the nearest one in the next frame (robust to births and deaths)."""
    from scipy.spatial import cKDTree

    frames = {t: f[["y", "x"]].to_numpy(float) for t, f in detections.groupby("t")}
    distances = []
    for t, points in frames.items():
        following = frames.get(t + 1)
        if following is not None and len(following) and len(points):
            distance, _ = cKDTree(following).query(points, k=1)
            distances.append(distance)
    if not distances:
        return 0.0
    return float(np.median(np.concatenate(distances)))


def areas_vary(detections: pd.DataFrame) -> bool:
    """Whether detections carry size information: known areas with a coefficient of variation of at least 0.1."""
    if "area" not in detections:
        return False
    area = detections["area"].to_numpy(float)
    area = area[np.isfinite(area) & (area > 0)]
    if len(area) < 2:
        return False
    return bool(np.std(area) / np.mean(area) >= 0.1)
