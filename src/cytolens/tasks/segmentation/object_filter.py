"""Drop predicted objects that are probably not real nuclei (a second, object-level stage).

The watershed turns every blob of foreground into an object; on DSB2018 most false
positives of the bundled models are faint blobs on background, small fragments and
shapes no nucleus has. An object-level classifier sees what a pixel network cannot:
the object's area relative to the others, its shape, how sure the network was over
all of it, how it contrasts with the background. It is a gradient-boosted tree
ensemble (scikit-learn's ``GradientBoostingClassifier``) fitted on the model's own
predictions on its *training* images, each labelled by whether it matches a true
nucleus at IoU >= 0.5 (``training/nuclei/fit_object_filter.py``). The trees are
stored as plain numbers in the package's ``object_filter.json`` and evaluated here
with numpy: no pickles, and no scikit-learn at run time.

Example
-------
>>> import numpy as np
>>> labels = np.zeros((32, 32), np.uint32); labels[4:12, 4:12] = 1; labels[20:22, 20:22] = 2
>>> outputs = np.full((3, 32, 32), -4.0, np.float32); outputs[:2, 4:12, 4:12] = 4.0
>>> image = np.zeros((32, 32, 1), np.float32); image[4:12, 4:12] = 1.0
>>> object_features(labels, outputs, image, low=0.0, high=1.0, scale=1.0).shape
(2, 16)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops

from cytolens.errors import InvalidParameterError
from cytolens.tasks.segmentation._common import relabel_sequential, sigmoid

#: per-object features, in the column order the trees were fitted with
FEATURES = ("colour", "log_area", "relative_area", "log_count", "solidity", "eccentricity", "extent",
            "foreground_mean", "foreground_min", "distance_mean", "distance_max", "contact_mean", "contact_max",
            "contrast", "abs_contrast", "touching")
#: rows of the label image handled at once, so whole-slide images need no extra full-size maps
BAND_ROWS = 1024
#: at most this many background pixels (an even grid of them) give the background's level and spread
BACKGROUND_SAMPLE = 1_000_000


def _bands(height: int) -> Iterator[slice]:
    for y0 in range(0, height, BAND_ROWS):
        yield slice(y0, min(y0 + BAND_ROWS, height))


def is_colour(image_yxc: np.ndarray) -> bool:
    """True when an image has several channels that are not copies of each other."""
    if image_yxc.shape[-1] == 1:
        return False
    step = max(1, int(np.sqrt(image_yxc.shape[0] * image_yxc.shape[1] / 250_000)))
    sample = image_yxc[::step, ::step]
    return bool(np.any(sample != sample[..., :1]))


def _per_object_stats(labels: np.ndarray, channel: np.ndarray, count: int, logit: bool) -> tuple[np.ndarray, ...]:
    """(mean, min, max) of ``channel`` (sigmoid of it when ``logit``) over each object 1..count."""
    total = np.zeros(count + 1)
    low = np.full(count + 1, np.inf)
    high = np.full(count + 1, -np.inf)
    index = np.arange(1, count + 1)
    for rows in _bands(labels.shape[0]):
        band_labels = labels[rows]
        values = sigmoid(channel[rows]) if logit else np.asarray(channel[rows], np.float32)
        total += np.bincount(band_labels.ravel(), weights=values.ravel(), minlength=count + 1)
        present = np.unique(band_labels)
        present = present[present > 0]
        if len(present):
            low[present] = np.minimum(low[present], ndi.minimum(values, band_labels, present))
            high[present] = np.maximum(high[present], ndi.maximum(values, band_labels, present))
    area = np.bincount(labels.ravel(), minlength=count + 1).astype(float)
    return (total / np.maximum(area, 1))[index], low[index], high[index]


def _touching_fraction(labels: np.ndarray, count: int) -> np.ndarray:
    """Fraction of each object's outline that borders another object rather than background."""
    to_object = np.zeros(count + 1)
    to_background = np.zeros(count + 1)

    def add(a: np.ndarray, b: np.ndarray) -> None:
        for this, other in ((a, b), (b, a)):
            outline = (this > 0) & (this != other)
            to_object[:] += np.bincount(this[outline & (other > 0)], minlength=count + 1)
            to_background[:] += np.bincount(this[outline & (other == 0)], minlength=count + 1)

    height = labels.shape[0]
    for rows in _bands(height):
        band = labels[rows.start : min(rows.stop + 1, height)]  # one row more: pairs across the band edge
        add(band[1:], band[:-1])
        add(labels[rows, 1:], labels[rows, :-1])
    outline = to_object + to_background
    return (to_object / np.maximum(outline, 1))[1:]


def object_features(labels: np.ndarray, outputs: np.ndarray, image_yxc: np.ndarray, low: float, high: float,
                    scale: float) -> np.ndarray:
    """Features (columns :data:`FEATURES`) of objects ``1..labels.max()`` — labels must be sequential.

    ``outputs`` are the network's logits at the image's resolution (foreground, inner
    distance, and contacts when the schema has them), ``low``/``high`` the intensities
    the package normalizes to 0/1, ``scale`` the zoom the network saw the image at
    (areas are in model pixels, comparable across images of any resolution).
    """
    count = int(labels.max())
    if count == 0:
        return np.zeros((0, len(FEATURES)))
    labels = np.asarray(labels)
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(float)
    props = regionprops(labels)
    shape = np.array([(p.solidity, p.eccentricity, p.extent) for p in props])
    foreground = _per_object_stats(labels, outputs[0], count, logit=True)
    distance = _per_object_stats(labels, outputs[1], count, logit=True)
    if outputs.shape[0] > 2:
        contact = _per_object_stats(labels, outputs[2], count, logit=True)
    else:
        contact = (np.zeros(count),) * 3
    # contrast: mean normalized intensity of the object against the background's level, in its spreads
    gray = np.empty(labels.shape, np.float32)
    for rows in _bands(labels.shape[0]):
        gray[rows] = (image_yxc[rows].mean(axis=-1, dtype=np.float32) - low) / max(high - low, 1e-6)
    inside = _per_object_stats(labels, gray, count, logit=False)[0]
    step = max(1, int(np.sqrt(labels.size / BACKGROUND_SAMPLE)))
    background = gray[::step, ::step][labels[::step, ::step] == 0]
    del gray
    level, spread = (float(np.median(background)), float(background.std())) if background.size else (0.0, 1.0)
    contrast = (inside - level) / (spread + 1e-3)
    columns = {
        "colour": np.full(count, float(is_colour(image_yxc))),
        "log_area": np.log(area * scale**2), "relative_area": area / np.median(area),
        "log_count": np.full(count, np.log(count)),
        "solidity": shape[:, 0], "eccentricity": shape[:, 1], "extent": shape[:, 2],
        "foreground_mean": foreground[0], "foreground_min": foreground[1],
        "distance_mean": distance[0], "distance_max": distance[2],
        "contact_mean": contact[0], "contact_max": contact[2],
        "contrast": contrast, "abs_contrast": np.abs(contrast),
        "touching": _touching_fraction(labels, count),
    }
    return np.stack([columns[name] for name in FEATURES], axis=1)


@dataclass
class BoostedTrees:
    """A binary gradient-boosted tree ensemble: ``logit = init + learning_rate × Σ tree(x)``.

    Each tree is a dict of equal-length lists ``feature``, ``threshold``, ``left``,
    ``right``, ``value`` (scikit-learn's ``tree_`` arrays: leaves have ``left == -1``;
    ``x[feature] <= threshold`` goes left, compared in float32 as scikit-learn does).
    """

    init: float
    learning_rate: float
    trees: list[dict]

    @classmethod
    def from_sklearn(cls, model) -> BoostedTrees:
        """Export a fitted binary ``sklearn.ensemble.GradientBoostingClassifier`` (public attributes only)."""
        prior = float(model.init_.class_prior_[1])
        trees = []
        for (estimator,) in model.estimators_:
            tree = estimator.tree_
            trees.append({"feature": tree.feature.tolist(), "threshold": tree.threshold.tolist(),
                          "left": tree.children_left.tolist(), "right": tree.children_right.tolist(),
                          "value": tree.value[:, 0, 0].tolist()})
        return cls(init=float(np.log(prior / (1 - prior))), learning_rate=float(model.learning_rate), trees=trees)

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, np.float32).astype(np.float64)
        logit = np.full(len(x), self.init)
        rows = np.arange(len(x))
        for tree in self.trees:
            feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"])
            left, right, value = np.asarray(tree["left"]), np.asarray(tree["right"]), np.asarray(tree["value"])
            node = np.zeros(len(x), int)
            internal = left[node] >= 0
            while internal.any():
                goes_left = x[rows, np.maximum(feature[node], 0)] <= threshold[node]
                node = np.where(internal, np.where(goes_left, left[node], right[node]), node)
                internal = left[node] >= 0
            logit += self.learning_rate * value[node]
        return logit

    def probability(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(features)))


@dataclass
class ObjectFilter:
    """Keeps the objects whose probability of being a real object is at least ``threshold``."""

    features: list[str]
    threshold: float
    model: BoostedTrees
    provenance: dict

    @classmethod
    def from_dict(cls, data: dict) -> ObjectFilter:
        if tuple(data.get("features", ())) != FEATURES:
            raise InvalidParameterError("this object filter was fitted on other features than this cytolens "
                                        f"computes ({data.get('features')}); refit it or upgrade cytolens")
        return cls(features=list(data["features"]), threshold=float(data["threshold"]),
                   model=BoostedTrees(**data["model"]), provenance=data.get("provenance", {}))

    def to_dict(self) -> dict:
        return {"features": self.features, "threshold": self.threshold, "provenance": self.provenance,
                "model": {"init": self.model.init, "learning_rate": self.model.learning_rate,
                          "trees": self.model.trees}}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    def apply(self, labels: np.ndarray, outputs: np.ndarray, image_yxc: np.ndarray, low: float, high: float,
              scale: float) -> np.ndarray:
        """``labels`` without the objects the classifier rejects, renumbered 1..N."""
        features = object_features(labels, outputs, image_yxc, low, high, scale)
        if len(features) == 0:
            return labels
        rejected = np.flatnonzero(self.model.probability(features) < self.threshold) + 1
        if len(rejected) == 0:
            return labels
        keep = np.ones(int(labels.max()) + 1, bool)
        keep[rejected] = False
        out = labels.copy()
        for rows in _bands(out.shape[0]):
            band = out[rows]
            band[~keep[band]] = 0
        return relabel_sequential(out)


__all__ = ["FEATURES", "BoostedTrees", "ObjectFilter", "is_colour", "object_features"]
