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
from skimage.morphology import convex_hull_image

from cytolens.errors import InvalidModelError
from cytolens.tasks.segmentation._common import relabel_sequential, sigmoid

#: per-object features, in the column order the trees were fitted with
FEATURES = ("colour", "log_area", "relative_area", "log_count", "solidity", "eccentricity", "extent",
            "foreground_mean", "foreground_min", "distance_mean", "distance_max", "contact_mean", "contact_max",
            "contrast", "abs_contrast", "touching")
#: the arrays of one exported tree (scikit-learn's ``tree_`` names, shortened)
TREE_KEYS = ("feature", "threshold", "left", "right", "value")
#: rows of the label image handled at once, so whole-slide images need no extra full-size maps
BAND_ROWS = 256
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


class _ObjectSums:
    """Per-object sums, minima and maxima of several maps, gathered one band of rows at a time."""

    def __init__(self, count: int, names: tuple[str, ...], extremes: tuple[str, ...]) -> None:
        self.count = count
        self.area = np.zeros(count + 1)
        self.sum = {name: np.zeros(count + 1) for name in names}
        self.min = {name: np.full(count + 1, np.inf) for name in extremes}
        self.max = {name: np.full(count + 1, -np.inf) for name in extremes}

    def add(self, band_labels: np.ndarray, maps: dict[str, np.ndarray]) -> None:
        flat = band_labels.ravel()
        inside = np.flatnonzero(flat)
        if len(inside) == 0:
            return
        self.area += np.bincount(flat, minlength=self.count + 1)
        # one sort of the band's object pixels by label serves every map's minima and maxima
        order = inside[np.argsort(flat[inside], kind="stable")]
        sorted_labels = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        present = sorted_labels[starts]
        for name, values in maps.items():
            values = values.ravel()
            self.sum[name] += np.bincount(flat, weights=values, minlength=self.count + 1)
            if name not in self.min:
                continue
            ordered = values[order]
            self.min[name][present] = np.minimum(self.min[name][present], np.minimum.reduceat(ordered, starts))
            self.max[name][present] = np.maximum(self.max[name][present], np.maximum.reduceat(ordered, starts))


def _eccentricity(sums: _ObjectSums) -> np.ndarray:
    """Eccentricity of the ellipse with the same second moments (as ``skimage.measure.regionprops``)."""
    n = sums.area[1:]
    mean_y, mean_x = sums.sum["y"][1:] / n, sums.sum["x"][1:] / n
    var_y = sums.sum["yy"][1:] / n - mean_y**2
    var_x = sums.sum["xx"][1:] / n - mean_x**2
    cov = sums.sum["xy"][1:] / n - mean_y * mean_x
    half_gap = np.sqrt(((var_y - var_x) / 2) ** 2 + cov**2)
    big, small = (var_y + var_x) / 2 + half_gap, np.maximum((var_y + var_x) / 2 - half_gap, 0)
    return np.where(big > 0, np.sqrt(np.clip(1 - small / np.where(big > 0, big, 1), 0, 1)), 0.0)


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


def filter_maps(schema: str, outputs: np.ndarray) -> np.ndarray:
    """The network outputs in the form the features read: foreground, inner distance[, contacts] logits.
    The watershed schemas' outputs are that already; a schema with other outputs (``flow_field``) says
    how to make them with its own ``filter_maps``."""
    from cytolens.tasks.segmentation import SCHEMAS

    convert = getattr(SCHEMAS[schema], "filter_maps", None)
    return outputs if convert is None else convert(outputs)


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
    has_contacts = outputs.shape[0] > 2
    sums = _ObjectSums(count, ("foreground", "distance", "contact", "gray", "y", "x", "yy", "xx", "xy"),
                       extremes=("foreground", "distance", "contact"))
    step = max(1, int(np.sqrt(labels.size / BACKGROUND_SAMPLE)))
    background = []
    for rows in _bands(labels.shape[0]):
        band = labels[rows]
        gray = (image_yxc[rows].mean(axis=-1, dtype=np.float32) - low) / max(high - low, 1e-6)
        # background sample: the image-wide grid of every step-th row and column
        first = (-rows.start) % step
        background.append(gray[first::step, ::step][band[first::step, ::step] == 0])
        y, x = np.mgrid[rows, 0 : labels.shape[1]].astype(np.float64)
        sums.add(band, {"foreground": sigmoid(outputs[0][rows]), "distance": sigmoid(outputs[1][rows]),
                        "contact": sigmoid(outputs[2][rows]) if has_contacts else np.zeros(band.shape, np.float32),
                        "gray": gray, "y": y, "x": x, "yy": y * y, "xx": x * x, "xy": x * y})
    area = sums.area
    mean = {name: sums.sum[name][1:] / area[1:] for name in ("foreground", "distance", "contact", "gray")}
    background = np.concatenate(background)
    level, spread = (float(np.median(background)), float(background.std())) if background.size else (0.0, 1.0)
    # contrast: mean normalized intensity of the object against the background's level, in its spreads
    contrast = (mean["gray"] - level) / (spread + 1e-3)
    boxes = ndi.find_objects(labels)
    extent = area[1:] / np.array([(b[0].stop - b[0].start) * (b[1].stop - b[1].start) for b in boxes])
    solidity = np.array([area[i] / convex_hull_image(labels[b] == i).sum() for i, b in enumerate(boxes, start=1)])
    area = area[1:]
    columns = {
        "colour": np.full(count, float(is_colour(image_yxc))),
        "log_area": np.log(area * scale**2), "relative_area": area / np.median(area),
        "log_count": np.full(count, np.log(count)),
        "solidity": solidity, "eccentricity": _eccentricity(sums), "extent": extent,
        "foreground_mean": mean["foreground"], "foreground_min": sums.min["foreground"][1:],
        "distance_mean": mean["distance"], "distance_max": sums.max["distance"][1:],
        "contact_mean": mean["contact"], "contact_max": sums.max["contact"][1:],
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
            raise InvalidModelError("this object filter was fitted on other features than this cytolens "
                                    f"computes ({data.get('features')}); refit it or upgrade cytolens")
        try:
            model = BoostedTrees(**data["model"])
            if not all(len(set(map(len, tree.values()))) == 1 and set(tree) == set(TREE_KEYS) for tree in model.trees):
                raise ValueError("trees need equal-length lists " + ", ".join(TREE_KEYS))
            return cls(features=list(data["features"]), threshold=float(data["threshold"]), model=model,
                       provenance=data.get("provenance", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidModelError(f"malformed object filter ({type(exc).__name__}: {exc}); refit it with "
                                   "training/nuclei/fit_object_filter.py") from None

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
