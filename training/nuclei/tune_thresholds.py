"""Choose a segmentation package's post-processing thresholds on its *val* split (never test).
With ``--augment`` the same grid is also scored with test-time augmentation (flips),
for information; the chosen thresholds are the best without it (the default).

Usage: python training/nuclei/tune_thresholds.py [PACKAGE] [CONFIG] [--augment]
(defaults: the bundled nuclei package and its recipe, training/nuclei_gpu/config.yaml)

Network outputs of every val image are computed once (at the true object scale, so
the size estimate does not blur the choice), then a grid of thresholds is scored by
mean per-image AP@0.5. The best values become the package's post-processing
defaults in model.json, with the grid's scores recorded next to them.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from cytolens.io import read_image
from cytolens.metrics import match
from cytolens.models import load, update_meta
from cytolens.tasks.segmentation.inference import (
    as_yxc,
    postprocess_outputs,
    predict_outputs,
    tile_preparer,
)
from cytolens.tasks.segmentation.training import median_diameter
from cytolens.train.config import load_config
from cytolens.train.splits import load_split

HERE = Path(__file__).parent
GRIDS = {
    "deep_watershed": {"foreground_threshold": [0.4, 0.5], "marker_threshold": [0.4, 0.5, 0.6],
                       "smoothing": [0.0, 1.0, 2.0], "marker_dynamic": [0.0, 0.1, 0.2, 0.3, 0.4]},
    "contact_watershed": {"foreground_threshold": [0.4, 0.5], "marker_threshold": [0.4],
                          "smoothing": [0.0, 1.0], "marker_dynamic": [0.2, 0.3, 0.4, 0.5],
                          "contact_weight": [0.0, 0.5, 1.0]},
    "pixel_classes": {"interior_threshold": [0.3, 0.4, 0.5, 0.6, 0.7]},
}


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--augment"]
    package_dir = Path(args[0]) if args else HERE.parents[1] / "src/cytolens/models/bundled/nuclei"
    config = load_config(args[1] if len(args) > 1 else HERE.parent / "nuclei_gpu" / "config.yaml")
    package = load(package_dir)
    schema = package.meta["schema"]
    target = package.meta["scale"]["target_diameter"]
    cached = {False: [], True: []} if "--augment" in sys.argv else {False: []}
    for image_id in load_split(config.data.split_file)["val"]:
        image = as_yxc(read_image(config.data.images / f"{image_id}.tif"))
        truth = read_image(config.data.labels / f"{image_id}.tif").astype(np.int64)
        scale = target / median_diameter(truth)
        prep = tile_preparer(package, image)
        for augment in cached:
            cached[augment].append((predict_outputs(package, image, scale, prep, augment=augment), truth, scale))
    grid = GRIDS[schema]
    results = []
    for augment, items in cached.items():
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            aps = [match(truth, postprocess_outputs(package, outputs, scale, **params).astype(np.int64), 0.5)
                   .average_precision for outputs, truth, scale in items]
            results.append({**params, "augment": augment, "val_ap50": float(np.mean(aps))})
            print(results[-1], flush=True)
    best = max((r for r in results if not r["augment"]), key=lambda r: r["val_ap50"])
    search = {"split": "val", "images": len(cached[False]), "metric": "mean per-image AP@0.5", "grid": results,
              "chosen": best}

    record_search(package_dir, best, grid, search)


def record_search(package_dir: Path, best: dict, grid: dict, search: dict) -> None:
    """Make ``best``'s values of the ``grid`` keys the package's post-processing defaults; keep the search
    in ``training.threshold_search`` (also used by training/nuclei3d-synthetic/tune_postprocess.py)."""
    def record(meta: dict) -> None:
        meta["postprocess"].update({k: v for k, v in best.items() if k in grid})
        meta.setdefault("training", {})["threshold_search"] = search
    update_meta(package_dir, record)
    print("chosen:", best)


if __name__ == "__main__":
    main()
