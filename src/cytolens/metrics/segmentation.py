"""Instance-segmentation scores: IoU matching, precision, recall, F1, AP, DSB2018 score,
panoptic quality, aggregated Jaccard index, pixel Dice/Jaccard, mean matched IoU, and the
split / merge / missed / extra / catastrophe counts of Caicedo et al. 2019.

Conventions are explicit because tools disagree:

* **AP** here is the DSB2018/StarDist "average precision" ``TP / (TP + FP + FN)``
  at one IoU threshold (not the area under a precision-recall curve).
* ``strict=True`` counts a match when ``IoU > threshold`` (Kaggle DSB2018);
  ``strict=False`` when ``IoU >= threshold``.
* Matching is one-to-one by the Hungarian algorithm maximizing total IoU over the
  pairs above the threshold. Above 0.5 this equals greedy matching, since no two
  pairs can share an object.
* ``pooled`` sums TP/FP/FN over all images before dividing; ``per_image`` averages
  each image's score (the Kaggle way). Images with neither truth nor prediction
  score 1.

Example
-------
>>> import numpy as np
>>> truth = np.zeros((10, 10), int); truth[:5, :5] = 1; truth[5:, 5:] = 2
>>> pred = np.zeros((10, 10), int); pred[:5, :4] = 7
>>> m = match(truth, pred, threshold=0.5)
>>> m.tp, m.fp, m.fn, round(m.average_precision, 3)
(1, 0, 1, 0.5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from cytolens.errors import InvalidParameterError

KAGGLE_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2))


def check_label_pair(first: np.ndarray, second: np.ndarray, names: tuple[str, str] = ("truth", "prediction"),
                     where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validate two label images for comparison: same shape, integer, no negative labels.

    ``names`` and ``where`` (e.g. ``" (frame 3)"``) go into the error messages.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise InvalidParameterError(
            f"{names[0]} and {names[1]} shapes differ{where}: {first.shape} vs {second.shape}")
    for name, arr in zip(names, (first, second)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidParameterError(f"{name}{where} must be an integer label image, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise InvalidParameterError(f"{name}{where} has negative labels; 0 is background, objects > 0")
    return first, second


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every (truth object, predicted object) pair.

    Returns
    -------
    iou : (n_true, n_pred) float array
    true_ids, pred_ids : the label values of the rows and columns.
    """
    truth, pred = check_label_pair(truth, pred)
    true_ids, true_inv = np.unique(truth.ravel(), return_inverse=True)
    pred_ids, pred_inv = np.unique(pred.ravel(), return_inverse=True)
    overlap = np.bincount(
        true_inv * len(pred_ids) + pred_inv, minlength=len(true_ids) * len(pred_ids)
    ).reshape(len(true_ids), len(pred_ids))
    true_area = overlap.sum(axis=1, keepdims=True)
    pred_area = overlap.sum(axis=0, keepdims=True)
    union = true_area + pred_area - overlap
    iou = overlap / np.maximum(union, 1)
    keep_t = true_ids != 0
    keep_p = pred_ids != 0
    return iou[np.ix_(keep_t, keep_p)], true_ids[keep_t], pred_ids[keep_p]


@dataclass(frozen=True)
class Matching:
    """Result of matching one truth image against one prediction at one threshold."""

    threshold: float
    strict: bool
    n_true: int
    n_pred: int
    tp: int
    matched_ious: tuple[float, ...]
    matched_pairs: tuple[tuple[int, int], ...]

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_true - self.tp

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def average_precision(self) -> float:
        """``TP / (TP + FP + FN)`` (DSB2018 / StarDist convention)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def mean_matched_iou(self) -> float:
        return float(np.mean(self.matched_ious)) if self.matched_ious else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("matched_pairs")
        d.pop("matched_ious")
        d.update(fp=self.fp, fn=self.fn, precision=self.precision, recall=self.recall,
                 f1=self.f1, average_precision=self.average_precision,
                 mean_matched_iou=self.mean_matched_iou)
        return d


def _ratio(num: float, den: float) -> float:
    """num/den with the convention that 0/0 = 1 (nothing to find, nothing found)."""
    return 1.0 if den == 0 else float(num) / float(den)


def match_iou_matrix(iou: np.ndarray, true_ids, pred_ids, threshold: float = 0.5, strict: bool = False) -> Matching:
    """:func:`match` from an IoU matrix already computed by :func:`iou_matrix` (its three results).

    For callers that need the matrix for something else too (best IoU per object,
    several thresholds): the matrix, the costly part, is computed once.

    >>> truth = np.array([[1, 1, 0, 2]]); pred = np.array([[1, 0, 0, 2]])
    >>> match_iou_matrix(*iou_matrix(truth, pred), threshold=0.5).tp
    2
    """
    if not 0 <= threshold <= 1:
        raise InvalidParameterError(f"IoU threshold must be in [0, 1], got {threshold}")
    n_true, n_pred = iou.shape
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    if n_true and n_pred:
        candidate = iou > threshold if strict else iou >= threshold
        candidate &= iou > 0
        if candidate.any():
            rows, cols = linear_sum_assignment(np.where(candidate, iou, 0.0), maximize=True)
            for r, c in zip(rows, cols):
                if candidate[r, c]:
                    pairs.append((int(true_ids[r]), int(pred_ids[c])))
                    ious.append(float(iou[r, c]))
    return Matching(float(threshold), strict, n_true, n_pred, len(pairs), tuple(ious), tuple(pairs))


def match(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5, strict: bool = False) -> Matching:
    """Match the objects of ``truth`` and ``pred`` (both ``(Y, X)`` or ``(Z, Y, X)``
    integer label images, 0 = background) one-to-one at an IoU threshold."""
    return match_iou_matrix(*iou_matrix(truth, pred), threshold, strict)


def match_thresholds(truth, pred, thresholds=KAGGLE_THRESHOLDS, strict: bool = False) -> list[Matching]:
    """:func:`match` at several thresholds, computing the IoU matrix once."""
    iou, true_ids, pred_ids = iou_matrix(truth, pred)
    return [match_iou_matrix(iou, true_ids, pred_ids, t, strict) for t in thresholds]


def average_precision(truths, preds, threshold: float = 0.5, strict: bool = False,
                      aggregate: str = "per_image") -> float:
    """AP = TP/(TP+FP+FN) over lists of images, ``aggregate`` = "per_image" or "pooled"."""
    if aggregate not in ("per_image", "pooled"):
        raise InvalidParameterError(f"aggregate must be 'per_image' or 'pooled', got {aggregate!r}")
    if len(truths) != len(preds) or not truths:
        raise InvalidParameterError("need the same, non-zero number of truth and predicted images")
    matchings = [match(t, p, threshold, strict) for t, p in zip(truths, preds)]
    if aggregate == "per_image":
        return float(np.mean([m.average_precision for m in matchings]))
    tp = sum(m.tp for m in matchings)
    fp = sum(m.fp for m in matchings)
    fn = sum(m.fn for m in matchings)
    return _ratio(tp, tp + fp + fn)


def dsb2018_score(truth: np.ndarray, pred: np.ndarray) -> float:
    """Kaggle DSB2018 score of one image: mean AP over IoU 0.50:0.05:0.95, strict ``>``.

    Average this over images for the competition score.
    """
    return float(np.mean([m.average_precision for m in match_thresholds(truth, pred, KAGGLE_THRESHOLDS, strict=True)]))


# --------------------------------------------------------------------------- more instance scores


def _overlaps(truth: np.ndarray, pred: np.ndarray):
    """Intersections ``(n_true, n_pred)`` and object areas, background excluded."""
    truth, pred = check_label_pair(truth, pred)
    true_ids, true_inv = np.unique(truth.ravel(), return_inverse=True)
    pred_ids, pred_inv = np.unique(pred.ravel(), return_inverse=True)
    overlap = np.bincount(
        true_inv * len(pred_ids) + pred_inv, minlength=len(true_ids) * len(pred_ids)
    ).reshape(len(true_ids), len(pred_ids))
    true_area = overlap.sum(axis=1)
    pred_area = overlap.sum(axis=0)
    keep_t, keep_p = true_ids != 0, pred_ids != 0
    return (overlap[np.ix_(keep_t, keep_p)], true_area[keep_t], pred_area[keep_p],
            true_ids[keep_t], pred_ids[keep_p])


@dataclass(frozen=True)
class PanopticQuality:
    """Panoptic quality of one image (Kirillov et al. 2019): ``pq = sq * rq``.

    ``rq`` is the F1 of detection at IoU > 0.5, ``sq`` the mean IoU of the matched pairs.
    """

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int

    def to_dict(self) -> dict:
        return asdict(self)


def panoptic_quality(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> PanopticQuality:
    """Panoptic quality ``PQ = Σ IoU(matched) / (TP + FP/2 + FN/2)`` of one label image.

    Pairs match when ``IoU > threshold`` (0.5, which makes matches unique). An image with no
    objects in either truth or prediction scores 1.

    Examples
    --------
    >>> truth = np.zeros((4, 8), int); truth[:, :4] = 1; truth[:, 4:] = 2
    >>> pred = np.zeros((4, 8), int); pred[:, :3] = 5
    >>> pq = panoptic_quality(truth, pred)
    >>> pq.tp, pq.fn, round(pq.sq, 3), round(pq.rq, 3), round(pq.pq, 3)
    (1, 1, 0.75, 0.667, 0.5)
    """
    m = match(truth, pred, threshold, strict=True)
    if m.n_true == 0 and m.n_pred == 0:
        return PanopticQuality(1.0, 1.0, 1.0, 0, 0, 0)
    iou_sum = float(np.sum(m.matched_ious))
    sq = iou_sum / m.tp if m.tp else 0.0
    rq = m.tp / (m.tp + 0.5 * m.fp + 0.5 * m.fn)
    return PanopticQuality(iou_sum / (m.tp + 0.5 * m.fp + 0.5 * m.fn), sq, rq, m.tp, m.fp, m.fn)


def aggregated_jaccard_index(truth: np.ndarray, pred: np.ndarray, one_to_one: bool = False) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017) of one label image.

    Each truth object G is paired with the predicted object S of highest IoU; the index is
    ``Σ |G ∩ S| / (Σ |G ∪ S| + Σ |unpaired S|)``. A truth object that overlaps nothing adds
    its area to the denominator. ``one_to_one=False`` is Kumar's definition (a predicted
    object may pair with several truth objects, as in HoVer-Net's ``get_fast_aji``);
    ``one_to_one=True`` pairs by maximal total IoU instead (AJI+, Graham et al. 2019).
    Two empty images score 1.

    Examples
    --------
    >>> truth = np.zeros((4, 8), int); truth[:, :4] = 1; truth[:, 4:] = 2
    >>> pred = np.zeros((4, 8), int); pred[:, 2:] = 7   # covers half of 1 and all of 2
    >>> round(aggregated_jaccard_index(truth, pred), 4)  # (8 + 16) / (32 + 24)
    0.4286
    >>> aggregated_jaccard_index(truth, pred, one_to_one=True)  # 16 / (24 + 16)
    0.4
    """
    overlap, t_area, p_area, _, _ = _overlaps(truth, pred)
    if not len(t_area) and not len(p_area):
        return 1.0
    union = t_area[:, None] + p_area[None, :] - overlap
    iou = overlap / np.maximum(union, 1)
    inter_sum = 0.0
    union_sum = 0.0
    used = np.zeros(len(p_area), bool)
    if one_to_one:
        paired = np.zeros(len(t_area), bool)
        if iou.size:
            rows, cols = linear_sum_assignment(iou, maximize=True)
            ok = iou[rows, cols] > 0
            rows, cols = rows[ok], cols[ok]
            inter_sum += overlap[rows, cols].sum()
            union_sum += union[rows, cols].sum()
            paired[rows] = True
            used[cols] = True
        union_sum += t_area[~paired].sum()
    else:
        for i in range(len(t_area)):
            j = int(np.argmax(iou[i])) if len(p_area) else -1
            if j >= 0 and iou[i, j] > 0:
                inter_sum += overlap[i, j]
                union_sum += union[i, j]
                used[j] = True
            else:
                union_sum += t_area[i]
    union_sum += p_area[~used].sum()
    return float(inter_sum / union_sum) if union_sum else 0.0


def pixel_scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Foreground (label > 0) pixel Dice and Jaccard, precision and recall.

    Two empty masks score 1. Works on label images or boolean masks.

    Examples
    --------
    >>> truth = np.zeros((2, 4), int); truth[:, :2] = 1
    >>> pred = np.zeros((2, 4), int); pred[:, 1:3] = 3
    >>> {k: round(v, 3) for k, v in pixel_scores(truth, pred).items()}
    {'dice': 0.5, 'jaccard': 0.333, 'precision': 0.5, 'recall': 0.5}
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise InvalidParameterError(f"truth and prediction shapes differ: {truth.shape} vs {pred.shape}")
    t, p = truth > 0, pred > 0
    inter = int(np.count_nonzero(t & p))
    nt, np_ = int(np.count_nonzero(t)), int(np.count_nonzero(p))
    return {"dice": _ratio(2 * inter, nt + np_), "jaccard": _ratio(inter, nt + np_ - inter),
            "precision": _ratio(inter, np_), "recall": _ratio(inter, nt)}


def pixel_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Foreground Dice ``2|T ∩ P| / (|T| + |P|)``; see :func:`pixel_scores`."""
    return pixel_scores(truth, pred)["dice"]


def pixel_jaccard(truth: np.ndarray, pred: np.ndarray) -> float:
    """Foreground Jaccard ``|T ∩ P| / |T ∪ P|``; see :func:`pixel_scores`."""
    return pixel_scores(truth, pred)["jaccard"]


def mean_matched_iou(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5, strict: bool = False) -> float:
    """Mean IoU of the object pairs matched at ``threshold`` (0 when nothing matches).

    Examples
    --------
    >>> truth = np.zeros((4, 8), int); truth[:, :4] = 1; truth[:, 4:] = 2
    >>> pred = truth.copy(); pred[:, 3] = 0
    >>> mean_matched_iou(truth, pred)  # (3/4 + 1) / 2
    0.875
    """
    return match(truth, pred, threshold, strict).mean_matched_iou


@dataclass(frozen=True)
class ObjectErrors:
    """Object-level error counts of Caicedo et al. 2019 (as in DeepCell's ``ObjectMetrics``).

    Attributes
    ----------
    n_true, n_pred : objects in truth and prediction.
    correct : one-to-one matches found directly (IoU ≥ ``1 - cutoff1``).
    missed : truth objects without a counterpart (false negatives), including both members
        of a leftover one-to-one pair.
    extra : predicted objects without a counterpart (false positives, DeepCell's "gained").
    merge : predicted objects covering several truth objects.
    split : truth objects covered by several predicted objects.
    catastrophe : tangles of several truth and several predicted objects.
    missed_from_merge, extra_from_split : truth (pred) objects beyond the first in merges (splits).
    true_in_catastrophe, pred_in_catastrophe : objects involved in catastrophes.
    cutoff1, cutoff2 : the cutoffs used.
    """

    n_true: int
    n_pred: int
    correct: int
    missed: int
    extra: int
    merge: int
    split: int
    catastrophe: int
    missed_from_merge: int
    extra_from_split: int
    true_in_catastrophe: int
    pred_in_catastrophe: int
    cutoff1: float
    cutoff2: float

    def to_dict(self) -> dict:
        return asdict(self)


def object_errors(truth: np.ndarray, pred: np.ndarray, cutoff1: float = 0.4, cutoff2: float = 0.1,
                  force_event_links: bool = False) -> ObjectErrors:
    """Split / merge / missed / extra / catastrophe counts (Caicedo et al. 2019, DeepCell's schema).

    1. Objects are matched one-to-one by linear assignment where matching costs ``1 - IoU``
       and leaving an object unmatched costs ``cutoff1``: a direct match needs
       ``IoU > 1 - cutoff1`` (0.6 by default).
    2. Small objects that lie mostly (> 50 %) inside a larger one but have ``IoU ≤ cutoff1``
       get their IoU set to ``cutoff2`` so they stay linked (with ``force_event_links``, the
       large object's direct match is also broken up).
    3. The leftover objects form a bipartite graph with an edge wherever the (modified)
       ``IoU ≥ cutoff2``. Each connected component is classified by its highest-degree node:
       degree 0 → missed (truth) or extra (prediction); degree 1 → a pair too poor to match
       (one missed and one extra); a single predicted hub → merge; a single truth hub →
       split; several hubs → catastrophe.

    Parameters
    ----------
    truth, pred : ``(Y, X)`` or ``(Z, Y, X)`` integer label images, 0 = background.
    cutoff1 : cost of an unmatched object in the assignment (direct match at IoU > 1 - cutoff1).
    cutoff2 : smallest IoU that links leftover objects in the error graph.
    force_event_links : lower the IoU of a large object that swallowed a small one below the
        direct-match level, so that the event is counted as a merge/split.

    Returns
    -------
    ObjectErrors

    Examples
    --------
    >>> truth = np.zeros((4, 8), int); truth[:, :4] = 1; truth[:, 4:] = 2
    >>> merged = (truth > 0).astype(int)          # one object over two cells
    >>> e = object_errors(truth, merged)
    >>> e.correct, e.merge, e.split, e.missed, e.extra
    (0, 1, 0, 0, 0)
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not (0 < cutoff1 < 1 and 0 < cutoff2 < 1):
        raise InvalidParameterError(f"cutoffs must lie in (0, 1), got cutoff1={cutoff1}, cutoff2={cutoff2}")
    overlap, t_area, p_area, _, _ = _overlaps(truth, pred)
    n_true, n_pred = len(t_area), len(p_area)
    counts = {k: 0 for k in ("correct", "missed", "extra", "merge", "split", "catastrophe", "missed_from_merge",
                             "extra_from_split", "true_in_catastrophe", "pred_in_catastrophe")}
    if n_true == 0 or n_pred == 0:
        counts.update(missed=n_true, extra=n_pred)
        return ObjectErrors(n_true, n_pred, cutoff1=cutoff1, cutoff2=cutoff2, **counts)
    iou = overlap / (t_area[:, None] + p_area[None, :] - overlap)
    modified = iou.copy()
    small = (iou > 0) & (iou < 1 - cutoff1)
    true_in_pred = overlap / t_area[:, None]
    pred_in_true = overlap / p_area[None, :]
    for i, j in zip(*np.nonzero(small)):
        if iou[i, j] <= cutoff1 and max(true_in_pred[i, j], pred_in_true[i, j]) > 0.5:
            modified[i, j] = cutoff2
            if force_event_links:
                if true_in_pred[i, j] > 0.5:
                    modified[iou[:, j] >= 1 - cutoff1, j] = 1 - cutoff1 - 0.01
                elif pred_in_true[i, j] > 0.5:
                    modified[i, iou[i, :] >= 1 - cutoff1] = 1 - cutoff1 - 0.01
    # augmented assignment: [[1 - IoU, unmatched true], [unmatched pred, (1 - IoU).T]]
    n = n_true + n_pred
    cost = np.ones((n, n))
    cost[:n_true, :n_pred] = 1 - modified
    cost[n_true:, n_pred:] = 1 - modified.T
    cost[n_true:, :n_pred] = cutoff1 * np.eye(n_pred) + (1 - np.eye(n_pred))
    cost[:n_true, n_pred:] = cutoff1 * np.eye(n_true) + (1 - np.eye(n_true))
    rows, cols = linear_sum_assignment(cost)
    direct = (rows < n_true) & (cols < n_pred)
    counts["correct"] = int(direct.sum())
    loners_true = np.setdiff1d(np.arange(n_true), rows[direct])
    loners_pred = np.setdiff1d(np.arange(n_pred), cols[direct])
    # bipartite graph of the leftovers: nodes 0..nt-1 truth, nt.. prediction
    nt, npd = len(loners_true), len(loners_pred)
    linked = modified[np.ix_(loners_true, loners_pred)] >= cutoff2
    ei, ej = np.nonzero(linked)
    graph = coo_matrix((np.ones(len(ei)), (ei, ej + nt)), shape=(nt + npd, nt + npd))
    n_comp, comp = connected_components(graph, directed=False)
    degree = np.concatenate([linked.sum(axis=1), linked.sum(axis=0)])
    is_true = np.arange(nt + npd) < nt
    for c in range(n_comp):
        nodes = np.flatnonzero(comp == c)
        top = nodes[np.argmax(degree[nodes])]  # first highest-degree node, as DeepCell
        k = degree[top]
        n_t, n_p = int(is_true[nodes].sum()), int((~is_true[nodes]).sum())
        if k <= 1:
            counts["missed"] += n_t
            counts["extra"] += n_p
        elif int(np.sum(is_true[nodes] == is_true[top])) == 1:
            if is_true[top]:
                counts["split"] += 1
                counts["extra_from_split"] += len(nodes) - 2
            else:
                counts["merge"] += 1
                counts["missed_from_merge"] += len(nodes) - 2
        else:
            counts["catastrophe"] += 1
            counts["true_in_catastrophe"] += n_t
            counts["pred_in_catastrophe"] += n_p
    return ObjectErrors(n_true, n_pred, cutoff1=cutoff1, cutoff2=cutoff2, **counts)
