"""Classification scores: confusion matrix, per-class precision / recall / F1, accuracy,
balanced accuracy and macro-F1.

Conventions (those of scikit-learn with ``zero_division=0``, which the tests check):

* ``labels`` fixes the class order; by default the sorted union of the classes seen in
  truth and prediction.
* A ratio with a zero denominator (a class never predicted, or never true) is 0.
* Balanced accuracy is the mean recall over the classes present in the truth.
* Macro-F1 averages F1 over all ``labels`` (a class that is only predicted scores 0);
  weighted-F1 weights by support.

Example
-------
>>> s = classification_scores(["a", "a", "b", "c"], ["a", "b", "b", "c"])
>>> s.accuracy, round(s.macro_f1, 4), s.confusion.tolist()
(0.75, 0.7778, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cytolens.errors import InvalidParameterError

__all__ = ["ClassificationScores", "classification_scores", "confusion_matrix"]

_NORMALIZE = (None, "true", "pred", "all")


def _as_labels(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidParameterError(f"{name} must be a 1D sequence of class labels, got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InvalidParameterError(f"{name} holds NaN; every item needs a class")
    return arr


def _prepare(y_true, y_pred, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_pred = _as_labels(y_true, "truth"), _as_labels(y_pred, "prediction")
    if len(y_true) != len(y_pred):
        raise InvalidParameterError(f"truth has {len(y_true)} items but prediction has {len(y_pred)}")
    if len(y_true) == 0:
        raise InvalidParameterError("no items to score: truth and prediction are empty")
    if (y_true.dtype.kind in "US") != (y_pred.dtype.kind in "US"):
        raise InvalidParameterError(f"truth and prediction mix text and numeric classes "
                                    f"({y_true.dtype} vs {y_pred.dtype}); use the same kind of class names")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    else:
        labels = _as_labels(labels, "labels")
        if len(np.unique(labels)) != len(labels):
            raise InvalidParameterError("labels are listed more than once")
        unknown = np.setdiff1d(np.concatenate([y_true, y_pred]), labels)
        if unknown.size:
            raise InvalidParameterError(f"classes {unknown[:5].tolist()} occur but are not in labels {labels.tolist()}")
    return y_true, y_pred, labels


def confusion_matrix(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None,
                     normalize: str | None = None) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of items of true class ``labels[i]`` predicted as ``labels[j]``.

    Parameters
    ----------
    y_true, y_pred : 1D sequences of class labels (numbers or text).
    labels : class order; default the sorted union of both.
    normalize : None (counts), ``"true"`` (rows sum to 1), ``"pred"`` (columns sum to 1) or
        ``"all"`` (everything sums to 1); empty rows/columns stay 0.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1], [0, 1, 1]).tolist()
    [[1, 1], [0, 1]]
    >>> confusion_matrix([0, 0, 1], [0, 1, 1], normalize="true").tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    if normalize not in _NORMALIZE:
        raise InvalidParameterError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    y_true, y_pred, labels = _prepare(y_true, y_pred, labels)
    order = np.argsort(labels, kind="stable")
    index = order[np.searchsorted(labels, y_true, sorter=order)]
    jndex = order[np.searchsorted(labels, y_pred, sorter=order)]
    n = len(labels)
    counts = np.bincount(index * n + jndex, minlength=n * n).reshape(n, n)
    if normalize is None:
        return counts
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            out = counts / counts.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            out = counts / counts.sum(axis=0, keepdims=True)
        else:
            out = counts / counts.sum()
    return np.nan_to_num(out, nan=0.0)


@dataclass(frozen=True)
class ClassificationScores:
    """All classification scores of one prediction.

    Attributes
    ----------
    labels : class order of ``confusion`` and ``per_class``.
    confusion : counts, rows = truth, columns = prediction.
    per_class : table with ``label, support, predicted, precision, recall, f1``.
    accuracy, balanced_accuracy, macro_f1, weighted_f1, macro_precision, macro_recall : summaries.
    """

    labels: np.ndarray
    confusion: np.ndarray
    per_class: pd.DataFrame
    accuracy: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_f1: float

    def normalized(self, normalize: str = "true") -> np.ndarray:
        """The confusion matrix normalized over ``"true"`` rows, ``"pred"`` columns or ``"all"``."""
        if normalize not in _NORMALIZE[1:]:
            raise InvalidParameterError(f"normalize must be one of {_NORMALIZE[1:]}, got {normalize!r}")
        c = self.confusion
        den = {"true": c.sum(axis=1, keepdims=True), "pred": c.sum(axis=0, keepdims=True), "all": c.sum()}[normalize]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(c / den, nan=0.0)

    def summary(self) -> dict:
        """The scalar scores and the number of items, as a JSON-ready dict."""
        return {"n_items": int(self.confusion.sum()), "n_classes": len(self.labels),
                "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
                "macro_precision": self.macro_precision, "macro_recall": self.macro_recall,
                "macro_f1": self.macro_f1, "weighted_f1": self.weighted_f1}


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_scores(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None) -> ClassificationScores:
    """Confusion matrix, per-class precision / recall / F1, accuracy, balanced accuracy, macro-F1.

    Parameters
    ----------
    y_true, y_pred : 1D sequences of class labels (numbers or text), one per item.
    labels : class order; default the sorted union of both.

    Returns
    -------
    ClassificationScores

    Examples
    --------
    >>> s = classification_scores([1, 1, 2, 2], [1, 2, 2, 2])
    >>> s.per_class[["label", "precision", "recall"]].values.tolist()
    [[1.0, 1.0, 0.5], [2.0, 0.6666666666666666, 1.0]]
    >>> s.balanced_accuracy
    0.75
    """
    y_true, y_pred, labels = _prepare(y_true, y_pred, labels)
    counts = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(counts).astype(float)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    present = support > 0
    per_class = pd.DataFrame({"label": labels, "support": support, "predicted": predicted,
                              "precision": precision, "recall": recall, "f1": f1})
    return ClassificationScores(
        labels=labels, confusion=counts, per_class=per_class,
        accuracy=float(tp.sum() / counts.sum()),
        balanced_accuracy=float(recall[present].mean()),
        macro_precision=float(precision.mean()), macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        weighted_f1=float(np.average(f1, weights=support)) if support.sum() else 0.0,
    )
