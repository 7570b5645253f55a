"""3D segmentation: AP on synthetic volumes, GoNuclear and QCANet; time and peak memory of a large volume.

Methods: ``slices`` (a 2D model on each Z plane, objects linked through Z by overlap) and ``native``
(a 3D U-Net on the volume): each model runs with the method its package can run (``volume_method="auto"``:
native for a 3D package, slices for a 2D one). ``--models`` takes bundled names (``nuclei``,
``nuclei_fast``) or package folders (e.g. the two models of ``training/nuclei3d-synthetic``).

``--diameter estimate`` (default): slices estimate the diameter once per volume as a user would run it
(since session 22: the median of the 2D estimates on the 5 planes with the most contrast,
``volume.estimate_volume_diameter``); native is given no diameter either (since session 23: a first pass at the
model's own scale, then a second at its objects' median sphere diameter when that is more than 10 % off).
``--diameter truth``: each method is GIVEN the truth's median object diameter in the representation it
was trained on: slices the median equivalent-circle diameter of the objects' cross-sections over all
planes, native the median equivalent-sphere diameter (XY pixels, Z steps counted as ``anisotropy`` pixels).

Data: synthetic volumes of touching nuclei (``cytolens.data.synthetic3d``, seeds 100-102, no model
saw them), ``../shared/data/gonuclear_3d_nuclei`` (crop 1135, instance truth, anisotropy
0.2837 / 0.1268 = 2.24; most nuclei are cut by the crop faces) and
``../shared/data/qcanet_mouse_embryo_nuclei_3d`` (8- and 16-cell embryos; instances are connected
components of a binary truth; voxel size not stored: with ``--diameter truth`` its anisotropy is also taken
from the truth, the median over objects of (largest cross-section's equivalent diameter / planes spanned),
and with ``estimate`` it is 1.0; anisotropy only matters for the native method).

``--large``: seconds and peak RSS (a child process's ``ru_maxrss``) for a 64 x 1024 x 1024 volume.

Usage: python benchmarks/segmentation_3d.py [--large] [--models nuclei nuclei_fast PACKAGE...]
    [--diameter estimate|truth] [--name segmentation_3d]
Writes benchmarks/results/<name>.{csv,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def volumes():
    """``(name, image, truth, anisotropy)`` for every volume scored."""
    from cytolens.data.synthetic3d import synthetic_nuclei_3d
    from cytolens.io import read_image

    for seed in (100, 101, 102):
        image, truth = synthetic_nuclei_3d((32, 128, 128), n_nuclei=24, anisotropy=2.0, seed=seed)
        yield f"synthetic seed {seed}", image, truth, 2.0
    gonuclear = DATA / "gonuclear_3d_nuclei"
    if gonuclear.is_dir():
        yield ("GoNuclear 1135", read_image(gonuclear / "images" / "1135.tif"),
               read_image(gonuclear / "labels" / "1135.tif"), 0.2837 / 0.1268)
    qcanet = DATA / "qcanet_mouse_embryo_nuclei_3d"
    if qcanet.is_dir():
        for stem in ("8_cell_stage", "16_cell_stage"):
            yield (f"QCANet {stem}", read_image(qcanet / "images" / f"{stem}.tif"),
                   read_image(qcanet / "labels" / f"{stem}.tif"), None)


def truth_anisotropy(truth: np.ndarray) -> float:
    """Z step / XY pixel size read off roughly round objects: the median over objects of their largest
    cross-section's equivalent-circle diameter divided by the number of planes they span."""
    from scipy import ndimage as ndi

    ratios = []
    for index, box in enumerate(ndi.find_objects(truth), start=1):
        if box is None:
            continue
        mask = truth[box] == index
        largest = mask.reshape(mask.shape[0], -1).sum(axis=1).max()
        ratios.append(2 * np.sqrt(largest / np.pi) / mask.any(axis=(1, 2)).sum())
    return float(np.median(ratios))


def truth_diameter(truth: np.ndarray, anisotropy: float, method: str) -> float:
    """The truth's median object diameter (XY pixels) as ``method``'s model was trained to see it."""
    from cytolens.tasks.segmentation.training import median_cross_section_diameter, median_sphere_diameter

    if method == "native":
        return median_sphere_diameter(truth, anisotropy)
    return median_cross_section_diameter(truth)


def score(truth, pred) -> dict:
    from cytolens.metrics.segmentation import match

    truth, pred = truth.astype(np.int64), pred.astype(np.int64)
    return {"ap50": match(truth, pred, 0.5).average_precision, "ap75": match(truth, pred, 0.75).average_precision,
            "true_objects": int(len(np.unique(truth)) - 1), "objects": int(len(np.unique(pred)) - 1)}


def quality_rows(models: list[str], diameters: str = "estimate") -> list[dict]:
    import cytolens
    from cytolens.models import load
    from cytolens.tasks.segmentation.volume import resolve_method

    packages = {model: load(model) for model in models}
    rows = []
    for name, image, truth, anisotropy in volumes():
        if anisotropy is None:  # not stored with the data
            anisotropy = truth_anisotropy(truth) if diameters == "truth" else 1.0
        for model, package in packages.items():
            method = resolve_method(package, "auto")
            diameter = truth_diameter(truth, anisotropy, method) if diameters == "truth" else None
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = cytolens.segment(image, package, axes="ZYX", anisotropy=anisotropy, volume_method=method,
                                        diameter=diameter)
            rows.append({"volume": name, "shape": "x".join(map(str, image.shape)), "model": Path(model).name,
                         "method": method, "anisotropy": anisotropy,
                         "diameter": "estimated" if diameter is None else round(diameter, 1),
                         **score(truth, pred), "seconds": time.perf_counter() - start})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _large_child(model: str) -> None:
    """Segment a 64 x 1024 x 1024 volume (a synthetic 64 x 256 x 256 tiled 4 x 4); print seconds and peak RSS."""
    import cytolens
    from cytolens.data.synthetic3d import synthetic_nuclei_3d

    block, _ = synthetic_nuclei_3d((64, 256, 256), n_nuclei=60, anisotropy=2.0, seed=7)
    volume = np.tile(block, (1, 4, 4))
    del block
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = cytolens.segment(volume, model, axes="ZYX", anisotropy=2.0, diameter=19.0)  # native for a 3D one
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"model": model, "seconds": seconds, "peak_rss_gb": peak_gb, "objects": int(labels.max())}))


def large_rows(models: list[str]) -> list[dict]:
    import torch

    from cytolens.models import load
    from cytolens.tasks.segmentation.volume import resolve_method

    rows = []
    for model in models:
        out = subprocess.run([sys.executable, __file__, "--large-child", model, "--threads",
                              str(torch.get_num_threads())], capture_output=True, text=True,
                             check=True).stdout
        rows.append({"volume": "synthetic 64x1024x1024 (tiled)", "shape": "64x1024x1024",
                     **json.loads(out.strip().splitlines()[-1]), "model": Path(model).name,
                     "method": resolve_method(load(model), "auto")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=["nuclei", "nuclei_fast"])
    parser.add_argument("--large", action="store_true", help="also time a 64 x 1024 x 1024 volume (minutes)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a shared machine)")
    parser.add_argument("--diameter", choices=["estimate", "truth"], default="estimate",
                        help="estimate it per volume, or give each method the truth's (see the module docstring)")
    parser.add_argument("--name", default="segmentation_3d", help="results file stem in benchmarks/results")
    parser.add_argument("--large-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.large_child:
        _large_child(args.large_child)
        return
    rows = quality_rows(args.models, args.diameter) + (large_rows(args.models) if args.large else [])
    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"{args.name}.csv", index=False)
    info = machine()
    lines = ["# 3D segmentation", "", f"Made by `benchmarks/segmentation_3d.py {' '.join(sys.argv[1:])}`.",
             (f"Machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
              f"commit {info['commit']}. "
              + ("Diameter estimated once per volume for slices (median over the 5 most contrasted planes), "
                 "none given to native (a first pass at the model's scale, a second at its objects' median size when "
                 "that is more than 10 % off)." if args.diameter == "estimate" else
                 "Diameter given from the truth: median cross-section diameter for slices, median "
                 "equivalent-sphere diameter for native (XY pixels); QCANet's anisotropy from the truth's shapes.")),
             "",
             "| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
