"""Learned link costs: the probability that two detections are the same cell, or mother and daughter.

Two logistic regressions (scikit-learn) over the features linking already computes,
fitted to annotated tracks and used inside the same two-step assignment:

- *link*: :func:`~cytolens.track.linking.link_features` of a pair of detections (distance
  in cell diameters, absolute log2 area and intensity changes, mask IoU, frames missed);
  positives are pairs of the same cell 1 to ``max_gap + 1`` frames apart, negatives the
  other pairs within twice the search radius or overlapping;
- *division*: :func:`~cytolens.track.linking.division_features` of every split candidate
  that linking considers on the training movie (after its frame-to-frame step, so the
  features are distributed as they will be when the model is used); positives are
  daughters of a mother that divides there.

The regressions see columns chosen so that each acts one way (squared displacement
per frame elapsed, as for Brownian motion; absolute log area change; IoU), and are
fitted with balanced classes, so their log-odds are likelihood ratios that do not depend
on how crowded the training movie was. The prior odds come from the annotation too: how
often a track ends, a detection is missed, a cell divides. A link is taken when its
likelihood ratio beats the death and birth it replaces, a closed gap also pays for each
missed detection, and a split must beat a birth given how rare divisions are (see
:class:`LinkCostModel`, a :class:`~cytolens.track.costs.LinkCost`). With fewer than
``min_divisions`` annotated divisions the division part is left out and the hand-made
division cost is used on the same scale.

The model is a small JSON file (coefficients and feature scaling; nothing pickled).

>>> import numpy as np, pandas as pd
>>> rows = [{"t": t, "y": 10.0 + 3 * k + t, "x": 10.0 * k, "area": 40.0, "track_id": k + 1, "parent_track_id": 0}
...         for t in range(6) for k in range(4)]
>>> model = fit_link_model(pd.DataFrame(rows))
>>> model.division is None
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from cytolens.errors import InvalidParameterError
from cytolens.track.config import TrackingConfig
from cytolens.track.costs import LinkPairs, hand_split_cost
from cytolens.track.detections import Movie, Overlaps
from cytolens.track.linking import _frame_links, _segments, frame_candidates, link_features, segment_candidates

FORMAT = "cytolens.track.learned/1"
LOGIT_CAP = 30.0  # log-odds are clipped to +-LOGIT_CAP; costs add multiples of it to stay non-negative
# model columns, each computed from the features linking measures (see _column): the log-odds are linear in
# them, so each column is chosen to make its effect one-sided (e.g. Brownian motion: log-odds fall with d^2 / frames)
COLUMNS = {
    "diffusion": lambda f: f["distance"] ** 2 / (f["gap"] + 1.0),
    "distance^2": lambda f: f["distance"] ** 2,
    "offset^2": lambda f: f["offset"] ** 2,
    "larger_daughter_above_half": lambda f: np.maximum(f["larger_daughter"] + 1.0, 0.0) ** 2,
}
LINK_COLUMNS = ["diffusion", "area_change", "overlap", "intensity_change", "gap"]
DIVISION_COLUMNS = ["distance^2", "offset^2", "has_sister", "larger_daughter", "larger_daughter_above_half", "sisters",
                    "overlap", "gap", "mother_on_border"]
TRAINING_REACH = 2.0  # link examples come from pairs within this many search radii (negatives are scarce when sparse)
HAND_SCALE = 4.0  # log-odds per unit of (birth_cost - hand-made split cost) when no division model was fitted


def _column(features: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(COLUMNS[name](features) if name in COLUMNS else features[name], float)


class LogisticModel(BaseModel):
    """One logistic regression over named columns (:data:`COLUMNS` or features), standardized."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    positives: int
    negatives: int

    def design(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The standardized design matrix."""
        return (_design(features, self.columns) - np.asarray(self.mean)) / np.asarray(self.scale)

    def logit(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Log-odds of the positive class, clipped to +-LOGIT_CAP."""
        value = self.design(features) @ np.asarray(self.coef) + self.intercept
        return np.clip(value, -LOGIT_CAP, LOGIT_CAP)


def _rarity(rate: float) -> float:
    """Log-odds against an event of this rate: log((1 - rate) / rate)."""
    return float(np.log((1.0 - rate) / rate))


class LinkCostModel(BaseModel):
    """Learned link and division probabilities, saved as JSON (:meth:`save`, :func:`load_link_model`).

    A :class:`~cytolens.track.costs.LinkCost`: give it to :func:`~cytolens.track.linking.link`
    as ``cost=`` (``cytolens.track(..., link_cost="learned", link_model=path)`` does that).

    The regressions are fitted with balanced classes, so their log-odds are likelihood
    ratios; the prior odds come from how often, in the annotation, a track ends
    (death, exit, missed detection), a detection is missed, and a cell divides. A link is
    taken when its likelihood ratio beats the birth and death it replaces; a closed gap
    pays for each missed detection; a split is taken when the division's likelihood
    ratio beats the birth it replaces, given how rare divisions are.
    """

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    trained_on: str = ""
    link: LogisticModel
    division: LogisticModel | None = None
    end_rate: float = Field(gt=0, lt=1, description="Fraction of detections whose track ends in the next frame "
                                                    "(not by dividing): deaths, exits, missed detections.")
    miss_rate: float = Field(gt=0, lt=1, description="Fraction of a cell's frames in which it was missed (closed gaps).")
    division_rate: float = Field(gt=0, lt=1, description="Fraction of detections that are a mother about to divide.")
    uses_masks: bool = Field(description="The link features include mask overlaps: linking needs label images.")
    uses_intensity: bool = Field(description="The link features include intensities: linking needs the movie.")
    cell_diameter: float = Field(description="Cell diameter of the training movie (px), for the record.")

    def link_logit(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Log likelihood ratio that each pair is the same cell."""
        return self.link.logit(features)

    def division_logit(self, features: dict[str, np.ndarray], cfg: TrackingConfig) -> np.ndarray:
        """Log likelihood ratio of each split; without a division model, the hand-made cost
        (:func:`~cytolens.track.costs.hand_split_cost`) on that scale (zero where it equals
        ``birth_cost``, plus the odds against a division, so the hand-made decision stands)."""
        if self.division is None:
            hand = HAND_SCALE * (cfg.birth_cost - hand_split_cost(features, cfg))
            return np.clip(hand + _rarity(self.division_rate) - _rarity(self.end_rate), -LOGIT_CAP, LOGIT_CAP)
        return self.division.logit(features)

    def frame_costs(self, movie: Movie, pairs: LinkPairs, cfg: TrackingConfig) -> tuple[np.ndarray, float]:
        """Step 1: link costs and the cost of leaving a detection unlinked (half a birth plus death)."""
        features = link_features(movie, pairs, diameter=cfg.cell_diameter)
        return LOGIT_CAP - self.link_logit(features), LOGIT_CAP / 2 + _rarity(self.end_rate)

    def gap_costs(self, movie: Movie, pairs: LinkPairs, cfg: TrackingConfig) -> tuple[np.ndarray, float]:
        """Step 2: gap-closing costs and the cost of a birth (the alternative of every segment start)."""
        features = link_features(movie, pairs, diameter=cfg.cell_diameter)
        base = 2 * LOGIT_CAP
        missed = np.asarray(features["gap"], float) * _rarity(self.miss_rate)
        return base - self.link_logit(features) - _rarity(self.end_rate) + missed, base + _rarity(self.end_rate)

    def split_costs(self, division: dict[str, np.ndarray], cfg: TrackingConfig) -> np.ndarray:
        """Step 2: split costs, on the scale of :meth:`gap_costs`."""
        return 2 * LOGIT_CAP - self.division_logit(division, cfg) + _rarity(self.division_rate)

    def check(self, movie: Movie) -> None:
        """Refuse detections that lack what the model was trained with."""
        if self.uses_masks and movie.overlaps is None:
            raise InvalidParameterError("this learned link model was fitted with mask overlaps: link label images "
                                        "(labels=...) with use_overlap=True, or fit a model on detections only")
        if self.uses_intensity and not np.isfinite(movie.intensity).any():
            raise InvalidParameterError("this learned link model was fitted with intensities: give the movie too")

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.model_dump_json(indent=1))
        return path


def load_link_model(path: str | os.PathLike) -> LinkCostModel:
    """Read a model written by :meth:`LinkCostModel.save`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"cannot read a learned link model from {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidParameterError(f"{path} is not a cytolens learned link model (format {FORMAT})")
    return LinkCostModel.model_validate(data)


def _design(features: dict[str, np.ndarray], columns: list[str]) -> np.ndarray:
    return np.stack([_column(features, c) for c in columns], axis=1)


def _fit(features: dict[str, np.ndarray], columns: list[str], label: np.ndarray,
         regularization: float) -> LogisticModel:
    from sklearn.linear_model import LogisticRegression

    x = _design(features, columns)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    # balanced classes: the log-odds are a likelihood ratio, free of how crowded the training movie was
    fitted = LogisticRegression(C=regularization, class_weight="balanced", max_iter=2000).fit(
        (x - mean) / scale, label.astype(int))
    return LogisticModel(columns=columns, mean=mean.tolist(), scale=scale.tolist(), coef=fitted.coef_[0].tolist(),
                         intercept=float(fitted.intercept_[0]), positives=int(label.sum()),
                         negatives=int((~label).sum()))


def _cells(tracks: pd.DataFrame) -> np.ndarray:
    """Cell identity per row: a track joined to its parent when it is the parent's only child (a closed gap)."""
    parents = tracks.groupby("track_id")["parent_track_id"].first()
    children = parents[parents > 0].value_counts()
    root = {int(k): int(k) for k in parents.index}
    for track in sorted(parents.index, key=lambda k: tracks.loc[tracks.track_id == k, "t"].min()):
        parent = int(parents[track])
        if parent > 0 and parent in root and children.get(parent, 0) == 1:
            root[int(track)] = root[parent]
    return tracks["track_id"].map(root).to_numpy(np.int64)


def _dividing(tracks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows that are a dividing mother's last detection, and each row's mother-of-its-track row (-1 = none)."""
    t = tracks["t"].to_numpy()
    track = tracks["track_id"].to_numpy(np.int64)
    parents = tracks.groupby("track_id")["parent_track_id"].first()
    children = parents[parents > 0].value_counts()
    last = tracks.groupby("track_id")["t"].transform("max").to_numpy() == t
    first = tracks.groupby("track_id")["t"].transform("min").to_numpy() == t
    mother_last = last & np.isin(track, children[children >= 2].index.to_numpy())
    last_row = pd.Series(np.flatnonzero(last), index=track[last])
    mother_of = np.full(len(tracks), -1, np.int64)
    parent_of_row = parents.reindex(track).to_numpy()
    for row in np.flatnonzero(first & (parent_of_row > 0)):
        parent = int(parent_of_row[row])
        if children.get(parent, 0) >= 2 and parent in last_row.index:
            mother_of[row] = int(last_row[parent])
    return mother_last, mother_of


def _event_rates(tracks: pd.DataFrame, cell: np.ndarray, mother_last: np.ndarray) -> dict[str, float]:
    """How often tracks end, detections are missed and cells divide (add-one smoothed)."""
    t = tracks["t"].to_numpy()
    present = set(zip(cell.tolist(), t.tolist()))
    inside = t < t.max()
    continues = np.array([(c, u + 1) in present for c, u in zip(cell.tolist(), t.tolist())])
    ends = int((inside & ~continues & ~mother_last).sum())
    span = pd.DataFrame({"cell": cell, "t": t}).groupby("cell")["t"].agg(["min", "max", "count"])
    missed = int((span["max"] - span["min"] + 1 - span["count"]).sum())
    n = int(inside.sum())
    return {"end_rate": (ends + 1) / (n + 2), "miss_rate": (missed + 1) / (len(t) + missed + 2),
            "division_rate": (int(mother_last.sum()) + 1) / (n + 2)}


def fit_link_model(tracks: pd.DataFrame, overlaps: Overlaps | None = None, *,
                   config: TrackingConfig | dict | None = None, trained_on: str = "", min_divisions: int = 3,
                   regularization: float = 1.0) -> LinkCostModel:
    """Fit link and division probabilities to annotated tracks.

    Parameters
    ----------
    tracks : DataFrame
        Detections (``t, y, x`` and optionally ``area``, ``mean_intensity``, ``touches_border``)
        with their annotated ``track_id`` and ``parent_track_id`` (CTC conventions: a track
        is contiguous in time; a division gives two tracks the same parent).
    overlaps : dict, optional
        Mask overlaps (:func:`cytolens.track.label_overlaps`); then the model uses IoU and
        needs label images when linking.
    config : TrackingConfig or dict, optional
        Candidate settings (search radius, division radius, ``max_gap``); ``None`` fields are
        estimated from ``tracks`` as in linking.
    trained_on : str
        Where the annotation came from, for the record.
    min_divisions : int
        Fit the division part only with at least this many annotated divisions.
    regularization : float
        Inverse L2 strength of the logistic regressions (scikit-learn's ``C``).
    """
    missing = [c for c in ("t", "y", "x", "track_id", "parent_track_id") if c not in tracks]
    if missing:
        raise InvalidParameterError(f"annotated tracks lack columns {missing}; they have {list(tracks.columns)}")
    table = tracks.reset_index(drop=True)
    cfg = TrackingConfig.from_kwargs(config, link_cost="hand", link_model=None).resolved(table)
    movie = Movie.from_table(table, overlaps=overlaps if cfg.use_overlap else None)
    cell = _cells(table)
    # link pairs: the same cell 1 .. max_gap + 1 frames apart, against the other candidates
    parts: dict[str, list] = {}
    labels = []
    for t in sorted(movie.frames):
        for gap in range(cfg.max_gap + 1):
            if t + gap + 1 not in movie.frames:
                continue
            i, j, distance, iou = frame_candidates(movie, t, TRAINING_REACH * cfg.search_radius * np.sqrt(gap + 1),
                                                   gap + 1)
            a, b = movie.frames[t][i], movie.frames[t + gap + 1][j]
            pairs = LinkPairs(earlier=a, later=b, distance=distance, iou=iou, gap=gap)
            for name, value in link_features(movie, pairs, diameter=cfg.cell_diameter).items():
                parts.setdefault(name, []).append(value)
            labels.append(cell[a] == cell[b])
    label = np.concatenate(labels) if labels else np.zeros(0, bool)
    if label.sum() == 0 or (~label).sum() == 0:
        raise InvalidParameterError("the annotated tracks give no positive or no negative link examples: "
                                    "need several cells followed over several frames")
    names = [n for n in LINK_COLUMNS if n != "overlap" or movie.overlaps is not None]
    uses_intensity = bool(np.isfinite(movie.intensity).any())
    if not uses_intensity:
        names.remove("intensity_change")
    link_model = _fit({n: np.concatenate(v) for n, v in parts.items()}, names, label, regularization)
    mother_last, mother_of = _dividing(table)
    model = LinkCostModel(trained_on=trained_on, link=link_model, uses_masks=movie.overlaps is not None,
                          uses_intensity=uses_intensity, cell_diameter=float(cfg.cell_diameter),
                          **_event_rates(table, cell, mother_last))
    # divisions: the split candidates linking meets after its (learned) frame-to-frame step
    if int(mother_last.sum()) < min_divisions or not cfg.divisions:
        return model
    successor = _frame_links(movie, cfg, cost=model)
    _, members = _segments(successor)
    cand = segment_candidates(movie, successor, members, cfg)
    split = cand.kind == 1  # kind 2 rows repeat kind 1 rows (a vanished mother's second daughter)
    is_daughter = mother_of[cand.start[split]] == cand.source[split]
    if is_daughter.sum() == 0 or (~is_daughter).sum() == 0:
        return model
    names = [n for n in DIVISION_COLUMNS if n != "overlap" or movie.overlaps is not None]
    model.division = _fit({k: v[cand.kind[cand.kind > 0] == 1] for k, v in cand.division.items()}, names,
                          is_daughter, regularization)
    return model


def fit_link_model_ctc(folder: str | os.PathLike, *, config: TrackingConfig | dict | None = None,
                       **kwargs) -> LinkCostModel:
    """Fit to a Cell Tracking Challenge folder: ground truth (``.../01_GT`` or its ``TRA``) or a curated result.

    Detections are the masks (``man_track*.tif`` or ``mask*.tif``; their ids are the track
    ids of ``man_track.txt`` or ``res_track.txt``). Other arguments as :func:`fit_link_model`.
    """
    from cytolens.io import read_ctc_masks, read_ctc_tracks
    from cytolens.track.detections import detect, label_overlaps

    folder = Path(folder)
    if (folder / "TRA").is_dir():
        folder = folder / "TRA"
    lineage_file = next((folder / n for n in ("man_track.txt", "res_track.txt") if (folder / n).is_file()), None)
    if lineage_file is None:
        raise InvalidParameterError(f"{folder} holds neither man_track.txt nor res_track.txt")
    movie = read_ctc_masks(folder)
    table = detect(movie)
    lineage = read_ctc_tracks(lineage_file)
    parent = dict(zip(lineage["label"].astype(int), lineage["parent"].astype(int)))
    table["track_id"] = table["label"]
    table["parent_track_id"] = table["label"].map(parent).fillna(0).astype(np.int64)
    cfg = TrackingConfig.from_kwargs(config, link_cost="hand", link_model=None)
    overlaps = label_overlaps(movie, table) if cfg.use_overlap else None
    kwargs.setdefault("trained_on", str(folder))
    return fit_link_model(table, overlaps, config=cfg, **kwargs)
