"""Linking detections into tracks: Jaqaman-style two-step linear assignment.

1. Frame to frame: each detection of frame ``t`` is assigned to at most one of frame
   ``t + 1`` (or dies; each of ``t + 1`` may be born). Only pairs within the search
   radius, or whose masks overlap, are candidates, so the cost matrix is sparse and
   solved with :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching`.
2. Segments: the chains from step 1 are joined by a second assignment in which each
   segment start is either born, continues a segment that ended up to ``max_gap``
   frames before (gap closing), or splits off a detection of the previous frame
   (division: the mother's track ends, both daughters start).

Costs are squared displacements in units of the search radius, plus the squared log2
area change and, for label movies, ``overlap_weight * (1 - IoU)``. A link is taken only
when it is cheaper than the alternatives (birth/death), as in Jaqaman et al. (2008),
Nat Methods 5:695.

We write this ourselves rather than call laptrack: it is the product, and the overlap
and division costs are specific to it.
"""

from __future__ import annotations

from collections.abc import Callable

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
    offset = 1.0  # every full matching has n_rows + n_cols entries, so a constant shift is harmless; avoids zeros
    size = n_rows + n_cols
    r_index = np.concatenate([rows, np.arange(n_rows), n_rows + np.arange(n_cols), n_rows + cols])
    c_index = np.concatenate([cols, n_cols + np.arange(n_rows), np.arange(n_cols), n_cols + rows])
    weights = np.concatenate([costs, row_alt, col_alt, np.zeros(len(rows))]) + offset
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


def _log_area_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log2(np.asarray(b, float) / np.asarray(a, float))
    return np.where(np.isfinite(ratio), ratio, 0.0)


def _area_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared log2 area ratio, capped at 1: objects leaving the field or dying may shrink a lot."""
    return np.minimum(_log_area_ratio(a, b) ** 2, 1.0)


def _frame_links(points: np.ndarray, area: np.ndarray, frames: dict[int, np.ndarray], overlaps: Overlaps | None,
                 cfg: TrackingConfig, progress: Callable | None) -> np.ndarray:
    """Step 1: successor row of every detection (-1 = none)."""
    successor = np.full(len(points), -1, np.int64)
    radius = cfg.search_radius
    times = sorted(frames)
    steps = [t for t in times if t + 1 in frames]
    for t in (progress(steps, desc="linking frames") if progress else steps):
        src, dst = frames[t], frames[t + 1]
        i, j, distance = _pairs_within(points[src], points[dst], radius)
        iou = np.zeros(len(i))
        if overlaps is not None and cfg.use_overlap:
            oi, oj, pixels = overlaps.get(t, (np.zeros(0, np.int64),) * 2 + (np.zeros(0),))
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
        if not len(i):
            continue
        cost = (distance / radius) ** 2 + cfg.use_area * cfg.area_weight * _area_change(area[src[i]], area[dst[j]])
        if overlaps is not None and cfg.use_overlap:
            cost = cost + cfg.overlap_weight * (1.0 - iou)
        # alternatives: a link is worth taking when cheaper than one death plus one birth
        alternative = 0.5 * cfg.link_cutoff * (1.0 + cfg.overlap_weight * (overlaps is not None and cfg.use_overlap)
                                               + cfg.use_area * cfg.area_weight)
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


def _split_cost(points, area, successor, mother, daughter, distance, overlap_fraction, cfg, border=None):
    """Cost that ``daughter`` (a segment start at t) split off ``mother`` (a detection at t - 1).

    The area term is dropped for mothers cut by the image border (their area is not their size).
    """
    sibling = successor[mother]
    has_sibling = sibling >= 0
    sibling_area = np.where(has_sibling, area[np.where(has_sibling, sibling, 0)], np.nan)
    larger = np.where(has_sibling, np.fmax(sibling_area, area[daughter]), area[daughter])
    shrink = _log_area_ratio(area[mother], larger)  # < 0 when both daughters are smaller than the mother
    cost = (distance / cfg.division_radius) ** 2
    shrink_penalty = cfg.use_area * cfg.division_shrink_weight * np.maximum(shrink + 0.5, 0.0) ** 2
    if border is not None:
        shrink_penalty = np.where(border[mother], 0.0, shrink_penalty)
    cost = cost + shrink_penalty
    cost = cost + 0.5 * cfg.overlap_weight * (1.0 - overlap_fraction)
    # the daughters should sit on either side of the mother's position
    mid = np.where(has_sibling[:, None], (points[np.where(has_sibling, sibling, 0)] + points[daughter]) / 2,
                   points[daughter])
    offset = np.linalg.norm(mid - points[mother], axis=1)
    cost = cost + np.where(has_sibling, (offset / cfg.division_radius) ** 2, 0.5)
    return cost


def _segment_links(points, area, times, frames, successor, segment_of, members, overlaps, cfg, border=None):
    """Step 2: gap closing and splitting. Returns (gap_links, split_links) as lists of (row_from, row_to)."""
    starts = np.array([m[0] for m in members], np.int64)
    ends = np.array([m[-1] for m in members], np.int64)
    t_first, t_last = min(frames), max(frames)
    starts = starts[times[starts] > t_first]
    ends = ends[times[ends] < t_last]
    if not len(starts):
        return [], []
    start_col = {int(s): k for k, s in enumerate(starts)}
    rows_from: list[np.ndarray] = []  # detection row of the end or the mother
    cols: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    kinds: list[np.ndarray] = []  # 0 = gap closing, 1 = split
    ends_by_t = pd.Series(ends).groupby(times[ends]).apply(np.asarray).to_dict() if len(ends) else {}
    starts_by_t = pd.Series(starts).groupby(times[starts]).apply(np.asarray).to_dict()
    for ts, s_rows in starts_by_t.items():
        for gap in range(1, cfg.max_gap + 2):
            e_rows = ends_by_t.get(ts - gap)
            if e_rows is None:
                continue
            radius = cfg.search_radius * np.sqrt(gap)
            i, j, distance = _pairs_within(points[e_rows], points[s_rows], radius)
            if not len(i):
                continue
            cost = (distance / radius) ** 2 + cfg.use_area * cfg.gap_area_weight * _area_change(
                area[e_rows[i]], area[s_rows[j]])
            cost = cost + cfg.gap_penalty * (gap - 1)
            rows_from.append(e_rows[i])
            cols.append(np.array([start_col[int(s)] for s in s_rows[j]], np.int64))
            costs.append(cost)
            kinds.append(np.zeros(len(i), np.int64))
        if cfg.divisions and ts - 1 in frames:
            m_rows = frames[ts - 1]
            i, j, distance = _pairs_within(points[m_rows], points[s_rows], cfg.division_radius)
            if len(i):
                mother, daughter = m_rows[i], s_rows[j]
                fraction = np.zeros(len(i))
                if overlaps is not None and cfg.use_overlap and (ts - 1) in overlaps:
                    oi, oj, pixels = overlaps[ts - 1]
                    fraction = _lookup(mother * len(points) + daughter, oi * len(points) + oj, pixels)
                    fraction = fraction / area[daughter]
                elif overlaps is None or not cfg.use_overlap:
                    fraction = np.ones(len(i))  # no masks: no overlap evidence either way
                cost = _split_cost(points, area, successor, mother, daughter, distance, fraction, cfg, border)
                rows_from.append(mother)
                cols.append(np.array([start_col[int(s)] for s in daughter], np.int64))
                costs.append(cost)
                kinds.append(np.ones(len(i), np.int64))
    if not rows_from:
        return [], []
    rows_from_all = np.concatenate(rows_from)
    cols_all = np.concatenate(cols)
    costs_all = np.concatenate(costs)
    kinds_all = np.concatenate(kinds)
    # one LAP row per (detection, kind): a detection may both continue and be a mother
    row_keys = rows_from_all * 2 + kinds_all
    unique_keys, row_index = np.unique(row_keys, return_inverse=True)
    keep = costs_all < cfg.birth_cost
    matched = solve_assignment(len(unique_keys), len(starts), row_index[keep], cols_all[keep], costs_all[keep],
                               0.0, cfg.birth_cost)
    gap_links, split_links = [], []
    for r, c in matched.tolist():
        source, kind = divmod(int(unique_keys[r]), 2)
        (split_links if kind else gap_links).append((source, int(starts[c])))
    return gap_links, split_links


def link(detections: pd.DataFrame, config: TrackingConfig | None = None, overlaps: Overlaps | None = None,
         progress: Callable | None = None) -> pd.DataFrame:
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
    table = detections.reset_index(drop=True)
    points = table[["y", "x"]].to_numpy(float)
    area = table["area"].to_numpy(float) if "area" in table else np.full(len(table), np.nan)
    area = np.where(np.isfinite(area) & (area > 0), area, 1.0)
    times = table["t"].to_numpy(np.int64)
    order = np.argsort(times, kind="stable")
    frames = {int(t): order[times[order] == t] for t in np.unique(times)}
    successor = _frame_links(points, area, frames, overlaps, cfg, progress)
    segment_of, members = _segments(successor)
    border = table["touches_border"].to_numpy(bool) if "touches_border" in table else None
    gap_links, split_links = _segment_links(points, area, times, frames, successor, segment_of, members,
                                            overlaps, cfg, border)
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
