"""Linking detections into tracks: Jaqaman-style two-step linear assignment.

1. Frame to frame: each detection of frame ``t`` is assigned to at most one of frame
   ``t + 1`` (or dies; each of ``t + 1`` may be born). Only pairs within the search
   radius, or whose masks overlap, are candidates, so the cost matrix is sparse and
   solved with :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching`.
2. Segments: the chains from step 1 are joined by a second assignment in which each
   segment start is either born, continues a segment that ended up to ``max_gap``
   frames before (gap closing), or splits off a detection of the previous frame
   (division: the mother's track ends, both daughters start). A mother whose track
   ended may also take two daughters that appear up to ``max_gap`` frames late.

Costs are squared displacements in units of the search radius, plus the squared log2
area change and, for label movies, ``overlap_weight * (1 - IoU)``. A link is taken only
when it is cheaper than the alternatives (birth/death), as in Jaqaman et al. (2008),
Nat Methods 5:695. A division is judged by :func:`division_features` (distances in cell
diameters, the daughters on either side of the mother, both smaller than the mother's
size before it condensed, the mother's mask covering the daughter).

We write this ourselves rather than call laptrack: it is the product, and the overlap
and division costs are specific to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from cytolens.track.config import TrackingConfig

Overlaps = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


def solve_assignment(n_rows: int, n_cols: int, rows: np.ndarray, cols: np.ndarray, costs: np.ndarray,
                     row_alternative: np.ndarray | float, col_alternative: np.ndarray | float) -> np.ndarray:
    """Sparse linear assignment where any row or column may stay unmatched at its alternative cost.

    Builds Jaqaman's augmented ``(n_rows + n_cols)`` square matrix (links, row and column
    alternatives, and the transposed dummy block) and solves it with sparse LAPJV.

    Returns
    -------
    ndarray, shape (K, 2)
        Matched ``(row, col)`` pairs.

    Examples
    --------
    Row 0 may take column 0 or 1, row 1 only column 1; leaving a row or column
    unmatched costs 1, so both rows are matched:

    >>> solve_assignment(2, 2, np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1., .1, .1]), 1., 1.).tolist()
    [[0, 0], [1, 1]]
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    costs = np.asarray(costs, float)
    if not len(rows) or n_rows == 0 or n_cols == 0:
        return np.zeros((0, 2), np.int64)
    row_alt = np.broadcast_to(np.asarray(row_alternative, float), (n_rows,))
    col_alt = np.broadcast_to(np.asarray(col_alternative, float), (n_cols,))
    size = n_rows + n_cols
    r_index = np.concatenate([rows, np.arange(n_rows), n_rows + np.arange(n_cols), n_rows + cols])
    c_index = np.concatenate([cols, n_cols + np.arange(n_rows), np.arange(n_cols), n_cols + rows])
    weights = np.concatenate([costs, row_alt, col_alt, np.zeros(len(rows))])
    # every full matching has n_rows + n_cols entries, so a constant shift is harmless; it keeps weights positive
    # (a sparse matrix drops zeros)
    weights = weights + 1.0 - min(float(weights.min()), 0.0)
    matrix = coo_matrix((weights, (r_index, c_index)), shape=(size, size)).tocsr()
    row_index, col_index = min_weight_full_bipartite_matching(matrix)
    keep = (row_index < n_rows) & (col_index < n_cols)
    return np.stack([row_index[keep], col_index[keep]], axis=1).astype(np.int64)


def _pairs_within(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i in a, j in b) closer than ``radius`` and their distances."""
    if not len(a) or not len(b):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    found = cKDTree(a).sparse_distance_matrix(cKDTree(b), radius, output_type="ndarray")
    i, j = found["i"].astype(np.int64), found["j"].astype(np.int64)
    distance = found["v"].astype(float)
    return i, j, distance


def _lookup(keys: np.ndarray, known_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at the positions where ``known_keys`` equals each of ``keys``; 0 where absent."""
    if not len(known_keys):
        return np.zeros(len(keys))
    order = np.argsort(known_keys)
    position = np.clip(np.searchsorted(known_keys[order], keys), 0, len(order) - 1)
    found = known_keys[order][position] == keys
    return np.where(found, values[order][position], 0.0)


def _shared_pixels(movie: Movie, t: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels shared by the masks of rows ``a`` (frame ``t``) and ``b`` (frame ``t + 1``); 0 where they do not touch."""
    oi, oj, pixels = movie.overlaps[t]
    n = len(movie.points)
    return _lookup(a * n + b, oi * n + oj, pixels)


def _log_area_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log2(np.asarray(b, float) / np.asarray(a, float))
    return np.where(np.isfinite(ratio), ratio, 0.0)


def _area_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared log2 area ratio, capped at 1: objects leaving the field or dying may shrink a lot."""
    return np.minimum(_log_area_ratio(a, b) ** 2, 1.0)


@dataclass
class Movie:
    """Detections as arrays, indexed by positional row: what every linking step reads."""

    points: np.ndarray  # (N, 2) y, x
    area: np.ndarray  # 1.0 where unknown
    intensity: np.ndarray  # NaN where unknown
    times: np.ndarray
    frames: dict[int, np.ndarray]  # t -> rows
    border: np.ndarray  # object touches the image border
    overlaps: Overlaps | None  # None: no masks (or not used)
    contacts: np.ndarray | None = None  # sorted codes a * N + b (a < b) of same-frame rows whose masks touch

    @classmethod
    def from_table(cls, table: pd.DataFrame, overlaps: Overlaps | None = None,
                   contacts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> Movie:
        area = table["area"].to_numpy(float) if "area" in table else np.full(len(table), np.nan)
        intensity = table["mean_intensity"].to_numpy(float) if "mean_intensity" in table else np.full(len(table), np.nan)
        times = table["t"].to_numpy(np.int64)
        order = np.argsort(times, kind="stable")
        return cls(points=table[["y", "x"]].to_numpy(float), area=np.where(np.isfinite(area) & (area > 0), area, 1.0),
                   intensity=intensity, times=times,
                   frames={int(t): order[times[order] == t] for t in np.unique(times)},
                   border=table["touches_border"].to_numpy(bool) if "touches_border" in table
                   else np.zeros(len(table), bool), overlaps=overlaps,
                   contacts=None if contacts is None else _contact_codes(contacts, len(table)))

    def touching(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether the masks of rows ``a`` and ``b`` (same frame) touch; False where unknown or b < 0."""
        if self.contacts is None or not len(self.contacts):
            return np.zeros(len(a), bool)
        n = len(self.points)
        return (b >= 0) & np.isin(np.minimum(a, b) * n + np.maximum(a, b), self.contacts)


def _contact_codes(contacts: dict[int, tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    pairs = [np.minimum(a, b) * n + np.maximum(a, b) for a, b in contacts.values()]
    return np.unique(np.concatenate(pairs)).astype(np.int64) if pairs else np.zeros(0, np.int64)


def frame_candidates(movie: Movie, t: int, radius: float, step: int = 1):
    """Candidate links from frame ``t`` to ``t + step``: pairs closer than ``radius`` or (``step`` 1) whose masks overlap.

    Returns ``(i, j, distance, iou)`` with ``i``, ``j`` positions within ``movie.frames[t]`` and ``[t + step]``.
    """
    src, dst = movie.frames[t], movie.frames[t + step]
    points, area = movie.points, movie.area
    i, j, distance = _pairs_within(points[src], points[dst], radius)
    iou = np.zeros(len(i))
    if movie.overlaps is not None and step == 1:
        oi, oj, pixels = movie.overlaps.get(t, (np.zeros(0, np.int64),) * 2 + (np.zeros(0),))
        if len(oi):
            # positions of overlapping pairs within src/dst
            src_pos = np.full(len(points), -1, np.int64)
            dst_pos = np.full(len(points), -1, np.int64)
            src_pos[src] = np.arange(len(src))
            dst_pos[dst] = np.arange(len(dst))
            oi, oj = src_pos[oi], dst_pos[oj]
            ov_iou = pixels / (area[src[oi]] + area[dst[oj]] - pixels)
            key = i * len(dst) + j
            okey = oi * len(dst) + oj
            iou = _lookup(key, okey, ov_iou)
            new = ~np.isin(okey, key)  # overlapping but farther than the radius: still candidates
            if new.any():
                ni, nj = oi[new], oj[new]
                i = np.concatenate([i, ni])
                j = np.concatenate([j, nj])
                distance = np.concatenate([distance, np.linalg.norm(points[src[ni]] - points[dst[nj]], axis=1)])
                iou = np.concatenate([iou, ov_iou[new]])
    return i, j, distance, iou


def link_features(movie: Movie, a: np.ndarray, b: np.ndarray, distance: np.ndarray, iou: np.ndarray,
                  gap: np.ndarray | int, diameter: float) -> dict[str, np.ndarray]:
    """What speaks for detections ``a`` and ``b`` (rows, ``b`` later) being the same cell; lengths in cell diameters.

    ``gap`` counts the frames missed between them (0 = consecutive frames).
    """
    return {
        "distance": np.asarray(distance, float) / diameter,
        "area_change": np.abs(_log_area_ratio(movie.area[a], movie.area[b])),
        "overlap": np.asarray(iou, float),
        "intensity_change": np.abs(_log_area_ratio(movie.intensity[a], movie.intensity[b])),
        "gap": np.broadcast_to(np.asarray(gap, float), (len(a),)).copy(),
    }


def _frame_links(movie: Movie, cfg: TrackingConfig, model=None, progress: Callable | None = None) -> np.ndarray:
    """Step 1: successor row of every detection (-1 = none)."""
    successor = np.full(len(movie.points), -1, np.int64)
    radius = cfg.search_radius
    with_masks = movie.overlaps is not None
    steps = [t for t in sorted(movie.frames) if t + 1 in movie.frames]
    for t in (progress(steps, desc="linking frames") if progress else steps):
        src, dst = movie.frames[t], movie.frames[t + 1]
        i, j, distance, iou = frame_candidates(movie, t, radius)
        if not len(i):
            continue
        if model is not None:  # learned: costs from the log-odds of being the same cell
            cost, alternative = model.frame_costs(link_features(movie, src[i], dst[j], distance, iou, 0,
                                                                cfg.cell_diameter))
        else:
            cost = (distance / radius) ** 2 + cfg.use_area * cfg.area_weight * _area_change(
                movie.area[src[i]], movie.area[dst[j]])
            if with_masks:
                cost = cost + cfg.overlap_weight * (1.0 - iou)
            # alternatives: a link is worth taking when cheaper than one death plus one birth
            alternative = 0.5 * cfg.link_cutoff * (1.0 + cfg.overlap_weight * with_masks + cfg.use_area * cfg.area_weight)
        matched = solve_assignment(len(src), len(dst), i, j, cost, alternative, alternative)
        successor[src[matched[:, 0]]] = dst[matched[:, 1]]
    return successor


def _segments(successor: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Chains of successor links: segment id per row and the rows of each segment, in time order."""
    n = len(successor)
    has_predecessor = np.zeros(n, bool)
    has_predecessor[successor[successor >= 0]] = True
    segment_of = np.full(n, -1, np.int64)
    members = []
    for start in np.flatnonzero(~has_predecessor):
        chain = [start]
        while successor[chain[-1]] >= 0:
            chain.append(successor[chain[-1]])
        segment_of[chain] = len(members)
        members.append(np.asarray(chain, np.int64))
    return segment_of, members


def _predecessors(successor: np.ndarray) -> np.ndarray:
    """Row linked to each detection from the previous frame (-1 = none)."""
    predecessor = np.full(len(successor), -1, np.int64)
    linked = successor >= 0
    predecessor[successor[linked]] = np.flatnonzero(linked)
    return predecessor


def _mother_size(area: np.ndarray, predecessor: np.ndarray, rows: np.ndarray, frames: int = 3,
                 condensation: float = 1.5) -> np.ndarray:
    """The size a mother's daughters share: the largest of its last ``frames`` areas, at most ``condensation`` x the last.

    A nucleus condenses in the frame or two before it splits (prophase/metaphase), so its
    last area understates its size (by up to a third here; a steeper drop is not
    condensation); a rounding cell grows instead, and then its last area is the largest.
    """
    last = area[rows].astype(float)
    size = last.copy()
    current = np.asarray(rows, np.int64)
    for _ in range(frames - 1):
        current = np.where(current >= 0, predecessor[np.maximum(current, 0)], -1)
        size = np.where(current >= 0, np.fmax(size, area[np.maximum(current, 0)]), size)
    return np.minimum(size, condensation * last)


def _presumed_sisters(points: np.ndarray, mother: np.ndarray, daughter: np.ndarray) -> np.ndarray:
    """For a mother that vanished: each daughter's sister among the other candidate daughters of the same mother.

    The sister is the one whose midpoint with the daughter lies closest to the mother
    (daughters sit on either side of where their mother was); -1 when there is none.
    """
    sister = np.full(len(mother), -1, np.int64)
    for m in np.unique(mother):
        k = np.flatnonzero(mother == m)
        if len(k) < 2:
            continue
        d = daughter[k]
        mid = (points[d][:, None, :] + points[d][None, :, :]) / 2
        offset = np.linalg.norm(mid - points[m], axis=2)
        np.fill_diagonal(offset, np.inf)
        sister[k] = d[np.argmin(offset, axis=1)]
    return sister


def division_features(points, area, mother_size, mother, daughter, sister, distance, overlap_fraction, gap,
                      mother_on_border, diameter: float, sisters_touch=None) -> dict[str, np.ndarray]:
    """What speaks for or against ``daughter`` having split off ``mother`` (lengths in cell diameters).

    ``sister`` is the other daughter (the mother's continuation, or the presumed sister
    of a vanished mother; -1 = none), ``gap`` the frames between the mother and the daughter
    minus one, ``overlap_fraction`` the part of the daughter's mask the mother covered,
    ``mother_on_border`` whether the image border cuts the mother (its area is not its size),
    ``sisters_touch`` whether the two daughters' masks touch in their first frame.
    """
    has_sister = sister >= 0
    sister_row = np.where(has_sister, sister, 0)
    larger = np.where(has_sister, np.fmax(area[sister_row], area[daughter]), area[daughter])
    mid = np.where(has_sister[:, None], (points[sister_row] + points[daughter]) / 2, points[daughter])
    return {
        "distance": distance / diameter,
        "offset": np.linalg.norm(mid - points[mother], axis=1) / diameter,
        "has_sister": has_sister.astype(float),
        "larger_daughter": _log_area_ratio(mother_size, larger),  # < 0: both daughters smaller than the mother
        "sisters": np.where(has_sister, np.abs(_log_area_ratio(area[sister_row], area[daughter])), 0.0),
        "overlap": np.asarray(overlap_fraction, float),
        "gap": np.asarray(gap, float),
        "mother_on_border": np.asarray(mother_on_border, float),
        "sisters_touch": np.zeros(len(mother)) if sisters_touch is None else np.asarray(sisters_touch, float),
    }


def _split_cost(features: dict[str, np.ndarray], cfg: TrackingConfig) -> np.ndarray:
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

    Daughters whose masks touch in their first frame cost ``division_touch_penalty``
    more: daughter nuclei are told apart once they have separated, while a nucleus that
    the segmentation cuts in two gives touching pieces.
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


@dataclass
class SegmentCandidates:
    """Step-2 candidates: each segment start may continue an earlier end (gap closing) or split off a mother."""

    starts: np.ndarray  # first rows of the segments that may be joined
    source: np.ndarray  # row of the end (gap closing) or of the mother (split)
    start: np.ndarray  # row of the segment start
    kind: np.ndarray  # 0 = gap closing, 1 = split, 2 = second split of a vanished mother
    gap: np.ndarray  # frames missed between source and start
    distance: np.ndarray
    iou: np.ndarray  # mask overlap of consecutive-frame gap closings (0 otherwise)
    division: dict[str, np.ndarray]  # division_features of the split candidates (kind > 0), in order


def segment_candidates(movie: Movie, successor: np.ndarray, members: list[np.ndarray],
                       cfg: TrackingConfig) -> SegmentCandidates:
    """All gap-closing and split candidates between the segments of step 1.

    A mother is a detection of the frame before the daughter (its continuation, if any,
    is the other daughter) or, when its track ended there, up to ``max_gap`` frames
    before: daughters may appear late (missed, out of focus). A vanished mother needs two
    candidate daughters, and may take both.
    """
    points, area, times, frames = movie.points, movie.area, movie.times, movie.frames
    starts = np.array([m[0] for m in members], np.int64)
    ends = np.array([m[-1] for m in members], np.int64)
    t_first, t_last = min(frames), max(frames)
    starts = starts[times[starts] > t_first]
    ends = ends[times[ends] < t_last]
    predecessor = _predecessors(successor)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("source", "start", "kind", "gap", "distance", "iou")}
    division: dict[str, list[np.ndarray]] = {}

    def add(source, start, kind, gap, distance, iou):
        for key, value in zip(parts, (source, start, kind, gap, distance, iou)):
            parts[key].append(np.broadcast_to(np.asarray(value), (len(source),)).copy())

    ends_by_t = pd.Series(ends).groupby(times[ends]).apply(np.asarray).to_dict() if len(ends) else {}
    starts_by_t = pd.Series(starts).groupby(times[starts]).apply(np.asarray).to_dict() if len(starts) else {}
    for ts, s_rows in starts_by_t.items():
        for gap in range(cfg.max_gap + 1):
            e_rows = ends_by_t.get(ts - 1 - gap)
            if e_rows is None:
                continue
            i, j, distance = _pairs_within(points[e_rows], points[s_rows], cfg.search_radius * np.sqrt(gap + 1))
            iou = np.zeros(len(i))
            if gap == 0 and movie.overlaps is not None and (ts - 1) in movie.overlaps and len(i):
                a, b = e_rows[i], s_rows[j]
                shared = _shared_pixels(movie, ts - 1, a, b)
                iou = shared / (area[a] + area[b] - shared)
            add(e_rows[i], s_rows[j], 0, gap, distance, iou)
        if not cfg.divisions:
            continue
        for late in range(cfg.max_gap + 1):
            m_rows = frames.get(ts - 1) if late == 0 else ends_by_t.get(ts - 1 - late)
            if m_rows is None:
                continue
            i, j, distance = _pairs_within(points[m_rows], points[s_rows], cfg.division_radius)
            if not len(i):
                continue
            mother, daughter = m_rows[i], s_rows[j]
            sister = successor[mother].copy()
            vanished = sister < 0
            if vanished.any():
                sister[vanished] = _presumed_sisters(points, mother[vanished], daughter[vanished])
            keep = ~vanished | (sister >= 0)  # a vanished mother needs two daughters
            mother, daughter, sister, distance = mother[keep], daughter[keep], sister[keep], distance[keep]
            vanished = vanished[keep]
            if not len(mother):
                continue
            if movie.overlaps is None:
                fraction = np.ones(len(mother))  # no masks: no overlap evidence either way
            elif late == 0 and (ts - 1) in movie.overlaps:
                fraction = _shared_pixels(movie, ts - 1, mother, daughter) / area[daughter]
            else:
                fraction = np.zeros(len(mother))
            features = division_features(points, area, _mother_size(area, predecessor, mother), mother, daughter,
                                         sister, distance, fraction, np.full(len(mother), late), movie.border[mother],
                                         cfg.cell_diameter, movie.touching(daughter, sister))
            for kind, which in ((1, np.ones(len(mother), bool)), (2, vanished)):
                if which.any():
                    add(mother[which], daughter[which], kind, late, distance[which], 0.0)
                    for key, value in features.items():
                        division.setdefault(key, []).append(value[which])
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    return SegmentCandidates(starts=starts, source=joined["source"].astype(np.int64),
                             start=joined["start"].astype(np.int64), kind=joined["kind"].astype(np.int64),
                             gap=joined["gap"].astype(np.int64), distance=joined["distance"].astype(float),
                             iou=joined["iou"].astype(float),
                             division={k: np.concatenate(v) for k, v in division.items()})


def _segment_costs(movie: Movie, cand: SegmentCandidates, cfg: TrackingConfig, model=None) -> tuple[np.ndarray, float]:
    """Cost of every candidate and the cost of a birth (a candidate is refused when it costs more)."""
    cost = np.zeros(len(cand.source))
    closing, split = cand.kind == 0, cand.kind > 0
    a, b = cand.source[closing], cand.start[closing]
    if model is not None:
        features = link_features(movie, a, b, cand.distance[closing], cand.iou[closing], cand.gap[closing],
                                 cfg.cell_diameter)
        cost[closing], birth = model.gap_costs(features)
        if split.any():
            cost[split] = model.split_costs(cand.division, _split_cost(cand.division, cfg), cfg)
        return cost, birth
    radius = cfg.search_radius * np.sqrt(cand.gap[closing] + 1)
    cost[closing] = ((cand.distance[closing] / radius) ** 2
                     + cfg.use_area * cfg.gap_area_weight * _area_change(movie.area[a], movie.area[b])
                     + cfg.gap_penalty * cand.gap[closing])
    if split.any():
        cost[split] = _split_cost(cand.division, cfg)
    return cost, cfg.birth_cost


def _segment_links(movie: Movie, successor: np.ndarray, members: list[np.ndarray], cfg: TrackingConfig, model=None):
    """Step 2: gap closing and splitting. Returns ``(gap_links, split_links)``, lists of ``(row_from, row_to, cost)``."""
    cand = segment_candidates(movie, successor, members, cfg)
    if not len(cand.source):
        return [], []
    cost, birth = _segment_costs(movie, cand, cfg, model)
    start_col = np.full(len(movie.points), -1, np.int64)
    start_col[cand.starts] = np.arange(len(cand.starts))
    cols = start_col[cand.start]
    # one LAP row per (detection, kind): a detection may both continue and be a mother
    unique_keys, row_index = np.unique(cand.source * 3 + cand.kind, return_inverse=True)
    keep = cost < birth
    matched = solve_assignment(len(unique_keys), len(cand.starts), row_index[keep], cols[keep], cost[keep], 0.0, birth)
    pair_cost = dict(zip(zip(row_index[keep].tolist(), cols[keep].tolist()), cost[keep].tolist()))
    gap_links, split_links = [], []
    for r, c in matched.tolist():
        source, kind = divmod(int(unique_keys[r]), 3)
        (split_links if kind else gap_links).append((source, int(cand.starts[c]), pair_cost[(r, c)]))
    return gap_links, split_links


def _resolve_divisions(successor, gap_links, split_links):
    """Mothers keep at most two children, the cheapest; a vanished mother left with one split daughter continues.

    Returns ``(gap_links, split_links)`` as lists of ``(row_from, row_to)``.
    """
    children: dict[int, list[tuple[float, int, int]]] = {}  # mother -> (cost, child, kind: 0 gap, 1 split)
    for end, start, cost in gap_links:
        children.setdefault(end, []).append((cost, start, 0))
    for mother, daughter, cost in split_links:
        children.setdefault(mother, []).append((cost, daughter, 1))
    gaps, splits = [], []
    for mother, found in children.items():
        continuing = int(successor[mother] >= 0)
        found = sorted(found)[: 2 - continuing]
        if not continuing and len(found) == 1:
            gaps.append((mother, found[0][1]))  # one child: a continuation, not a division
            continue
        for _, child, kind in found:
            (splits if kind or continuing else gaps).append((mother, child))
    return gaps, splits


def link(detections: pd.DataFrame, config: TrackingConfig | None = None, overlaps: Overlaps | None = None,
         progress: Callable | None = None, model=None,
         contacts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> pd.DataFrame:
    """Link detections into tracks with divisions.

    Parameters
    ----------
    detections : DataFrame
        One row per object per frame with ``t, y, x`` (and ``area``; see :func:`cytolens.track.detect`).
    config : TrackingConfig, optional
        Settings; ``None`` fields are estimated from ``detections``. Pass a resolved one to skip estimation.
    overlaps : dict, optional
        Mask overlaps between consecutive frames (:func:`cytolens.track.label_overlaps`), keyed by
        the positional row numbers of ``detections``.
    progress : callable, optional
        ``tqdm``-like wrapper for the frame loop.
    model : LinkCostModel, optional
        A learned cost (:mod:`cytolens.track.learned`) to use instead of the hand-made one;
        by default the one ``config.link_model`` names when ``config.link_cost == "learned"``.
    contacts : dict, optional
        Objects of the same frame whose masks touch (:func:`cytolens.track.label_contacts`),
        by row number: daughters that touch make a division less likely.

    Returns
    -------
    DataFrame
        ``detections`` plus ``track_id`` (1, 2, ...; each track is contiguous in time) and
        ``parent_track_id`` (0 = none; a division gives two tracks the same parent, a
        closed gap gives one).

    Examples
    --------
    >>> table = pd.DataFrame({"t": [0, 1, 2, 0, 1, 2], "y": [0, 1, 2, 50, 50, 50], "x": [0, 0, 0, 9, 9, 9],
    ...                       "area": 20.0})
    >>> link(table)["track_id"].tolist()
    [1, 1, 1, 2, 2, 2]
    """
    cfg = (config or TrackingConfig()).resolved(detections)
    if model is None and cfg.link_cost == "learned":
        from cytolens.track.learned import load_link_model

        model = load_link_model(cfg.link_model)
    table = detections.reset_index(drop=True)
    movie = Movie.from_table(table, overlaps if cfg.use_overlap else None, contacts if cfg.use_overlap else None)
    if model is not None:
        model.check(movie)
    points, times = movie.points, movie.times
    successor = _frame_links(movie, cfg, model, progress)
    segment_of, members = _segments(successor)
    gap_links, split_links = _resolve_divisions(successor, *_segment_links(movie, successor, members, cfg, model))
    # Build the final tracks: cut each mother's chain after the mother, join consecutive gap links.
    mothers = {m for m, _ in split_links}
    parent_row: dict[int, int] = {}  # first row of a track -> last row of its parent track
    for mother, daughter in split_links:
        parent_row[daughter] = mother
        sibling = int(successor[mother])
        if sibling >= 0:
            successor[mother] = -1
            parent_row[sibling] = mother
    for end, start in gap_links:
        if end in mothers:  # the end also divided: its continuation is the other daughter
            parent_row[start] = end
        elif times[start] - times[end] == 1:
            successor[end] = start
        else:
            parent_row[start] = end
    segment_of, members = _segments(successor)
    order = sorted(range(len(members)), key=lambda k: (times[members[k][0]], points[members[k][0]].tolist()))
    track_of_segment = np.empty(len(members), np.int64)
    track_of_segment[order] = np.arange(1, len(members) + 1)
    track_id = track_of_segment[segment_of]
    parent = np.zeros(len(table), np.int64)
    for k, rows in enumerate(members):
        first = int(rows[0])
        if first in parent_row:
            parent[rows] = track_id[parent_row[first]]
    out = table.copy()
    out["track_id"] = track_id
    out["parent_track_id"] = parent
    out.attrs["config"] = cfg.model_dump()
    return out
