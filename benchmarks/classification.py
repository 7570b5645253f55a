"""Classification benchmark: the bundled classifiers on their fixed validation splits, against a classical baseline.

For each model (``blood-cells``, ``cell-cycle-label-free`` with class weights, the same
trained without weights, and ``cell-cycle`` when it exists):

* accuracy, balanced accuracy, macro-F1, the per-class table and the confusion matrix
  (CSV + PNG) on the validation split fixed in ``training/<name>/split.json``, predicted
  through :func:`cytolens.classify` from the image files (as a user would);
* seconds per 1,000 cells: reading, preparing and classifying the files, one torch thread;
* the classical baseline of CellProfiler Analyst users: per-cell measurements
  (:func:`cytolens.measure` on an Otsu mask of the cell nearest the centre, per channel)
  plus texture features (GLCM contrast/homogeneity/energy/correlation, a uniform LBP
  histogram, intensity percentiles) into a random forest (500 trees, balanced class
  weights) trained on the same training split, scored on the same validation split, and
  its seconds per 1,000 cells (features + forest).

Data: ``../shared/data/pbc_blood_cells`` and ``../shared/data/cellcycle_jurkat_ifc`` (see their
SOURCE.md). Writes ``benchmarks/results/classification.md``/``.json`` and per-model tables and
confusion matrices under ``benchmarks/results/classification/``.

Run: ``PYTHONPATH=src nice -n 10 python benchmarks/classification.py [--models blood-cells ...]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "benchmarks" / ".cache"
#: the side the baseline measures large images at (the blood-cell images are 360 px)
BASELINE_SIDE = 128
BUNDLED = ROOT / "src" / "cytolens" / "models" / "bundled"

#: name → (package folder, training folder with split.json, image folder, file channels for the baseline)
MODELS = {
    "blood-cells": (BUNDLED / "blood-cells", ROOT / "training" / "blood-cells", DATA / "pbc_blood_cells" / "images",
                    None),
    "cell-cycle-label-free": (BUNDLED / "cell-cycle-label-free", ROOT / "training" / "cell-cycle-label-free",
                              DATA / "cellcycle_jurkat_ifc" / "images", [0, 2]),
    "cell-cycle-label-free-unweighted": (ROOT / "training" / "cell-cycle-label-free" / "unweighted",
                                         ROOT / "training" / "cell-cycle-label-free",
                                         DATA / "cellcycle_jurkat_ifc" / "images", [0, 2]),
    "cell-cycle": (BUNDLED / "cell-cycle", ROOT / "training" / "cell-cycle", DATA / "cellcycle_jurkat_ifc" / "images",
                   None),
}


def files_of(ids: list[str], folder: Path) -> list[Path]:
    """The image file of each split id (``<class>/<stem>``)."""
    out = []
    for i in ids:
        matches = sorted((folder / i).parent.glob(Path(i).name + ".*"))
        if not matches:
            raise FileNotFoundError(f"no image for id {i} in {folder}")
        out.append(matches[0])
    return out


def cell_mask(image: np.ndarray, kind: str) -> np.ndarray:
    """An Otsu mask of the object nearest the image centre (the whole image when nothing is found)."""
    from scipy import ndimage as ndi
    from skimage.filters import gaussian, threshold_otsu

    if kind == "blood":  # the stained leukocyte/platelet is dark in the green channel, red cells are paler
        score = 255.0 - image[..., 1].astype(float)
    else:  # imaging flow cytometry: where the bright field deviates from its (flat) background
        bright = image[..., 0].astype(float)
        score = np.abs(bright - np.median(bright))
    score = gaussian(score, 2.0 if kind != "blood" else 1.5)
    try:
        mask = score > threshold_otsu(score)
    except ValueError:
        return np.ones(image.shape[:2], np.int32)
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n == 0:
        return np.ones(image.shape[:2], np.int32)
    centre = np.array(image.shape[:2]) / 2
    centres = np.array(ndi.center_of_mass(mask, labels, range(1, n + 1)))
    sizes = ndi.sum_labels(mask, labels, range(1, n + 1))
    best = int(np.argmin(np.hypot(*(centres - centre).T) - 0.01 * np.sqrt(sizes))) + 1
    return (labels == best).astype(np.int32)


def texture_features(plane: np.ndarray, mask: np.ndarray) -> list[float]:
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    inside = plane[mask > 0]
    lo, hi = np.percentile(plane, [1, 99])
    quantized = np.clip((plane - lo) / max(hi - lo, 1e-6) * 15, 0, 15).astype(np.uint8)
    glcm = graycomatrix(quantized, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=16, symmetric=True,
                        normed=True)
    props = [float(graycoprops(glcm, p).mean()) for p in ("contrast", "homogeneity", "energy", "correlation")]
    lbp = local_binary_pattern(quantized, 8, 1, "uniform")
    hist = np.bincount(lbp[mask > 0].astype(int), minlength=10)[:10] / max(1, int(mask.sum()))
    return [*np.percentile(inside, [10, 50, 90]), float(inside.std()), *props, *hist.tolist()]


def baseline_features(path: Path, channels: list[int] | None, kind: str) -> np.ndarray:
    import cytolens
    from cytolens.io import read_image

    image = read_image(path)
    if image.ndim == 2:
        image = image[..., None]
    if max(image.shape[:2]) > 2 * BASELINE_SIDE:  # large smear crops: measured at about BASELINE_SIDE px
        from skimage.transform import rescale

        factor = BASELINE_SIDE / max(image.shape[:2])
        image = rescale(image, factor, channel_axis=-1, preserve_range=True, anti_aliasing=True)
    mask = cell_mask(image, kind)
    used = image if channels is None else image[..., channels]
    table = cytolens.measure(mask, used.astype(np.float32))
    row = table.drop(columns=[c for c in table.columns if c.startswith(("label", "bbox", "centroid"))]).iloc[0]
    features = row.to_numpy(float).tolist()
    for c in range(used.shape[-1]):
        plane = used[..., c].astype(float)
        features += texture_features(plane, mask) + [float(plane.mean()), float(plane.std())]
    return np.nan_to_num(np.asarray(features, float))


def random_forest(train_files, train_classes, val_files, channels, kind, seed=0) -> tuple[np.ndarray, float]:
    """Predictions of the baseline on ``val_files`` and its seconds per 1,000 cells (features + forest)."""
    from sklearn.ensemble import RandomForestClassifier

    cache = CACHE / f"classification_{kind}_{'-'.join(map(str, channels or []))}_train.npz"
    names = np.array([str(f) for f in train_files])
    if cache.is_file() and np.array_equal(np.load(cache)["names"], names):
        x_train = np.load(cache)["features"]
    else:
        x_train = np.stack([baseline_features(f, channels, kind) for f in train_files])
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, names=names, features=x_train)
    forest = RandomForestClassifier(n_estimators=500, class_weight="balanced", random_state=seed, n_jobs=1)
    forest.fit(x_train, train_classes)
    start = time.perf_counter()
    x_val = np.stack([baseline_features(f, channels, kind) for f in val_files])
    predicted = forest.predict(x_val)
    seconds = time.perf_counter() - start
    return predicted, 1000 * seconds / len(val_files)


def run_model(name: str, out: Path, baseline: bool) -> dict | None:
    import torch

    import cytolens
    from cytolens.models import load
    from cytolens.tasks.classification.evaluation import score, write_evaluation

    package_dir, training, images, channels = MODELS[name]
    if not (package_dir / "model.json").is_file():
        print(f"{name}: no package at {package_dir}; skipped", flush=True)
        return None
    torch.set_num_threads(1)
    split = json.loads((training / "split.json").read_text())
    package = load(package_dir)
    classes = package.meta["classes"]
    val_files = files_of(split["val"], images)
    truth = [Path(i).parent.as_posix() for i in split["val"]]
    cytolens.classify([str(val_files[0])], model=package)  # warm-up
    start = time.perf_counter()
    table = pd.concat([cytolens.classify([str(f) for f in val_files[k:k + 128]], model=package)
                       for k in range(0, len(val_files), 128)], ignore_index=True)
    per_1000 = 1000 * (time.perf_counter() - start) / len(val_files)
    scores = score(truth, table["predicted"].tolist(), classes)
    summary = write_evaluation(scores, out, f"{name}_", f"{name} (validation split)")
    table.insert(1, "truth", truth)
    table.to_csv(out / f"{name}_predictions.csv", index=False, float_format="%.4f")
    result = {"model": name, "n_val": len(val_files), "n_train": len(split["train"]), **summary,
              "seconds_per_1000_cells": per_1000, "per_class": scores.per_class.to_dict("records"),
              "training": {k: package.meta["training"].get(k) for k in ("epochs_run", "best_epoch")}}
    print(f"{name}: accuracy {scores.accuracy:.4f}, balanced {scores.balanced_accuracy:.4f}, "
          f"macro-F1 {scores.macro_f1:.4f}, {per_1000:.2f} s / 1000 cells", flush=True)
    if baseline:
        kind = "blood" if "blood" in name else "cellcycle"
        train_files = files_of(split["train"], images)
        train_classes = [Path(i).parent.as_posix() for i in split["train"]]
        predicted, rf_per_1000 = random_forest(train_files, train_classes, val_files, channels, kind)
        rf = score(truth, list(predicted), classes)
        rf_summary = write_evaluation(rf, out, f"{name}_random_forest_", f"{name}: random forest baseline")
        result["random_forest"] = {**rf_summary, "seconds_per_1000_cells": rf_per_1000,
                                   "per_class": rf.per_class.to_dict("records")}
        print(f"{name} random forest: accuracy {rf.accuracy:.4f}, balanced {rf.balanced_accuracy:.4f}, "
              f"macro-F1 {rf.macro_f1:.4f}, {rf_per_1000:.2f} s / 1000 cells", flush=True)
    return result


def report(results: list[dict], info: dict) -> str:
    lines = ["# Classification benchmark", "",
             (f"Machine: {info['cpu']} ({info['cores']} cores, shared with other jobs while this ran), torch "
              f"{info['torch']}, 1 torch thread; commit {info['commit']}. Script: `benchmarks/classification.py`."),
             ("Validation splits fixed in `training/<name>/split.json` (stratified by class; the data carry no donor "
              "or experiment ids that would allow a split by source, see the training READMEs)."), "",
             ("| model | val items | accuracy | balanced accuracy | macro-F1 | s / 1000 cells | random forest accuracy "
              "| RF balanced acc. | RF macro-F1 | RF s / 1000 cells |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rf = r.get("random_forest", {})
        cells = [f"{rf[k]:.4f}" if k in rf else "-" for k in ("accuracy", "balanced_accuracy", "macro_f1")]
        rf_speed = f"{rf['seconds_per_1000_cells']:.1f}" if rf else "-"
        lines.append(f"| {r['model']} | {r['n_val']} | {r['accuracy']:.4f} | {r['balanced_accuracy']:.4f} | "
                     f"{r['macro_f1']:.4f} | {r['seconds_per_1000_cells']:.2f} | {' | '.join(cells)} | {rf_speed} |")
    for r in results:
        lines += ["", f"## {r['model']}: per class (CNN)", "", "| class | support | precision | recall | F1 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['label']} | {c['support']} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} |"
                  for c in r["per_class"]]
        lines.append(f"\nConfusion matrix: `classification/{r['model']}_confusion.csv` / `.png`.")
    return "\n".join(lines) + "\n"


def main() -> None:
    from _machine import machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--cache-baseline", action="store_true", help="only compute the training features")
    args = parser.parse_args()
    if args.cache_baseline:
        for name in ("blood-cells", "cell-cycle-label-free"):
            _, training, images, channels = MODELS[name]
            split = json.loads((training / "split.json").read_text())
            files = files_of(split["train"], images)
            classes = [Path(i).parent.as_posix() for i in split["train"]]
            kind = "blood" if "blood" in name else "cellcycle"
            random_forest(files, classes, files[:2], channels, kind)
            print(f"cached the baseline features of {name}", flush=True)
        return
    out = RESULTS / "classification"
    out.mkdir(parents=True, exist_ok=True)
    results = [r for name in args.models
               if (r := run_model(name, out, baseline=not args.no_baseline and "unweighted" not in name))]
    info = machine()
    previous = RESULTS / "classification.json"
    if previous.is_file():  # keep the models not rerun this time (e.g. --models cell-cycle later)
        rerun = {r["model"] for r in results}
        kept = [r for r in json.loads(previous.read_text())["results"] if r["model"] not in rerun]
        results = sorted(kept + results, key=lambda r: list(MODELS).index(r["model"]))
    (RESULTS / "classification.json").write_text(json.dumps({"machine": info, "results": results}, indent=1) + "\n")
    (RESULTS / "classification.md").write_text(report(results, info))
    print(f"wrote {RESULTS / 'classification.md'}")


if __name__ == "__main__":
    main()
