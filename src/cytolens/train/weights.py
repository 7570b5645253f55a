"""Class weights against class imbalance: for image classes and for pixel classes.

A rare class contributes little to an unweighted loss, so the network learns to
ignore it. Inverse-frequency weights (scikit-learn's "balanced" rule,
``n_samples / (n_classes * count)``) give every class the same total weight.
Task-agnostic: image classification passes one label per image, pixel
classification passes class maps (or their counts).

Examples
--------
>>> inverse_frequency_weights(["a", "a", "a", "b"])
{'a': 0.6666666666666666, 'b': 2.0}
>>> pixel_class_weights([[6, 3, 1]]).round(3).tolist()
[0.333, 0.667, 2.0]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from cytolens.errors import InvalidParameterError


def inverse_frequency_weights(labels: Iterable[Hashable], classes: Sequence[Hashable] | None = None) -> dict:
    """Weight per class, ``n / (k * count)`` (mean weight over the samples is 1).

    Parameters
    ----------
    labels : iterable
        One class label per training image (or any sample).
    classes : sequence, optional
        All classes, in the order wanted (e.g. the network's output order); by default
        the sorted distinct labels. A class without any sample is an error, since its
        weight would be infinite: add examples or drop the class.

    Returns
    -------
    dict
        ``{class: weight}`` in the order of ``classes``.
    """
    counts = Counter(labels)
    total = sum(counts.values())
    if total == 0:
        raise InvalidParameterError("no labels given: cannot compute class weights")
    classes = sorted(counts) if classes is None else list(classes)
    missing = [c for c in classes if counts.get(c, 0) == 0]
    if missing:
        raise InvalidParameterError(
            f"class(es) {', '.join(map(repr, missing))} have no training example; annotate some or remove the class")
    unknown = set(counts) - set(classes)
    if unknown:
        raise InvalidParameterError(f"labels {sorted(map(str, unknown))} are not among the classes {list(classes)}")
    return {c: total / (len(classes) * counts[c]) for c in classes}


def sample_weights(labels: Sequence[Hashable], classes: Sequence[Hashable] | None = None) -> np.ndarray:
    """Per-sample sampling weights (summing to 1) that draw every class equally often.

    Use with ``numpy.random.Generator.choice(p=...)`` or ``torch.utils.data.WeightedRandomSampler``.
    """
    weights = inverse_frequency_weights(labels, classes)
    per_sample = np.array([weights[label] for label in labels], dtype=float)
    return per_sample / per_sample.sum()


def pixel_class_weights(class_counts: Iterable[Sequence[int]]) -> np.ndarray:
    """Inverse-frequency weights from per-image pixel counts per class, normalized to mean 1.

    ``class_counts`` holds one row of counts (``np.bincount(class_map.ravel(), minlength=K)``)
    per image. A class absent from every image gets the largest weight of the others
    instead of an infinite one.
    """
    counts = np.sum(np.asarray(list(class_counts), dtype=float), axis=0)
    if counts.ndim != 1 or counts.sum() == 0:
        raise InvalidParameterError("pixel class counts must be rows of non-negative counts, not all zero")
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / counts[present]
    weights[~present] = weights[present].max()
    return weights / weights.mean()
