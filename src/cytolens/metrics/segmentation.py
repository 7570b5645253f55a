"""Instance-segmentation scores: IoU matching, precision, recall, F1, AP, DSB2018 score.

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


def _check_pair(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise InvalidParameterError(f"truth and prediction shapes differ: {truth.shape} vs {pred.shape}")
    for name, arr in (("truth", truth), ("prediction", pred)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidParameterError(f"{name} must be an integer label image, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise InvalidParameterError(f"{name} has negative labels; 0 is background, objects > 0")
    return truth, pred


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every (truth object, predicted object) pair.

    Returns
    -------
    iou : (n_true, n_pred) float array
    true_ids, pred_ids : the label values of the rows and columns.
    """
    truth, pred = _check_pair(truth, pred)
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


def _match_from_iou(iou, true_ids, pred_ids, threshold: float, strict: bool) -> Matching:
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
    return _match_from_iou(*iou_matrix(truth, pred), threshold, strict)


def match_thresholds(truth, pred, thresholds=KAGGLE_THRESHOLDS, strict: bool = False) -> list[Matching]:
    """:func:`match` at several thresholds, computing the IoU matrix once."""
    iou, true_ids, pred_ids = iou_matrix(truth, pred)
    return [_match_from_iou(iou, true_ids, pred_ids, t, strict) for t in thresholds]


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
