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

Costs come from a :class:`~cytolens.track.costs.LinkCost` object: by default the hand-made
one (:class:`~cytolens.track.costs.HandLinkCost`: squared displacements in units of the
search radius, plus the squared log2 area change and, for label movies,
``overlap_weight * (1 - IoU)``), or a learned one (:class:`cytolens.track.learned.LinkCostModel`).
A link is taken only when it is cheaper than the alternatives (birth/death), as in Jaqaman
et al. (2008), Nat Methods 5:695. A division is judged by :func:`division_features` (distances
in cell diameters, the daughters on either side of the mother, both smaller than the mother's
size before it condensed, the mother's mask covering the daughter, the daughters parting at
some point of their common life).

We write this ourselves rather than call laptrack: it is the product, and the overlap
and division costs are specific to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from cytolens.errors import InvalidParameterError
from cytolens.progress import ProgressCallback, reporter
from cytolens.track.config import TrackingConfig
from cytolens.track.costs import HandLinkCost, LinkCost, LinkPairs, _log_area_ratio
from cytolens.track.detections import Contacts, Movie, Overlaps


def solve_assignment(n_rows: int, n_cols: int, rows: np.ndarray, cols: np.ndarray, costs: np.ndarray, *,
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

    >>> rows, cols, costs = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1., .1, .1])
    >>> solve_assignment(2, 2, rows, cols, costs, row_alternative=1., col_alternative=1.).tolist()
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


def link_features(movie: Movie, pairs: LinkPairs, *, diameter: float) -> dict[str, np.ndarray]:
    """What speaks for each pair of detections being the same cell; lengths in cell diameters.

    >>> table = pd.DataFrame({"t": [0, 1], "y": [0.0, 3.0], "x": [0.0, 4.0], "area": [10.0, 20.0]})
    >>> pairs = LinkPairs(earlier=np.array([0]), later=np.array([1]), distance=np.array([5.0]), iou=np.zeros(1))
    >>> {k: v.tolist() for k, v in link_features(Movie.from_table(table), pairs, diameter=10.0).items()}
    {'distance': [0.5], 'area_change': [1.0], 'overlap': [0.0], 'intensity_change': [0.0], 'gap': [0.0]}
    """
    a, b = pairs.earlier, pairs.later
    return {
        "distance": np.asarray(pairs.distance, float) / diameter,
        "area_change": np.abs(_log_area_ratio(movie.area[a], movie.area[b])),
        "overlap": np.asarray(pairs.iou, float),
        "intensity_change": np.abs(_log_area_ratio(movie.intensity[a], movie.intensity[b])),
        "gap": np.broadcast_to(np.asarray(pairs.gap, float), (len(a),)).copy(),
    }


def _frame_links(movie: Movie, cfg: TrackingConfig, *, cost: LinkCost,
                 progress: ProgressCallback | None = None) -> np.ndarray:
    """Step 1: successor row of every detection (-1 = none); ``progress`` hears of each pair of frames linked."""
    successor = np.full(len(movie.points), -1, np.int64)
    steps = [t for t in sorted(movie.frames) if t + 1 in movie.frames]
    report = reporter(progress, "linking", total=len(steps))
    for done, t in enumerate(steps, start=1):
        src, dst = movie.frames[t], movie.frames[t + 1]
        i, j, distance, iou = frame_candidates(movie, t, cfg.search_radius)
        if len(i):
            pairs = LinkPairs(earlier=src[i], later=dst[j], distance=distance, iou=iou, gap=0)
            link_cost, alternative = cost.frame_costs(movie, pairs, cfg)
            matched = solve_assignment(len(src), len(dst), i, j, link_cost,
                                       row_alternative=alternative, col_alternative=alternative)
            successor[src[matched[:, 0]]] = dst[matched[:, 1]]
        report(done)
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


def _mother_size(area: np.ndarray, predecessor: np.ndarray, rows: np.ndarray, *, frames: int = 3,
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


@dataclass(frozen=True)
class DivisionCandidates:
    """Candidate divisions, one entry each: detection ``daughter`` may have split off detection ``mother`` (rows).

    ``sister`` is the other daughter (the mother's continuation, or the presumed sister of
    a vanished mother; -1 = none), ``distance`` the mother-to-daughter distance (px),
    ``overlap_fraction`` the part of the daughter's mask the mother covered, ``gap`` the
    frames between the mother and the daughter minus one, ``mother_size`` the size the
    daughters share (the mother's before it condensed: :func:`_mother_size`).
    """

    mother: np.ndarray
    daughter: np.ndarray
    sister: np.ndarray
    distance: np.ndarray
    overlap_fraction: np.ndarray
    gap: np.ndarray
    mother_size: np.ndarray
    successor: np.ndarray | None = None  # frame-to-frame links: the daughters are followed to see them separate


def division_features(movie: Movie, candidates: DivisionCandidates, *, diameter: float) -> dict[str, np.ndarray]:
    """What speaks for or against each candidate daughter having split off its mother (lengths in cell diameters).

    Besides the candidates' own values, ``mother_on_border`` says whether the image border
    cuts the mother (its area is not its size) and ``sisters_touch`` whether the two
    daughters' masks touch in every frame they share, followed along
    ``candidates.successor`` (only their first frame without it; :func:`_never_separated`).
    """
    points, area = movie.points, movie.area
    mother, daughter, sister = candidates.mother, candidates.daughter, candidates.sister
    has_sister = sister >= 0
    sister_row = np.where(has_sister, sister, 0)
    larger = np.where(has_sister, np.fmax(area[sister_row], area[daughter]), area[daughter])
    mid = np.where(has_sister[:, None], (points[sister_row] + points[daughter]) / 2, points[daughter])
    return {
        "distance": candidates.distance / diameter,
        "offset": np.linalg.norm(mid - points[mother], axis=1) / diameter,
        "has_sister": has_sister.astype(float),
        # < 0: both daughters smaller than the mother
        "larger_daughter": _log_area_ratio(candidates.mother_size, larger),
        "sisters": np.where(has_sister, np.abs(_log_area_ratio(area[sister_row], area[daughter])), 0.0),
        "overlap": np.asarray(candidates.overlap_fraction, float),
        "gap": np.asarray(candidates.gap, float),
        "mother_on_border": np.asarray(movie.border[mother], float),
        "sisters_touch": _never_separated(movie, daughter, sister, candidates.successor),
    }


def _never_separated(movie: Movie, a: np.ndarray, b: np.ndarray, successor: np.ndarray | None) -> np.ndarray:
    """1 where the masks of rows ``a`` and ``b`` touch in every frame of their common life, else 0.

    ``a`` and ``b`` are in the same frame; both are followed along ``successor`` (the
    frame-to-frame links) for as long as both go on; without ``successor`` only this
    frame counts. Pieces of one nucleus cut by the segmentation touch all along, while
    daughter nuclei may touch at first and separate later: once apart, they are two
    nuclei. 0 where ``b`` < 0 or contacts are unknown.

    >>> table = pd.DataFrame({"t": [0, 0, 1, 1], "y": [0.0, 5.0, 0.0, 9.0], "x": 0.0, "area": 10.0})
    >>> movie = Movie.from_table(table, contacts={0: (np.array([0]), np.array([1]))})
    >>> _never_separated(movie, np.array([0]), np.array([1]), np.array([2, 3, -1, -1])).tolist()
    [0.0]
    """
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    touching = movie.touching(a, b)
    if successor is None or movie.contacts is None:
        return touching.astype(float)
    pending = np.flatnonzero(touching & (b >= 0))  # touching so far: follow them one frame on
    a, b = a[pending], b[pending]
    while len(pending):
        a, b = successor[a], successor[b]
        both = (a >= 0) & (b >= 0)  # one of them gone: judged on the frames they shared
        pending, a, b = pending[both], a[both], b[both]
        apart = ~movie.touching(a, b)
        touching[pending[apart]] = False
        pending, a, b = pending[~apart], a[~apart], b[~apart]
    return touching.astype(float)


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
            candidates = DivisionCandidates(mother=mother, daughter=daughter, sister=sister, distance=distance,
                                            overlap_fraction=fraction, gap=np.full(len(mother), late),
                                            mother_size=_mother_size(area, predecessor, mother),
                                            successor=successor)
            features = division_features(movie, candidates, diameter=cfg.cell_diameter)
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


def _segment_costs(movie: Movie, cand: SegmentCandidates, cfg: TrackingConfig, *,
                   cost: LinkCost) -> tuple[np.ndarray, float]:
    """Cost of every candidate and the cost of a birth (a candidate is refused when it costs more)."""
    costs = np.zeros(len(cand.source))
    closing, split = cand.kind == 0, cand.kind > 0
    pairs = LinkPairs(earlier=cand.source[closing], later=cand.start[closing], distance=cand.distance[closing],
                      iou=cand.iou[closing], gap=cand.gap[closing])
    costs[closing], birth = cost.gap_costs(movie, pairs, cfg)
    if split.any():
        costs[split] = cost.split_costs(cand.division, cfg)
    return costs, birth


def _segment_links(movie: Movie, successor: np.ndarray, members: list[np.ndarray], cfg: TrackingConfig, *,
                   cost: LinkCost):
    """Step 2: gap closing and splitting. Returns ``(gap_links, split_links)``, lists of ``(row_from, row_to, cost)``."""
    cand = segment_candidates(movie, successor, members, cfg)
    if not len(cand.source):
        return [], []
    costs, birth = _segment_costs(movie, cand, cfg, cost=cost)
    start_col = np.full(len(movie.points), -1, np.int64)
    start_col[cand.starts] = np.arange(len(cand.starts))
    cols = start_col[cand.start]
    # one LAP row per (detection, kind): a detection may both continue and be a mother
    unique_keys, row_index = np.unique(cand.source * 3 + cand.kind, return_inverse=True)
    keep = costs < birth
    matched = solve_assignment(len(unique_keys), len(cand.starts), row_index[keep], cols[keep], costs[keep],
                               row_alternative=0.0, col_alternative=birth)
    pair_cost = dict(zip(zip(row_index[keep].tolist(), cols[keep].tolist()), costs[keep].tolist()))
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


def link(detections: pd.DataFrame, config: TrackingConfig | None = None, *, overlaps: Overlaps | None = None,
         contacts: Contacts | None = None, cost: LinkCost | None = None,
         progress: ProgressCallback | None = None) -> pd.DataFrame:
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
    contacts : dict, optional
        Objects of the same frame whose masks touch (:func:`cytolens.track.label_contacts`),
        by row number: daughters that touch in every frame they share make a division less likely.
    cost : LinkCost, optional
        What prices links, gap closings and splits (:mod:`cytolens.track.costs`): by default
        the hand-made :class:`~cytolens.track.costs.HandLinkCost`; a learned one is a
        :class:`~cytolens.track.learned.LinkCostModel` (``load_link_model(path)``). With
        ``config.link_cost == "learned"`` give it here (:func:`cytolens.track.track` loads
        ``config.link_model`` itself).
    progress : callable, optional
        Receives a :class:`~cytolens.progress.ProgressEvent` (stage ``"linking"``) per pair of frames linked.

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
    if cost is None:
        if cfg.link_cost == "learned":
            raise InvalidParameterError(
                "link() takes a learned cost as an object: link(..., cost=cytolens.track.load_link_model("
                f"{cfg.link_model!r})); cytolens.track(...) loads config.link_model itself")
        cost = HandLinkCost()
    table = detections.reset_index(drop=True)
    movie = Movie.from_table(table, overlaps=overlaps if cfg.use_overlap else None,
                             contacts=contacts if cfg.use_overlap else None)
    cost.check(movie)
    points, times = movie.points, movie.times
    successor = _frame_links(movie, cfg, cost=cost, progress=progress)
    segment_of, members = _segments(successor)
    gap_links, split_links = _resolve_divisions(successor, *_segment_links(movie, successor, members, cfg, cost=cost))
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
