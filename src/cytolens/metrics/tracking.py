"""Cell Tracking Challenge (CTC) scores: SEG, DET, TRA, LNK via AOGM, and division scores.

The definitions follow Matula et al. 2015 ("Cell tracking accuracy measurement based on
comparison of acyclic oriented graphs") and Ulman et al. 2017, as implemented by the
official evaluation software and by ``py-ctcmetrics``; the tests prove equality with
``py-ctcmetrics`` to 1e-6 on the real CTC ground truth.

* **Matching**: a reference object R (``*_GT/TRA`` marker or ``*_GT/SEG`` mask) is
  matched to the computed object C with ``|R ∩ C| > 0.5 |R|`` (at most one C per R; one
  C may cover several R).
* **Vertices** are ``(frame, label)`` objects; **edges** are track links (the same label
  in consecutive frames) and parent links (a parent's last frame to a child's first frame).
* **AOGM** = ``w_ns·NS + w_fn·FN + w_fp·FP + w_ed·ED + w_ea·EA + w_ec·EC`` with the
  official weights NS 5, FN 10, FP 1, ED 1, EA 1.5, EC 1 (:data:`AOGM_WEIGHTS`).
  ``TRA = 1 - min(AOGM, AOGM_0) / AOGM_0`` with ``AOGM_0 = w_fn·|V_R| + w_ea·|E_R|``;
  DET uses the vertex part only, LNK the edge part only.
* **SEG** = mean over all reference SEG objects of the IoU with their matched object
  (0 when unmatched).
* **Divisions** (branching correctness, BC(i) of Ulman et al.): a reference division
  (a parent with more than one child) is found when a computed division ends within
  ``tolerance`` frames, the two parents are matched in the earlier of the two end frames,
  and every reference daughter is matched to a distinct computed daughter that starts
  within ``tolerance`` frames. Unlike ``py-ctcmetrics``, each division is counted in at
  most one pair, so precision and recall never exceed 1.

Example
-------
>>> import numpy as np, pandas as pd
>>> gt = np.zeros((3, 8, 8), np.uint16); gt[:, 1:4, 1:4] = 1
>>> tracks = pd.DataFrame({"label": [1], "begin": [0], "end": [2], "parent": [0]})
>>> res = gt.copy(); res[2] = 0
>>> res_tracks = pd.DataFrame({"label": [1], "begin": [0], "end": [1], "parent": [0]})
>>> c = aogm_counts(gt, tracks, res, res_tracks)
>>> c.fn, c.ea, round(c.tra, 4)  # 1 - (10·1 + 1.5·1) / (10·3 + 1.5·2)
(1, 1, 0.6515)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import ImageReadError, InvalidImageError, InvalidParameterError
from cytolens.metrics.segmentation import check_label_pair

__all__ = [
    "AOGM_WEIGHTS", "AOGMCounts", "AOGMWeights", "DivisionScores", "FrameMatch", "TrackingEvaluation",
    "aogm_counts", "ctc_evaluation", "ctc_scores", "division_scores", "match_ctc", "match_movie",
    "read_ctc_seg", "seg_score", "track_overlap_scores", "tracking_scores", "validate_ctc_tracks",
]

TrackTable = pd.DataFrame | np.ndarray


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class AOGMWeights:
    """Weights of the AOGM graph operations (defaults: the official CTC weights).

    Attributes
    ----------
    ns : splitting a vertex that covers several reference objects.
    fn : adding a missing vertex (false negative).
    fp : deleting a spurious vertex (false positive).
    ed : deleting a redundant edge.
    ea : adding a missing edge.
    ec : changing the semantics of an edge (track link vs parent link).
    """

    ns: float = 5.0
    fn: float = 10.0
    fp: float = 1.0
    ed: float = 1.0
    ea: float = 1.5
    ec: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise InvalidParameterError(f"AOGM weight {name} must be a finite number >= 0, got {value}")


AOGM_WEIGHTS = AOGMWeights()


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class FrameMatch:
    """CTC matching of one frame.

    Attributes
    ----------
    ref_labels, comp_labels : sorted labels present in the reference / computed frame.
    ref_matched, comp_matched : aligned arrays: ``ref_matched[k]`` is covered by ``comp_matched[k]``.
    iou : IoU of each matched pair.
    """

    ref_labels: np.ndarray
    comp_labels: np.ndarray
    ref_matched: np.ndarray
    comp_matched: np.ndarray
    iou: np.ndarray

    @property
    def comp_match_counts(self) -> np.ndarray:
        """How many reference objects each computed object (in ``comp_labels`` order) covers."""
        idx = np.searchsorted(self.comp_labels, self.comp_matched)
        return np.bincount(idx, minlength=len(self.comp_labels))


def _labels_and_areas(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = frame[frame > 0]
    labels, areas = np.unique(values, return_counts=True)
    return labels.astype(np.int64), areas.astype(np.int64)


def _check_frame(ref: np.ndarray, comp: np.ndarray, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    return check_label_pair(ref, comp, ("reference mask", "computed mask"), where)


def match_ctc(ref: np.ndarray, comp: np.ndarray) -> FrameMatch:
    """Match the objects of one frame by the CTC rule ``|R ∩ C| > 0.5 |R|``.

    Parameters
    ----------
    ref, comp : ``(Y, X)`` or ``(Z, Y, X)`` integer label images (0 = background):
        the reference (ground truth) and the computed (result) frame.

    Returns
    -------
    FrameMatch

    Examples
    --------
    >>> ref = np.zeros((4, 4), int); ref[:2, :2] = 3
    >>> comp = np.zeros((4, 4), int); comp[:2, :3] = 9
    >>> m = match_ctc(ref, comp)
    >>> m.ref_matched.tolist(), m.comp_matched.tolist(), m.iou.round(3).tolist()
    ([3], [9], [0.667])
    """
    ref, comp = _check_frame(ref, comp)
    ref_labels, ref_areas = _labels_and_areas(ref)
    comp_labels, comp_areas = _labels_and_areas(comp)
    both = (ref > 0) & (comp > 0)
    r = ref[both].astype(np.int64)
    c = comp[both].astype(np.int64)
    if r.size:
        key = r * (int(comp_labels[-1]) + 1) + c
        keys, overlap = np.unique(key, return_counts=True)
        pr, pc = np.divmod(keys, int(comp_labels[-1]) + 1)
        ra = ref_areas[np.searchsorted(ref_labels, pr)]
        ca = comp_areas[np.searchsorted(comp_labels, pc)]
        hit = 2 * overlap > ra  # |R ∩ C| > 0.5 |R|, in exact integer arithmetic
        pr, pc, overlap, ra, ca = pr[hit], pc[hit], overlap[hit], ra[hit], ca[hit]
        iou = overlap / (ra + ca - overlap)
    else:
        pr = pc = np.zeros(0, np.int64)
        iou = np.zeros(0)
    return FrameMatch(ref_labels, comp_labels, pr, pc, iou.astype(float))


def match_movie(ref_masks: Iterable[np.ndarray], comp_masks: Iterable[np.ndarray]) -> list[FrameMatch]:
    """:func:`match_ctc` for every frame of two ``(T, [Z,] Y, X)`` movies (arrays or sequences of frames)."""
    ref_list, comp_list = list(ref_masks), list(comp_masks)
    if len(ref_list) != len(comp_list):
        raise InvalidParameterError(
            f"the result has {len(comp_list)} frames but the ground truth has {len(ref_list)}; "
            "a CTC result needs one mask per ground-truth frame")
    return [match_ctc(*_check_frame(r, c, f" (frame {t})")) for t, (r, c) in enumerate(zip(ref_list, comp_list))]


# --------------------------------------------------------------------------- track tables


def _track_array(tracks: TrackTable, name: str) -> np.ndarray:
    if isinstance(tracks, pd.DataFrame):
        missing = [c for c in ("label", "begin", "end", "parent") if c not in tracks.columns]
        if missing:
            raise InvalidParameterError(f"{name} track table lacks columns {missing}; need label, begin, end, parent")
        arr = tracks[["label", "begin", "end", "parent"]].to_numpy()
    else:
        arr = np.asarray(tracks)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidParameterError(f"{name} tracks must be an (n, 4) table 'L B E P', got shape {arr.shape}")
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise InvalidParameterError(f"{name} tracks must hold integers (label, begin, end, parent)")
    return arr.astype(np.int64)


def validate_ctc_tracks(tracks: TrackTable, labels_per_frame: Sequence[np.ndarray], name: str = "result") -> np.ndarray:
    """Check a track table against the labels present in each frame (the CTC validity rules).

    Labels must be unique and positive, ``begin <= end``, every parent must be a track that
    ends before its child begins, and each label must be present in exactly the frames
    ``begin..end`` of its track.

    Returns the table as an ``(n, 4)`` int64 array; raises
    :class:`~cytolens.errors.InvalidParameterError` naming the first problems.
    """
    arr = _track_array(tracks, name)
    problems: list[str] = []
    labels, begins, ends, parents = arr.T
    n_frames = len(labels_per_frame)
    uniq, counts = np.unique(labels, return_counts=True)
    if np.any(counts > 1):
        problems.append(f"labels listed more than once: {uniq[counts > 1][:5].tolist()}")
    if np.any(labels <= 0):
        problems.append("labels must be > 0")
    if np.any(parents < 0):
        problems.append(f"negative parents for labels {labels[parents < 0][:5].tolist()}")
    bad = (ends < begins) | (begins < 0) | (ends >= n_frames)
    if np.any(bad):
        problems.append(f"tracks {labels[bad][:5].tolist()} have begin > end or frames outside 0..{n_frames - 1}")
    end_of = dict(zip(labels.tolist(), ends.tolist()))
    for lab, beg, par in zip(labels.tolist(), begins.tolist(), parents.tolist()):
        if par > 0 and par not in end_of:
            problems.append(f"track {lab} has parent {par}, which is not a track")
        elif par > 0 and end_of[par] >= beg:
            problems.append(f"track {lab} begins in frame {beg} but its parent {par} ends in frame {end_of[par]}")
        if len(problems) > 5:
            break
    if not problems:
        for t, present in enumerate(labels_per_frame):
            active = labels[(begins <= t) & (ends >= t)]
            extra, absent = np.setdiff1d(present, active), np.setdiff1d(active, present)
            if extra.size:
                problems.append(f"frame {t}: labels {extra[:5].tolist()} are in the mask but their track "
                                "does not span this frame")
            if absent.size:
                problems.append(f"frame {t}: tracks {absent[:5].tolist()} span this frame but are not in the mask")
            if len(problems) > 2:
                break
    if problems:
        raise InvalidParameterError(f"invalid CTC {name} tracks: " + "; ".join(problems[:5])
                                    + " (each label must be present in exactly the frames begin..end of its track, "
                                    "and parents must end before their children begin)")
    return arr


# --------------------------------------------------------------------------- AOGM


@dataclass(frozen=True)
class AOGMCounts:
    """Counts of the graph operations that turn the computed graph into the reference.

    Attributes
    ----------
    ns, fn, fp : vertex splits, missing vertices, spurious vertices.
    ed, ea, ec : redundant edges, missing edges, edges with wrong semantics.
    n_vertices, n_edges : size of the reference graph.
    weights : the :class:`AOGMWeights` used for the scores.
    """

    ns: int
    fn: int
    fp: int
    ed: int
    ea: int
    ec: int
    n_vertices: int
    n_edges: int
    weights: AOGMWeights = field(default=AOGM_WEIGHTS)

    @property
    def aogm_d(self) -> float:
        """Vertex (detection) part of AOGM."""
        w = self.weights
        return w.ns * self.ns + w.fn * self.fn + w.fp * self.fp

    @property
    def aogm_a(self) -> float:
        """Edge (association) part of AOGM."""
        w = self.weights
        return w.ed * self.ed + w.ea * self.ea + w.ec * self.ec

    @property
    def aogm(self) -> float:
        return self.aogm_d + self.aogm_a

    @property
    def aogm_0(self) -> float:
        """Cost of building the reference graph from nothing."""
        return self.weights.fn * self.n_vertices + self.weights.ea * self.n_edges

    @property
    def det(self) -> float:
        return _normalized(self.aogm_d, self.weights.fn * self.n_vertices)

    @property
    def lnk(self) -> float:
        return _normalized(self.aogm_a, self.weights.ea * self.n_edges)

    @property
    def tra(self) -> float:
        return _normalized(self.aogm, self.aogm_0)

    def to_dict(self) -> dict:
        d = {k: int(getattr(self, k)) for k in ("ns", "fn", "fp", "ed", "ea", "ec", "n_vertices", "n_edges")}
        d.update(aogm=self.aogm, aogm_0=self.aogm_0, aogm_d=self.aogm_d, aogm_a=self.aogm_a,
                 det=self.det, lnk=self.lnk, tra=self.tra)
        return d


def _normalized(cost: float, empty_cost: float) -> float:
    """``1 - min(cost, empty) / empty``; NaN when the reference is empty."""
    if empty_cost == 0:
        return float("nan")
    return float(1.0 - min(cost, empty_cost) / empty_cost)


def _edges(labels_per_frame: Sequence[np.ndarray], tracks: np.ndarray) -> dict[tuple[int, int, int, int], int]:
    """Edges ``(t1, l1, t2, l2) -> semantic`` (0 track link, 1 parent link)."""
    edges: dict[tuple[int, int, int, int], int] = {}
    for t in range(len(labels_per_frame) - 1):
        for lab in np.intersect1d(labels_per_frame[t], labels_per_frame[t + 1]).tolist():
            edges[(t, lab, t + 1, lab)] = 0
    end_of = {int(r[0]): int(r[2]) for r in tracks}
    for lab, beg, _, par in tracks.tolist():
        if par > 0:
            edges[(end_of[par], par, beg, lab)] = 1
    return edges


def _aogm_from_matches(matches: Sequence[FrameMatch], ref_tracks: np.ndarray, comp_tracks: np.ndarray,
                       weights: AOGMWeights) -> AOGMCounts:
    ns = fn = fp = 0
    comp_to_ref: dict[tuple[int, int], int] = {}  # (t, comp label) -> ref label, uniquely matched comps only
    for t, m in enumerate(matches):
        counts = m.comp_match_counts
        fn += len(m.ref_labels) - len(m.ref_matched)
        fp += int(np.sum(counts == 0))
        ns += int(np.sum(np.maximum(counts - 1, 0)))
        unique = counts[np.searchsorted(m.comp_labels, m.comp_matched)] == 1
        for c, r in zip(m.comp_matched[unique].tolist(), m.ref_matched[unique].tolist()):
            comp_to_ref[(t, c)] = r
    ref_edges = _edges([m.ref_labels for m in matches], ref_tracks)
    comp_edges = _edges([m.comp_labels for m in matches], comp_tracks)
    ed = ec = 0
    found = 0
    for (t1, c1, t2, c2), semantic in comp_edges.items():
        r1, r2 = comp_to_ref.get((t1, c1)), comp_to_ref.get((t2, c2))
        if r1 is None or r2 is None:
            continue  # edges touching unmatched or split vertices vanish with those vertices
        ref_semantic = ref_edges.get((t1, r1, t2, r2))
        if ref_semantic is None:
            ed += 1
        else:
            found += 1
            ec += int(ref_semantic != semantic)
    n_vertices = sum(len(m.ref_labels) for m in matches)
    return AOGMCounts(ns, fn, fp, ed, len(ref_edges) - found, ec, n_vertices, len(ref_edges), weights)


def aogm_counts(ref_masks, ref_tracks: TrackTable, comp_masks, comp_tracks: TrackTable,
                weights: AOGMWeights = AOGM_WEIGHTS, matches: Sequence[FrameMatch] | None = None) -> AOGMCounts:
    """AOGM operation counts (and DET, LNK, TRA) of a tracking result against the reference.

    Parameters
    ----------
    ref_masks, comp_masks : ``(T, [Z,] Y, X)`` label movies (0 = background): the reference
        markers (``*_GT/TRA``) and the computed masks. Ignored when ``matches`` is given.
    ref_tracks, comp_tracks : track tables ``label, begin, end, parent`` (DataFrame or ``(n, 4)``
        array, as in ``man_track.txt`` / ``res_track.txt``).
    weights : AOGM weights; the official CTC weights by default.
    matches : per-frame :func:`match_ctc` results, to reuse a matching already computed.

    Returns
    -------
    AOGMCounts
        with ``.det``, ``.lnk``, ``.tra`` and ``.aogm``.

    Examples
    --------
    >>> movie = np.zeros((2, 6, 6), int); movie[:, :3, :3] = 1
    >>> table = np.array([[1, 0, 1, 0]])
    >>> aogm_counts(movie, table, movie, table).tra
    1.0
    """
    if matches is None:
        matches = match_movie(ref_masks, comp_masks)
    ref_arr = validate_ctc_tracks(ref_tracks, [m.ref_labels for m in matches], "ground-truth")
    comp_arr = validate_ctc_tracks(comp_tracks, [m.comp_labels for m in matches], "result")
    return _aogm_from_matches(matches, ref_arr, comp_arr, weights)


# --------------------------------------------------------------------------- SEG


def seg_score(ref_seg: Mapping[int, np.ndarray], comp_masks, per_frame: bool = False):
    """CTC SEG: mean IoU of each reference object with its matched computed object (0 if none).

    Parameters
    ----------
    ref_seg : ``{frame: (Y, X) or (Z, Y, X) reference segmentation}``; a key may also be
        ``(frame, z)`` for a single annotated slice of a 3D frame (``man_seg_T_Z.tif``).
    comp_masks : the computed ``(T, [Z,] Y, X)`` label movie (or a sequence of frames).
    per_frame : also return a table with one row per annotated frame.

    Returns
    -------
    float, or (float, DataFrame) when ``per_frame``; NaN when there are no reference objects.

    Examples
    --------
    >>> ref = np.zeros((4, 4), int); ref[:2, :2] = 1; ref[2:, 2:] = 2
    >>> comp = np.zeros((1, 4, 4), int); comp[0, :2, :3] = 5
    >>> round(seg_score({0: ref}, comp), 4)  # (4/6 + 0) / 2
    0.3333
    """
    rows = []
    for key in sorted(ref_seg, key=lambda k: k if isinstance(k, tuple) else (k,)):
        t, z = (key if isinstance(key, tuple) else (key, None))
        if not 0 <= t < len(comp_masks):
            raise InvalidParameterError(f"reference segmentation for frame {t}, but the result has "
                                        f"{len(comp_masks)} frames")
        comp = np.asarray(comp_masks[t])
        if z is not None:
            comp = comp[z]
        m = match_ctc(*_check_frame(ref_seg[key], comp, f" (SEG frame {key})"))
        rows.append({"frame": t, "z": -1 if z is None else z, "n_objects": len(m.ref_labels),
                     "n_matched": len(m.ref_matched), "iou_sum": float(m.iou.sum()),
                     "seg": float(m.iou.sum() / len(m.ref_labels)) if len(m.ref_labels) else float("nan")})
    table = pd.DataFrame(rows, columns=["frame", "z", "n_objects", "n_matched", "iou_sum", "seg"])
    n = int(table["n_objects"].sum())
    score = float(table["iou_sum"].sum() / n) if n else float("nan")
    return (score, table) if per_frame else score


# --------------------------------------------------------------------------- divisions


@dataclass(frozen=True)
class DivisionScores:
    """Division (mitosis) detection counts at a frame tolerance; ``f1`` is the CTC BC(tolerance)."""

    tp: int
    fp: int
    fn: int
    tolerance: int

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def f1(self) -> float:
        """Branching correctness; NaN when the reference has no divisions (as BC is undefined)."""
        if self.tp + self.fn == 0:
            return float("nan")
        p, r = self.precision, self.recall
        return 2 * p * r / max(p + r, 1e-4)  # the 1e-4 floor is the reference implementation's

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tolerance": self.tolerance,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


def _divisions(tracks: np.ndarray) -> dict[int, tuple[int, list[int], list[int]]]:
    """parent -> (end frame, children in table order, children's begin frames)."""
    parents, counts = np.unique(tracks[tracks[:, 3] > 0, 3], return_counts=True)
    out = {}
    rows = {int(r[0]): r for r in tracks}
    for p in parents[counts > 1].tolist():
        kids = tracks[tracks[:, 3] == p]
        out[p] = (int(rows[p][2]), kids[:, 0].tolist(), kids[:, 1].tolist())
    return out


def division_scores(ref_tracks: TrackTable, comp_tracks: TrackTable, matches: Sequence[FrameMatch],
                    tolerance: int = 0) -> DivisionScores:
    """Detected, spurious and missed divisions at a frame ``tolerance``.

    Parameters
    ----------
    ref_tracks, comp_tracks : track tables (``label, begin, end, parent``).
    matches : per-frame :func:`match_ctc` results of the reference and computed movies.
    tolerance : largest allowed difference, in frames, between the reference and computed
        parent ends and between daughter starts.

    Returns
    -------
    DivisionScores

    Examples
    --------
    >>> movie = np.zeros((2, 6, 6), int); movie[0, :2, :2] = 1; movie[1, :2, :2] = 2; movie[1, 4:, 4:] = 3
    >>> table = np.array([[1, 0, 0, 0], [2, 1, 1, 1], [3, 1, 1, 1]])
    >>> division_scores(table, table, match_movie(movie, movie)).f1
    1.0
    """
    if not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise InvalidParameterError(f"division tolerance must be an integer number of frames >= 0, got {tolerance!r}")
    ref_div = _divisions(_track_array(ref_tracks, "ground-truth"))
    comp_div = _divisions(_track_array(comp_tracks, "result"))
    # per frame: ref label -> comp label, and comp label -> number of refs it covers
    ref_to_comp = [dict(zip(m.ref_matched.tolist(), m.comp_matched.tolist())) for m in matches]
    comp_count = [dict(zip(m.comp_labels.tolist(), m.comp_match_counts.tolist())) for m in matches]

    def covers(t: int, ref: int, comp: int) -> bool:
        return 0 <= t < len(matches) and ref_to_comp[t].get(ref) == comp and comp_count[t].get(comp) == 1

    used_ref: set[int] = set()
    tp = 0
    for c_parent, (c_end, c_kids, c_begins) in sorted(comp_div.items()):
        for r_parent, (r_end, r_kids, r_begins) in sorted(ref_div.items()):
            if r_parent in used_ref or len(r_kids) != len(c_kids) or abs(r_end - c_end) > tolerance:
                continue
            if not covers(min(r_end, c_end), r_parent, c_parent):
                continue
            matched_kids: set[int] = set()
            for r_kid, r_begin in zip(r_kids, r_begins):
                for c_kid, c_begin in zip(c_kids, c_begins):
                    if abs(r_begin - c_begin) <= tolerance and covers(max(r_begin, c_begin), r_kid, c_kid):
                        matched_kids.add(c_kid)
                        break
            if len(matched_kids) == len(r_kids):
                used_ref.add(r_parent)
                tp += 1
                break
    return DivisionScores(tp, len(comp_div) - tp, len(ref_div) - tp, int(tolerance))


# --------------------------------------------------------------------------- track overlap


def _tracklets(edges: Iterable[tuple[int, int, int, int]]) -> tuple[dict, dict]:
    """Split a lineage graph at divisions: edge -> tracklet id, and tracklet id -> number of edges.

    A tracklet is a connected piece between divisions; each division edge (from a parent
    with several children) belongs to its daughter's tracklet.
    """
    edges = list(edges)
    out_degree: dict[tuple[int, int], int] = {}
    for t1, l1, _, _ in edges:
        out_degree[(t1, l1)] = out_degree.get((t1, l1), 0) + 1
    root: dict[tuple[int, int], tuple[int, int]] = {}

    def find(v):
        root.setdefault(v, v)
        while root[v] != v:
            root[v] = root[root[v]]
            v = root[v]
        return v

    for t1, l1, t2, l2 in edges:
        if out_degree[(t1, l1)] == 1:
            root[find((t1, l1))] = find((t2, l2))
    tid = {}
    length: dict = {}
    for e in edges:
        t1, l1, t2, l2 = e
        tid[e] = find((t2, l2)) if out_degree[(t1, l1)] > 1 else find((t1, l1))
        length[tid[e]] = length.get(tid[e], 0) + 1
    return tid, length


def _overlap_fraction(ref_tid: dict, ref_len: dict, other_tid: dict, ref_to_other: dict) -> float:
    """Edges of each reference tracklet shared with its best-overlapping other tracklet, summed,
    over all reference edges."""
    best: dict = {}
    for (t1, l1, t2, l2), ref_id in ref_tid.items():
        for a in ref_to_other.get((t1, l1), ()):
            for b in ref_to_other.get((t2, l2), ()):
                other = other_tid.get((t1, a, t2, b))
                if other is not None:
                    counts = best.setdefault(ref_id, {})
                    counts[other] = counts.get(other, 0) + 1
    total = sum(ref_len.values())
    if total == 0:
        return float("nan")
    return sum(max(c.values()) for c in best.values()) / total


def track_overlap_scores(ref_tracks: TrackTable, comp_tracks: TrackTable,
                         matches: Sequence[FrameMatch]) -> dict:
    """Track purity and target effectiveness (Bise et al. 2011), on tracklets split at divisions.

    *Target effectiveness*: each reference tracklet is credited with the edges it shares with
    the computed tracklet that overlaps it most; the sum over all reference edges. *Track
    purity*: the same with the roles swapped. Division edges belong to the daughter's
    tracklet; objects are matched by the CTC rule. This equals ``traccuracy``'s
    ``TrackOverlapMetrics`` (``include_division_edges=True``, skips not relaxed).

    Parameters
    ----------
    ref_tracks, comp_tracks : track tables (``label, begin, end, parent``).
    matches : per-frame :func:`match_ctc` results.

    Returns
    -------
    dict with ``track_purity`` and ``target_effectiveness`` (NaN without edges).

    Examples
    --------
    >>> movie = np.zeros((3, 6, 6), int); movie[:, :2, :2] = 1
    >>> comp = movie.copy(); comp[2] *= 2  # the track breaks before the last frame
    >>> s = track_overlap_scores([[1, 0, 2, 0]], [[1, 0, 1, 0], [2, 2, 2, 0]], match_movie(movie, comp))
    >>> s["target_effectiveness"], s["track_purity"]
    (0.5, 1.0)
    """
    ref_arr = validate_ctc_tracks(ref_tracks, [m.ref_labels for m in matches], "ground-truth")
    comp_arr = validate_ctc_tracks(comp_tracks, [m.comp_labels for m in matches], "result")
    ref_tid, ref_len = _tracklets(_edges([m.ref_labels for m in matches], ref_arr))
    comp_tid, comp_len = _tracklets(_edges([m.comp_labels for m in matches], comp_arr))
    ref_to_comp: dict = {}
    comp_to_ref: dict = {}
    for t, m in enumerate(matches):
        for r, c in zip(m.ref_matched.tolist(), m.comp_matched.tolist()):
            ref_to_comp.setdefault((t, r), []).append(c)
            comp_to_ref.setdefault((t, c), []).append(r)
    return {"track_purity": _overlap_fraction(comp_tid, comp_len, ref_tid, comp_to_ref),
            "target_effectiveness": _overlap_fraction(ref_tid, ref_len, comp_tid, ref_to_comp)}


# --------------------------------------------------------------------------- whole evaluation


@dataclass(frozen=True)
class TrackingEvaluation:
    """Scores of one CTC sequence: ``scores`` (a flat dict) and ``per_frame`` (a table)."""

    scores: dict
    per_frame: pd.DataFrame


def tracking_scores(ref_masks, ref_tracks: TrackTable, comp_masks, comp_tracks: TrackTable,
                    ref_seg: Mapping[int, np.ndarray] | None = None, division_tolerance: int = 1,
                    weights: AOGMWeights = AOGM_WEIGHTS) -> TrackingEvaluation:
    """All CTC scores from arrays: SEG (when ``ref_seg`` is given), DET, TRA, LNK, AOGM counts,
    division precision / recall / F1 (= BC(``division_tolerance``)), track purity and target
    effectiveness.

    Parameters
    ----------
    ref_masks : ``(T, [Z,] Y, X)`` reference markers (``*_GT/TRA``).
    ref_tracks : reference track table (``man_track.txt``).
    comp_masks : ``(T, [Z,] Y, X)`` computed masks.
    comp_tracks : computed track table (``res_track.txt``).
    ref_seg : ``{frame: reference segmentation}`` (``*_GT/SEG``), see :func:`seg_score`.
    division_tolerance : frame tolerance of the division scores.
    weights : AOGM weights (official by default).

    Returns
    -------
    TrackingEvaluation

    Examples
    --------
    >>> movie = np.zeros((2, 6, 6), int); movie[:, :3, :3] = 1
    >>> table = np.array([[1, 0, 1, 0]])
    >>> ev = tracking_scores(movie, table, movie, table, ref_seg={0: movie[0]})
    >>> ev.scores["SEG"], ev.scores["TRA"], ev.scores["LNK"]
    (1.0, 1.0, 1.0)
    """
    comp_masks = comp_masks if isinstance(comp_masks, np.ndarray) else list(comp_masks)
    matches = match_movie(ref_masks, comp_masks)
    counts = aogm_counts(None, ref_tracks, None, comp_tracks, weights=weights, matches=matches)
    div = division_scores(ref_tracks, comp_tracks, matches, division_tolerance)
    overlap = track_overlap_scores(ref_tracks, comp_tracks, matches)
    seg = float("nan")
    seg_table = None
    if ref_seg is not None and len(ref_seg):
        seg, seg_table = seg_score(ref_seg, comp_masks, per_frame=True)
    scores = {"SEG": seg, "DET": counts.det, "TRA": counts.tra, "LNK": counts.lnk,
              "AOGM": counts.aogm, "AOGM_0": counts.aogm_0,
              **{f"AOGM_{k.upper()}": v for k, v in counts.to_dict().items()
                 if k in ("ns", "fn", "fp", "ed", "ea", "ec")},
              "n_vertices": counts.n_vertices, "n_edges": counts.n_edges,
              "division_tolerance": div.tolerance, "division_tp": div.tp, "division_fp": div.fp,
              "division_fn": div.fn, "division_precision": div.precision, "division_recall": div.recall,
              "division_f1": div.f1, f"BC({div.tolerance})": div.f1, **overlap}
    per_frame = _per_frame_table(matches, seg_table)
    return TrackingEvaluation(scores, per_frame)


def _per_frame_table(matches: Sequence[FrameMatch], seg_table: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    for t, m in enumerate(matches):
        counts = m.comp_match_counts
        rows.append({"frame": t, "n_truth": len(m.ref_labels), "n_pred": len(m.comp_labels),
                     "matched": len(m.ref_matched), "fn": len(m.ref_labels) - len(m.ref_matched),
                     "fp": int(np.sum(counts == 0)), "ns": int(np.sum(np.maximum(counts - 1, 0)))})
    table = pd.DataFrame(rows, columns=["frame", "n_truth", "n_pred", "matched", "fn", "fp", "ns"])
    seg = {} if seg_table is None else seg_table[seg_table["z"] < 0].set_index("frame")["seg"].to_dict()
    table["seg"] = table["frame"].map(seg).astype(float)
    return table


_SEG_NAME = re.compile(r"^man_seg_?(\d+)(?:_(\d+))?\.tiff?$", re.IGNORECASE)


def read_ctc_seg(seg_dir: str | os.PathLike) -> dict:
    """Read a ``*_GT/SEG`` folder as ``{frame: mask}`` (``{(frame, z): slice}`` for ``man_seg_T_Z.tif``)."""
    from cytolens.io import read_image

    seg_dir = Path(seg_dir)
    if not seg_dir.is_dir():
        raise ImageReadError(f"CTC SEG folder not found: {seg_dir}")
    out: dict = {}
    for path in sorted(seg_dir.iterdir()):
        found = _SEG_NAME.match(path.name)
        if found:
            key = int(found.group(1)) if found.group(2) is None else (int(found.group(1)), int(found.group(2)))
            out[key] = read_image(path)
    if not out:
        raise ImageReadError(f"{seg_dir} holds no man_seg<T>.tif files")
    return out


def _read_frames(folder: Path, what: str) -> list[np.ndarray]:
    from cytolens.io import ctc_frame_files, read_image

    frames = ctc_frame_files(folder)
    numbers = sorted(frames)
    if numbers[0] != 0 or numbers != list(range(len(numbers))):
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        raise InvalidImageError(f"{what} {folder}: frames must be numbered 0..T-1 without gaps; missing {missing[:5]}")
    return [read_image(frames[t]) for t in numbers]


def _find_track_file(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise ImageReadError(f"{what} track file not found: expected {' or '.join(str(folder / n) for n in names)}")


def ctc_evaluation(res_dir: str | os.PathLike, gt_dir: str | os.PathLike, division_tolerance: int = 1,
                   weights: AOGMWeights = AOGM_WEIGHTS) -> TrackingEvaluation:
    """Evaluate a CTC result folder against a CTC ground-truth folder.

    Parameters
    ----------
    res_dir : folder with ``mask000.tif``, … and ``res_track.txt`` (``*_RES``).
    gt_dir : the ``*_GT`` folder with ``TRA/`` (``man_track*.tif`` + ``man_track.txt``) and,
        optionally, ``SEG/`` (``man_seg*.tif``); SEG is NaN without it.
    division_tolerance, weights : see :func:`tracking_scores`.

    Returns
    -------
    TrackingEvaluation
    """
    from cytolens.io import read_ctc_tracks

    res_dir, gt_dir = Path(res_dir), Path(gt_dir)
    if not res_dir.is_dir():
        raise ImageReadError(f"result folder not found: {res_dir}")
    tra_dir = gt_dir / "TRA"
    if not tra_dir.is_dir():
        raise ImageReadError(f"ground-truth folder {gt_dir} has no TRA/ subfolder (expected a CTC '*_GT' folder)")
    ref_tracks = read_ctc_tracks(_find_track_file(tra_dir, ("man_track.txt",), "ground-truth"))
    comp_tracks = read_ctc_tracks(_find_track_file(res_dir, ("res_track.txt",), "result"))
    ref_masks = _read_frames(tra_dir, "ground truth")
    comp_masks = _read_frames(res_dir, "result")
    if len(ref_masks) != len(comp_masks):
        raise InvalidParameterError(f"{res_dir} has {len(comp_masks)} mask frames but {tra_dir} has "
                                    f"{len(ref_masks)}; write one mask per ground-truth frame")
    ref_seg = read_ctc_seg(gt_dir / "SEG") if (gt_dir / "SEG").is_dir() else None
    return tracking_scores(ref_masks, ref_tracks, comp_masks, comp_tracks, ref_seg=ref_seg,
                           division_tolerance=division_tolerance, weights=weights)


def ctc_scores(res_dir: str | os.PathLike, gt_dir: str | os.PathLike, division_tolerance: int = 1,
               weights: AOGMWeights = AOGM_WEIGHTS) -> dict:
    """CTC scores of a result folder: keys ``SEG``, ``DET``, ``TRA``, ``LNK``, the AOGM counts
    (``AOGM_NS`` … ``AOGM_EC``) and ``division_precision`` / ``division_recall`` /
    ``division_f1`` (= ``BC(division_tolerance)``). See :func:`ctc_evaluation`.

    Examples
    --------
    >>> ctc_scores("01_RES", "01_GT")["TRA"]  # doctest: +SKIP
    0.97...
    """
    return ctc_evaluation(res_dir, gt_dir, division_tolerance, weights).scores
