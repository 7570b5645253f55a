"""Fit a segmentation package's object filter on its *train* split (val and test are never seen).

Usage: python training/nuclei/fit_object_filter.py [PACKAGE] [CONFIG]
(defaults: the bundled nuclei package and its recipe, training/nuclei_gpu/config.yaml)

Every train image is segmented as ``cytolens.segment`` does it (diameter estimated, no
filter); each object found gets the features of
:mod:`cytolens.tasks.segmentation.object_filter` and the label "matches a true nucleus
at IoU >= 0.5". A gradient-boosted tree classifier (settings below) is scored by 5-fold
cross-validation grouped by image: the probability threshold kept is the one that
maximizes the mean per-image AP@0.5 of the held-out images once their rejected objects
are dropped. The classifier refitted on all train images is written, as plain numbers,
to PACKAGE/object_filter.json; the cross-validated scores go to model.json.
Validation scores come from ``benchmarks/segmentation_dsb.py --split val``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import GroupKFold

from cytolens.io import read_image
from cytolens.models import load
from cytolens.tasks.segmentation.inference import as_yxc, segment_outputs, tile_preparer
from cytolens.tasks.segmentation.object_filter import FEATURES, BoostedTrees, ObjectFilter, object_features
from cytolens.train.config import load_config
from cytolens.train.splits import load_split

HERE = Path(__file__).parent
MATCH_IOU = 0.5
TREES = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8}
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
FOLDS = 5


def best_iou_per_object(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For objects 1..labels.max(), the highest IoU with any true object (0 when none overlaps)."""
    n_true, n_pred = int(truth.max()) + 1, int(labels.max()) + 1
    overlap = np.bincount(truth.ravel().astype(np.int64) * n_pred + labels.ravel(),
                          minlength=n_true * n_pred).reshape(n_true, n_pred)
    union = overlap.sum(1)[:, None] + overlap.sum(0)[None, :] - overlap
    iou = (overlap / np.maximum(union, 1))[1:, 1:]
    return iou.max(axis=0) if n_true > 1 else np.zeros(n_pred - 1)


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


def collect(package, config, ids):
    rows, matched, image_of, n_true = [], [], [], {}
    start = time.time()
    for k, image_id in enumerate(ids):
        image = as_yxc(read_image(config.data.images / f"{image_id}.tif"))
        truth = read_image(config.data.labels / f"{image_id}.tif")
        n_true[image_id] = int(len(np.unique(truth[truth > 0])))
        prep = tile_preparer(package, image)
        outputs, labels, scale = segment_outputs(package, image, prep)
        if outputs is None or labels.max() == 0:
            continue
        rows.append(object_features(labels, outputs, image, prep.lo, prep.hi, scale))
        matched.append(best_iou_per_object(truth, labels) >= MATCH_IOU)
        image_of += [image_id] * int(labels.max())
        if k % 50 == 0:
            print(f"{k}/{len(ids)} images, {time.time() - start:.0f} s", flush=True)
    return np.concatenate(rows), np.concatenate(matched), np.asarray(image_of), n_true


def main() -> None:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "src/cytolens/models/bundled/nuclei"
    config = load_config(sys.argv[2] if len(sys.argv) > 2 else HERE.parent / "nuclei_gpu" / "config.yaml")
    package = load(package_dir)  # segment_outputs never applies a filter already in the package
    if package.meta["schema"] not in ("deep_watershed", "contact_watershed"):
        sys.exit(f"object filters read foreground and distance outputs; {package.meta['schema']} has none")
    train_ids = load_split(config.data.split_file)["train"]
    features, matched, image_of, n_true = collect(package, config, train_ids)
    held_out = np.zeros(len(matched))
    for fit_rows, test_rows in GroupKFold(FOLDS).split(features, groups=image_of):
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
                 provenance={"fitted_by": "training/nuclei/fit_object_filter.py", **scores}
                 ).save(package_dir / "object_filter.json")
    meta = json.loads((package_dir / "model.json").read_text())
    meta.setdefault("training", {})["object_filter"] = scores
    (package_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
