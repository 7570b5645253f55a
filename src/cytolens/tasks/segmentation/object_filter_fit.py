"""Fit a segmentation package's object filter on the train split of its training data.

Every train image is segmented as :func:`cytolens.segment` does it (diameter estimated,
no filter); each object found gets the features of
:func:`~cytolens.tasks.segmentation.object_filter.object_features` and the label
"matches a true object at IoU >= 0.5". A gradient-boosted tree classifier
(scikit-learn, settings in :data:`TREES`) is scored by cross-validation grouped by
image; the probability threshold kept is the one that maximizes the mean per-image
AP@0.5 of the held-out images once their rejected objects are dropped. The classifier
refitted on all train images is written to ``<package>/object_filter.json`` and the
cross-validated scores to ``model.json`` (``training.object_filter``).

Only the train split is used, as for the network: val and test stay unseen.
scikit-learn is needed here, not when the filter is applied.

Example (``cytolens fit-object-filter my_config.yaml`` does the same)::

    from cytolens.tasks.segmentation.object_filter_fit import fit_object_filter
    scores = fit_object_filter("models/my_nuclei", "my_config.yaml")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidParameterError
from cytolens.io import read_image
from cytolens.metrics import iou_matrix
from cytolens.models import load, update_meta
from cytolens.tasks.segmentation.inference import as_yxc, segment_outputs, tile_preparer
from cytolens.tasks.segmentation.object_filter import FEATURES, BoostedTrees, ObjectFilter, filter_maps, object_features

MATCH_IOU = 0.5
#: scikit-learn ``GradientBoostingClassifier`` settings
TREES = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8}
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
FOLDS = 5
#: schemas whose outputs start with a foreground and an inner-distance logit, or can be turned into them
#: (``object_filter.filter_maps``)
SCHEMAS_WITH_FILTERS = ("deep_watershed", "contact_watershed", "flow_field")


def best_iou_per_object(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For objects 1..labels.max() (sequential), the highest IoU with any true object (0 when none overlaps)."""
    iou, _, pred_ids = iou_matrix(truth, labels)
    best = np.zeros(int(labels.max()))
    if iou.shape[0]:
        best[pred_ids - 1] = iou.max(axis=0)
    return best


def mean_image_ap(matched: np.ndarray, keep: np.ndarray, image: np.ndarray, n_true: dict) -> float:
    """Mean over images of TP / (TP + FP + FN) at IoU 0.5 when only the kept objects remain.

    A match at IoU >= 0.5 is one-to-one, so dropping an object never changes another's match.
    """
    scores = []
    for name, count in n_true.items():
        mine = image == name
        tp = int((matched[mine] & keep[mine]).sum())
        fp = int((~matched[mine] & keep[mine]).sum())
        scores.append(tp / max(tp + fp + (count - tp), 1))
    return float(np.mean(scores))


def collect_objects(package, pairs: dict, progress: bool = False):
    """Features, "matches a true object" and image id of every object the package finds in ``pairs``
    (``{id: (image path, label path)}``), plus the number of true objects in each image."""
    rows, matched, image_of, n_true = [], [], [], {}
    items = pairs.items()
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="segmenting train images", unit="image")
    for image_id, (image_path, label_path) in items:
        image = as_yxc(read_image(image_path))
        truth = read_image(label_path)
        n_true[image_id] = int(len(np.unique(truth[truth > 0])))
        prep = tile_preparer(package, image)
        outputs, labels, scale = segment_outputs(package, image, prep)
        if outputs is None or labels.max() == 0:
            continue
        maps = filter_maps(package.meta["schema"], outputs)
        rows.append(object_features(labels, maps, image, prep.lo, prep.hi, scale))
        matched.append(best_iou_per_object(truth, labels) >= MATCH_IOU)
        image_of += [image_id] * int(labels.max())
    if not rows:
        raise InvalidParameterError("the model finds no object in any train image: nothing to fit a filter on")
    return np.concatenate(rows), np.concatenate(matched), np.asarray(image_of), n_true


def fit_object_filter(package_dir: str | os.PathLike, config, progress: bool = False) -> dict:
    """Fit and write ``<package_dir>/object_filter.json`` from the train split of ``config``'s data.

    ``config`` is a segmentation training config (path or loaded); its data folders and
    split file say which images are train. Returns the scores recorded in ``model.json``.
    """
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import GroupKFold

    from cytolens.train.config import load_config
    from cytolens.train.splits import make_data_split

    package_dir = Path(package_dir)
    config = load_config(config) if isinstance(config, str | os.PathLike) else config
    package = load(package_dir)  # segment_outputs never applies a filter already in the package
    if package.meta.get("schema") not in SCHEMAS_WITH_FILTERS:
        raise InvalidParameterError(f"object filters read foreground and distance (or flow) outputs; model "
                                    f"{package.name!r} ({package.meta.get('schema')}) has none")
    split, files, _ = make_data_split(config)
    train = {i: files[i] for i in split["train"]}
    features, matched, image_of, n_true = collect_objects(package, train, progress)
    images_with_objects = len(set(image_of))
    if images_with_objects < FOLDS:
        raise InvalidParameterError(f"the model finds objects in only {images_with_objects} train image(s); "
                                    f"fitting a filter needs at least {FOLDS}")
    if matched.all() or not matched.any():
        raise InvalidParameterError("every object found in the train images is " + (
            "right" if matched.all() else "wrong") + ": there is nothing for a filter to learn")
    held_out = np.zeros(len(matched))
    for fit_rows, test_rows in GroupKFold(FOLDS).split(features, groups=image_of):
        if matched[fit_rows].all() or not matched[fit_rows].any():
            held_out[test_rows] = float(matched[fit_rows].all())  # one class seen: predict it
            continue
        model = GradientBoostingClassifier(random_state=config.seed, **TREES).fit(features[fit_rows], matched[fit_rows])
        held_out[test_rows] = model.predict_proba(features[test_rows])[:, 1]
    everything = np.ones(len(matched), bool)
    cv_ap = {str(t): mean_image_ap(matched, held_out >= t, image_of, n_true) for t in THRESHOLDS}
    threshold = max(THRESHOLDS, key=lambda t: cv_ap[str(t)])
    model = GradientBoostingClassifier(random_state=config.seed, **TREES).fit(features, matched)
    trees = BoostedTrees.from_sklearn(model)
    disagreement = float(np.abs(trees.decision_function(features) - model.decision_function(features)).max())
    if disagreement > 1e-6:
        raise RuntimeError(f"exported trees disagree with scikit-learn by {disagreement}")
    scores = {"train_images": len(n_true), "objects": int(len(matched)), "matched_fraction": float(matched.mean()),
              "classifier": {"sklearn": "GradientBoostingClassifier", **TREES, "random_state": config.seed},
              "cv_folds": FOLDS, "cv_ap50_without_filter": mean_image_ap(matched, everything, image_of, n_true),
              "cv_ap50_by_threshold": cv_ap, "threshold": threshold}
    ObjectFilter(features=list(FEATURES), threshold=threshold, model=trees,
                 provenance={"fitted_by": "cytolens.tasks.segmentation.object_filter_fit", **scores}
                 ).save(package_dir / "object_filter.json")
    update_meta(package_dir, lambda meta: meta.setdefault("training", {}).update(object_filter=scores))
    return scores


__all__ = ["fit_object_filter", "collect_objects", "best_iou_per_object", "mean_image_ap", "TREES", "THRESHOLDS"]
