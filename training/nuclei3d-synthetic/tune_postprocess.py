"""Choose the post-processing thresholds of a nuclei3d-synthetic model on its VAL volumes (seeds 30-34), never
on the benchmark's (100-102).

Usage: python tune_postprocess.py PACKAGE [DATA]   (DATA default ../../trained/nuclei3d-data)

A 3D package is scored natively, a 2D one by slices (each plane post-processed, then
``stitch_planes`` + ``split_at_necks`` as ``volume_method="slices"`` does). The network runs once per
volume (or plane), at the truth's median diameter as the benchmark's ``--diameter truth`` gives it;
every grid point re-runs only the post-processing. The best mean AP@0.5 becomes the package's
post-processing defaults in model.json, with the grid's scores recorded next to them
(``training.threshold_search``), as ``training/nuclei/tune_thresholds.py`` does for 2D models.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from cytolens.io import read_image
from cytolens.metrics import match
from cytolens.models import load
from cytolens.tasks.segmentation.inference import as_yxc, postprocess_outputs, predict_outputs, tile_preparer
from cytolens.tasks.segmentation.training import median_cross_section_diameter, median_sphere_diameter
from cytolens.tasks.segmentation.volume import (
    model_dims,
    native_outputs,
    native_postprocess,
    split_at_necks,
    stitch_planes,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nuclei"))
from tune_thresholds import record_search  # noqa: E402

ANISOTROPY = 2.0  # of the synthetic volumes (make_data.VOLUME)
GRID = {"marker_threshold": [0.4, 0.5, 0.6, 0.7, 0.8], "marker_dynamic": [0.0, 0.2], "smoothing": [0.0, 1.0]}
#: min_size in the model's pixels (2D) or voxels (3D): a fragment of about a fifth of a nucleus' diameter or volume
MIN_SIZES = {2: [8, 30], 3: [8, 200]}


def cached_outputs(package, volume: np.ndarray, truth: np.ndarray):
    """``postprocess(**params)`` → labels of one volume, with the network's outputs computed once."""
    if model_dims(package) == 3:
        outputs, zoom = native_outputs(package, volume[..., None], ANISOTROPY,
                                       median_sphere_diameter(truth, ANISOTROPY))
        return lambda **params: native_postprocess(package, outputs, zoom, **params)
    scale = package.meta["scale"]["target_diameter"] / median_cross_section_diameter(truth)
    planes = []
    for plane in volume:
        image = as_yxc(plane)
        planes.append(predict_outputs(package, image, scale, tile_preparer(package, image)))

    def postprocess(**params):
        labels = np.stack([postprocess_outputs(package, outputs, scale, **params) for outputs in planes])
        return split_at_necks(stitch_planes(labels))
    return postprocess


def main() -> None:
    package_dir = Path(sys.argv[1])
    data = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[2] / "trained/nuclei3d-data"
    package = load(package_dir)
    val = data / "volumes" / "val"
    items = []
    for path in sorted((val / "images").glob("*.tif")):
        truth = read_image(val / "labels" / path.name).astype(np.int64)
        items.append((cached_outputs(package, read_image(path), truth), truth))
    grid = {**GRID, "min_size": MIN_SIZES[model_dims(package)]}
    results = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        aps = [match(truth, postprocess(**params).astype(np.int64), 0.5).average_precision
               for postprocess, truth in items]
        results.append({**params, "val_ap50": float(np.mean(aps))})
        print(results[-1], flush=True)
    best = max(results, key=lambda r: r["val_ap50"])
    search = {"split": "val (synthetic seeds 30-34)", "volumes": len(items), "metric": "mean per-volume AP@0.5",
              "diameter": "the truth's median (as benchmarks/segmentation_3d.py --diameter truth)",
              "grid": results, "chosen": best}
    record_search(package_dir, best, grid, search)


if __name__ == "__main__":
    main()
