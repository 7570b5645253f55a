"""StarDist (trained from scratch) next to cytolens on DSB2018: same data, same budget, same metrics.

StarDist 2D is trained from scratch on exactly the `train` ids of training/nuclei/split.json
(community-fixed labels), its thresholds are tuned with ``optimize_thresholds`` on the `val`
ids, and it is scored on the `test` ids (and on `val`) with the metric code of
benchmarks/segmentation_dsb.py (AP@0.5, AP@0.75, Kaggle score; per-image means), next to
cytolens models run on the same images in the same run: ``nuclei_fast`` v1 (the CPU-trained,
same-budget model, pinned to the commit that bundles it), the same v1 with an object filter
fitted here on the train split (``+filter``: ~4 min of 2 cores on top of its training; StarDist's
own second step, ``optimize_thresholds``, uses the val images), and the bundled ``nuclei_fast``
and ``nuclei`` at HEAD (for reference; they were trained further on a GPU).

Same input for both tools: every image is prepared as cytolens prepares it for training
(``model_input``: alpha dropped, grayscale repeated to RGB, percentile 1–99.8 normalization;
then rescaled so the TRUE median nucleus diameter is ``target_diameter`` = 20 px). StarDist
predicts at that scale; its polygons are rendered at the original size (``stardist``) and, as
a second figure, its label image is resized back by nearest neighbour (``stardist_nearest``).
The cytolens models get the true diameter (``segment(image, diameter=...)``); each is taken
as committed (``git archive`` of its package folder), since the working tree may be mid-edit.

Same budget: ``nuclei_fast`` v1 saw 70 epochs x 40 steps x 8 crops of 256² = 22,400 crops on
2 CPU cores (read from its package); StarDist gets ``--steps`` batches of 4 patches of 256²
(default 5,600 = the same 22,400 patches).

StarDist runs in its own virtual environment (``--venv``, created with pip when missing:
tensorflow-cpu, stardist, csbdeep), in a subprocess (benchmarks/_peer_stardist_worker.py).
Its prepared data, model folder (weights_best.h5 / weights_now.h5, progress.json) and
predictions live under ``--work`` (~/.cache, never in the repository). A cut-off training
resumes when the same command is run again; ``--score-only`` scores the weights there as they are.

Usage:
  python benchmarks/peers_dsb.py --quick            # smoke run: few images, 6 steps
  python benchmarks/peers_dsb.py [--steps 5600]     # full run (~1 h of 2 CPU cores)
  python benchmarks/peers_dsb.py --score-only       # score a cut-off or finished training
Writes benchmarks/results/peers_dsb.{json,md,log} and peers_dsb_per_image.csv
(``--quick``: peers_dsb_quick.*).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine
from segmentation_dsb import DATA, MODALITY_NAMES, RESULTS, ROOT, SPLIT, score_image, summarize

import cytolens
from cytolens.io import read_image
from cytolens.models import load
from cytolens.preprocess import rescale, resize_to
from cytolens.tasks.segmentation.object_filter_fit import fit_object_filter
from cytolens.tasks.segmentation.training import median_diameter, model_input

CACHE = Path.home() / ".cache" / "cytolens-peers"
STARDIST_REQUIREMENTS = ["tensorflow-cpu==2.21.0", "stardist==0.9.2", "csbdeep==0.8.2"]
WORKER = Path(__file__).parent / "_peer_stardist_worker.py"
#: the model whose budget StarDist gets: nuclei_fast v1, trained from scratch on 2 CPU cores
#: (training/nuclei/config.yaml); the last commit that bundles it (v2 is v1 trained further on a GPU)
REFERENCE_MODEL = "nuclei_fast@5e6d759"
#: a model spec ending in this gets an object filter fitted on the train split first
FILTER_SUFFIX = "+filter"
#: cytolens models scored next to StarDist: ``name`` (as committed at HEAD) or ``name@commit``, each
#: optionally ``+filter``
DEFAULT_MODELS = [REFERENCE_MODEL, REFERENCE_MODEL + FILTER_SUFFIX, "nuclei_fast", "nuclei"]
PATCH_SIZE = 256
STARDIST_BATCH = 4  # StarDist's default
SPLITS = ("test", "val")


class Log:
    """Print a line and keep it in the benchmark's log file (appended to, so a resumed or
    re-scored run keeps the record of the training before it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("a") as handle:
            handle.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")


def describe_package(package) -> dict:
    """Version, schema and training of a bundled model, from its own model.json and train_config.yaml.

    ``crops`` counts this model's own training run; a model with a ``parent`` was trained
    further from that parent's weights, so it saw the parent's crops as well.
    """
    training = package.meta["training"]
    optimization = yaml.safe_load((Path(package.path) / "train_config.yaml").read_text())["optimization"]
    parent = training.get("parent")
    return {"version": str(package.meta.get("version")), "schema": package.meta["schema"],
            "base_channels": package.meta["architecture"]["args"].get("base_channels"),
            "epochs": training["epochs_run"], "steps_per_epoch": optimization["steps_per_epoch"],
            "batch_size": optimization["batch_size"], "crop_size": optimization["crop_size"],
            "crops": training["epochs_run"] * optimization["steps_per_epoch"] * optimization["batch_size"],
            "parent": None if not parent else f"{parent.get('name')} v{parent.get('version')}",
            "object_filter": "object_filter" in package.extras}


def model_label(name: str, commit: str, package) -> str:
    """How a cytolens model is named in the tables: name, version and the commit it was taken from."""
    return f"{name} v{package.meta.get('version')} ({commit})"


def parse_model(spec: str, head: str) -> tuple[str, str, bool]:
    """``name[@commit][+filter]`` → (name, commit, fit a filter); no commit means HEAD."""
    with_filter = spec.endswith(FILTER_SUFFIX)
    name, _, commit = spec.removesuffix(FILTER_SUFFIX).partition("@")
    return name, commit or head, with_filter


def with_object_filter(package, log: Log):
    """A copy of ``package`` with an object filter fitted on the train split (``cytolens fit-object-filter``).

    The copy lives next to the committed package in the cache; the fit (~4 min for a width-16
    network on 2 cores) runs once and uses only the train images, like the network's training.
    """
    folder = Path(package.path).with_name(Path(package.path).name + "-object-filter")
    if not (folder / "object_filter.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(package.path, folder)
        log(f"fitting an object filter for {folder.name} on the train split")
        fit_object_filter(folder, ROOT / "training" / "nuclei" / "config.yaml")
    return load(folder)


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def committed_package(name: str, commit: str, log: Log):
    """A bundled model exactly as committed at ``commit`` (the working tree may be mid-edit).

    The package folder is extracted with ``git archive`` into the cache; the checkout is not touched.
    """
    folder = CACHE / "packages" / commit
    package_path = f"src/cytolens/models/bundled/{name}"
    if not (folder / package_path / "weights.safetensors").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "--format=tar", commit, package_path], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        log(f"model {name} taken from commit {commit} (git archive into {folder})")
    return load(folder / package_path)


def ensure_venv(venv: Path, requirements: list[str], tool: str, log) -> Path:
    """A peer tool's own virtual environment (created and filled with pip when missing); its python.

    A marker file records the requirements installed, so changing them reinstalls.
    """
    python, marker = venv / "bin" / "python", venv / "cytolens-peers.json"
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == requirements:
        return python
    log(f"creating {tool}'s virtual environment in {venv} (pip install {' '.join(requirements)})")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=False)
    if installed.returncode != 0:
        sys.exit(f"could not install {tool} into {venv} (pip exit {installed.returncode}); see the pip output above")
    marker.write_text(json.dumps(requirements) + "\n")
    return python


def to_model_scale(image: np.ndarray, labels: np.ndarray, target_diameter: float,
                   normalization: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Image ``(Y, X, 3)`` float32 and labels at the scale where the true median diameter is
    ``target_diameter``: the preparation of cytolens' ``prepare_sample`` without its targets."""
    diameter = median_diameter(labels)
    scale = target_diameter / diameter if diameter > 0 else 1.0
    channels = model_input(image, normalization)
    scaled = np.stack([rescale(channel, scale, order=1) for channel in channels], axis=-1)
    return scaled.astype(np.float32), rescale(np.asarray(labels, dtype=np.int32), scale, order=0)


def pad_to_patch(image: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mirror-pad an image smaller than a training patch (cytolens pads its crops the same way).

    StarDist samples patches only from images at least one patch large. Mirrored copies of
    an object get their own ids, so an object and its mirror image are two objects.
    """
    height, width = labels.shape
    pad_y, pad_x = max(0, size - height), max(0, size - width)
    if not (pad_y or pad_x):
        return image, labels
    image = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="symmetric")
    mirrored = np.pad(labels, ((0, pad_y), (0, pad_x)), mode="symmetric")
    copy_y, copy_x = np.arange(height + pad_y) // height, np.arange(width + pad_x) // width
    copy = copy_y[:, None] * (copy_x.max() + 1) + copy_x[None, :]
    return image, np.where(mirrored > 0, mirrored + copy * int(labels.max()), 0).astype(np.int32)


def prepare_stardist_data(folder: Path, ids: dict[str, list[str]], target_diameter: float,
                          normalization: tuple[float, float], log: Log) -> None:
    """Write the worker's inputs (see _peer_stardist_worker.py) unless the same ones are there."""
    key = {"ids": ids, "target_diameter": target_diameter, "normalization": list(normalization),
           "patch_size": PATCH_SIZE, "labels": "labels_lopuhin_fixed", "format": 2}
    ready = folder / "ready.json"
    if ready.exists() and json.loads(ready.read_text()) == key:
        log(f"prepared data found in {folder}")
        return
    folder.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    start = time.perf_counter()
    for split in ("train", "val", *SPLITS):
        arrays, padded, to_predict = {}, {}, {}
        for i, image_id in enumerate(ids[split]):
            image = read_image(DATA / "images" / f"{image_id}.tif")
            truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
            scaled, labels = to_model_scale(image, truth, target_diameter, normalization)
            arrays[f"image_{i}"], arrays[f"labels_{i}"] = scaled, labels
            padded[f"image_{i}"], padded[f"labels_{i}"] = pad_to_patch(scaled, labels, PATCH_SIZE)
            to_predict[f"image_{i}"], to_predict[f"shape_{i}"] = scaled, np.array(truth.shape[:2])
        if split == "train":
            np.savez(folder / "train.npz", **padded)
        elif split == "val":
            np.savez(folder / "val.npz", **arrays)
            np.savez(folder / "val_padded.npz", **padded)
        if split in SPLITS:  # the images to predict and their original sizes: no labels go to the worker
            np.savez(folder / f"predict_{split}.npz", **to_predict)
    ready.write_text(json.dumps(key) + "\n")
    log(f"prepared {sum(len(v) for v in ids.values())} images for StarDist in {time.perf_counter() - start:.0f} s")


def run_stardist(python: Path, data: Path, basedir: Path, name: str, out: Path, steps: int,
                 steps_per_epoch: int, score_only: bool, log: Log) -> int:
    """Run the worker; its ``[stardist]`` lines go to the log, all its output to stdout."""
    command = [str(python), str(WORKER), "--data", str(data), "--basedir", str(basedir), "--name", name,
               "--steps", str(steps), "--steps-per-epoch", str(steps_per_epoch), "--out", str(out),
               "--predict", *SPLITS] + (["--no-train"] if score_only else [])
    log("running " + " ".join(command))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as worker:
        for line in worker.stdout:
            if "[stardist]" in line:
                log(line[line.index("[stardist]"):].rstrip())
            elif line.strip():
                print(line, end="", flush=True)
    return worker.returncode


def score_cytolens(packages: dict, ids: dict[str, list[str]], log: Log) -> tuple[list[dict], dict]:
    """Per-image scores of cytolens models ({label: package}) given the true median diameter; seconds per split."""
    rows, seconds = [], {}
    for label, package in packages.items():
        for split in SPLITS:
            start = time.perf_counter()
            for image_id in ids[split]:
                image = read_image(DATA / "images" / f"{image_id}.tif")
                truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
                labels = cytolens.segment(image, package, diameter=median_diameter(truth))
                rows.append({"model": label, "split": split, "id": image_id, **score_image(truth, labels)})
            seconds[f"{label}/{split}"] = time.perf_counter() - start
            log(f"scored {label} on {len(ids[split])} {split} images in {seconds[f'{label}/{split}']:.0f} s")
    return rows, seconds


def score_stardist(predictions: Path, ids: dict[str, list[str]]) -> list[dict]:
    """Per-image scores of StarDist at the original image size, two ways: its polygons rendered at that
    size (``stardist``, as its ``predict_instances(scale=...)`` does) and its label image resized back
    by nearest neighbour (``stardist_nearest``)."""
    rows = []
    for split in SPLITS:
        with np.load(predictions / f"pred_{split}.npz") as archive:
            for i, image_id in enumerate(ids[split]):
                truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
                nearest = resize_to(archive[f"labels_{i}"], truth.shape[:2], order=0)
                rows.append({"model": "stardist", "split": split, "id": image_id,
                             **score_image(truth, archive[f"original_{i}"])})
                rows.append({"model": "stardist_nearest", "split": split, "id": image_id,
                             **score_image(truth, nearest)})
    return rows


def score_round_trip(ids: dict[str, list[str]], target_diameter: float) -> list[dict]:
    """The ceiling of ``stardist_nearest``: the true labels taken to the model scale and back (nearest)."""
    rows = []
    for split in SPLITS:
        for image_id in ids[split]:
            truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
            diameter = median_diameter(truth)
            scaled = rescale(truth.astype(np.int32), target_diameter / diameter if diameter > 0 else 1.0, order=0)
            rows.append({"model": "truth_round_trip", "split": split, "id": image_id,
                         **score_image(truth, resize_to(scaled, truth.shape[:2], order=0))})
    return rows


def summaries(table: pd.DataFrame) -> dict:
    """{split: {model: {"overall": ..., "per_modality": {...}}}} with segmentation_dsb's summarize."""
    result = {}
    for split, by_split in table.groupby("split", sort=False):
        result[split] = {model: {"overall": summarize(group),
                                 "per_modality": {m: summarize(g) for m, g in group.groupby("modality")}}
                         for model, group in by_split.groupby("model", sort=False)}
    return result


def best_epoch(stardist: dict) -> int:
    """The epoch with the lowest validation loss (whose weights StarDist keeps)."""
    return min(stardist["history"], key=lambda h: h.get("val_loss", float("inf")))["epoch"]


def markdown(report: dict) -> str:
    """The results page: setup, fairness notes, the table, StarDist's training record."""
    m, sd, budget = report["machine"], report.get("stardist") or {}, report["budget"]
    lines = [f"# StarDist (trained from scratch) vs cytolens on DSB2018 — {report['data']}", "",
             (f"Machine: {m['cpu']}, {m['cores']} cores, no GPU, **shared with other work while this ran** "
             f"(wall times are indicative; the fixed quantity is the training budget in patches). "
             f"Code at commit {m['commit']}; each cytolens model is named with the commit it was taken from. "
             "Script: `benchmarks/peers_dsb.py`."), ""]
    if report["quick"]:
        lines += ["**Smoke run (`--quick`): a handful of images and steps; the numbers mean nothing.**", ""]
    planned, done = sd.get("steps_planned"), sd.get("steps_done")
    our = budget["reference"]["crops"]
    lines += ["## Setup", "",
              (f"- Data: DSB2018 stage1_train, community-fixed labels; split `training/nuclei/split.json`. "
              f"StarDist trains on the {report['images']['train']} `train` images only; `val` "
              f"({report['images']['val']}) serves its per-epoch validation loss (best-weights checkpoint) and "
              "`optimize_thresholds`; `test` is never seen before scoring."),
              ("- Metrics: the code of `benchmarks/segmentation_dsb.py` (`cytolens.metrics`): AP = TP/(TP+FP+FN) "
              "at IoU >= 0.5 / 0.75, Kaggle score = mean AP over IoU > 0.50:0.05:0.95, each averaged per "
              "image; \"pooled\" sums TP/FP/FN over images (IoU 0.5)."),
              ("- Same input preparation for both tools (cytolens' `model_input` + `prepare_sample`): alpha dropped, "
               "grayscale repeated to 3 channels (StarDist `n_channel_in=3`), percentile 1–99.8 normalization "
               "over all channels, image rescaled (bilinear) so the **true** median nucleus diameter is "
               f"{report['target_diameter']:g} px — in training and at test time. The cytolens models get the same "
               "true diameter (`cytolens.segment(image, model, diameter=true median diameter)`; they rescale "
               "internally, skip corrections under 10 %, and resize their output maps back so objects are "
               "found at full resolution). These are \"true diameter given\" figures; with estimated diameters "
               "see `segmentation_dsb.md`."),
              ("- StarDist's result is brought back to the original size two ways: **`stardist`** renders its "
               "polygons at the original size (vertices mapped back through the rescaling, as StarDist's own "
               "`predict_instances(img, scale=...)` does); **`stardist_nearest`** resizes its label image back by "
               "nearest neighbour, which coarsens the outlines of images that were shrunk to reach 20 px. "
               "`truth_round_trip` is the ground truth sent through that same nearest-neighbour round trip: "
               "the ceiling of `stardist_nearest`. `stardist` is the figure to quote."),
              ("- `test` is the held-out figure. `val` is not held out for either tool: StarDist chose its "
               "checkpoint (validation loss) and thresholds on it, cytolens its best epoch (val AP@0.5) and "
               "post-processing thresholds."),
              f"- Budget: `{budget['reference_label']}` was trained from scratch on 2 CPU cores with "
              f"{budget['reference']['epochs']} epochs "
              f"x {budget['reference']['steps_per_epoch']} steps x {budget['reference']['batch_size']} crops of "
              f"{budget['reference']['crop_size']}² = {our:,} crops. StarDist was given {planned or 0:,} steps x "
              f"{STARDIST_BATCH} patches of {PATCH_SIZE}² = {(planned or 0) * STARDIST_BATCH:,} patches"
              + (" (**the same budget**)." if (planned or 0) * STARDIST_BATCH == our else
                 f" (**a {'smaller' if (planned or 0) * STARDIST_BATCH < our else 'larger'} budget than ours**).")
              + (f" **Training was cut off after {done:,} of {planned:,} steps; the scores are of that partial "
                 "model.**" if sd and not sd.get("finished") else ""),
              *[f"- `{label}` ({m['schema']}, base {m['base_channels']}): " + (
                  "**the same-budget entry** (trained from scratch, the CPU recipe)." if label == budget["reference_label"]
                  else f"trained further from {m['parent']} with {m['epochs']} x {m['steps_per_epoch']} x "
                  f"{m['batch_size']} = {m['crops']:,} more crops on a GPU: **not a same-budget entry**, listed "
                  "for reference (the bundled model at that commit)." if m["parent"]
                  else f"trained from scratch with {m['crops']:,} crops.")
                + (" Its objects pass an object filter fitted on the train split (`object_filter.json`)."
                   if m.get("object_filter") else "")
                for label, m in report["cytolens_models"].items()],
              ("- StarDist otherwise at its defaults (StarDist 2D: U-Net depth 3, n_rays 32, grid (2,2), "
              "learning rate 3e-4 with its reduce-on-plateau, weights with the best validation loss, "
              "uniform sampling over images, 90 % of patches containing objects) and the augmentation of its 2D "
              "training example (random 90° rotations and flips, intensity scale 0.6–2 and shift ±0.2, a little "
              "noise). cytolens' recipe adds random zoom 0.7–1.4, gamma, blur and modality weights — each "
              "tool is trained with its own usual recipe; neither was tuned for this comparison."),
              ("- Training images smaller than one 256² patch (after rescaling) are mirror-padded for StarDist "
              "(mirrored objects get their own ids); cytolens pads its crops by mirroring as well."), ""]
    headline = report["results"].get("test", {})
    lines += ["## Headline: test split, all images", "",
              "| model | images | AP@0.5 | AP@0.75 | Kaggle score |", "| --- | --- | --- | --- | --- |"]
    for model, result in headline.items():
        s = result["overall"]
        lines.append(f"| {model} | {s['images']} | {s['ap50']:.3f} | {s['ap75']:.3f} | {s['kaggle']:.3f} |")
    lines += ["", "## All results", "",
              "| model | split | subset | images | AP@0.5 | AP@0.75 | Kaggle score | AP@0.5 pooled |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split, models in report["results"].items():
        for model, result in models.items():
            for subset, s in [("all", result["overall"]), *result["per_modality"].items()]:
                lines.append(f"| {model} | {split} | {subset} | {s['images']} | {s['ap50']:.3f} | {s['ap75']:.3f} "
                             f"| {s['kaggle']:.3f} | {s['ap50_pooled']:.3f} |")
    lines.append("")
    if sd:
        lines += ["## StarDist training", "",
                  (f"- Versions: StarDist {sd['versions']['stardist']}, csbdeep {sd['versions']['csbdeep']}, "
                  f"TensorFlow (CPU) {sd['versions']['tensorflow']}, in its own venv."),
                  f"- Steps: {done:,} of {planned:,} ({sd['epochs_done']} of {sd['total_epochs']} epochs x "
                  f"{sd['steps_per_epoch']} steps, batch {STARDIST_BATCH}, patch {PATCH_SIZE}²)"
                  + ("" if sd["finished"] else " — **cut off**") + ".",
                  (f"- Training wall time: {sd['train_seconds'] / 60:.1f} min on the shared 2 cores "
                  f"({sd['steps_per_second']:.3f} steps/s, {1 / sd['steps_per_second']:.2f} s/step; "
                  f"nice 19). For scale: `{budget['reference_label']}` took 72 min for its budget on these 2 cores "
                  "(sum of its epoch times in training/nuclei/train.log, training and validation)."),
                  f"- Best validation loss {sd['best_val_loss']:.4f} at epoch {best_epoch(sd)} of {sd['epochs_done']}"
                  + (" (the last one: its validation loss was still improving, so StarDist would likely gain "
                     "from a larger budget)" if best_epoch(sd) == sd["epochs_done"] else "")
                  + ("; thresholds from `optimize_thresholds` on val: "
                  f"prob {sd['thresholds']['prob']:.3f}, nms {sd['thresholds']['nms']:.2f} "
                  + ("(tuned by an earlier run)." if sd["tune_seconds"] is None else f"({sd['tune_seconds']:.0f} s).")),
                  "- Prediction time (at model scale, whole split): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in sd["predict_seconds"].items())
                  + "; cytolens (true diameter, whole split): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in report["cytolens_seconds"].items())
                  + ". Measured while other work shared the 2 cores: not a speed comparison "
                  "(see `segmentation_speed.md` for ours).", ""]
    elif report.get("stardist_error"):
        lines += ["## StarDist", "", f"**StarDist did not produce results: {report['stardist_error']}**", ""]
    lines += ["Per-image scores: `peers_dsb" + ("_quick" if report["quick"] else "") + "_per_image.csv`. "
              "Rerun: `nohup nice -n 19 .venv/bin/python benchmarks/peers_dsb.py > logs/peers_dsb.out 2>&1 &` "
              "(resumes a cut-off training; `--score-only` scores it as it is)."]
    return "\n".join(lines) + "\n"


def first_of_each_modality(ids: list[str], modality: pd.Series, count: int) -> list[str]:
    """The first ``count`` ids of each modality (a small but varied subset for ``--quick``)."""
    return [image_id for name in MODALITY_NAMES.values()
            for image_id in [i for i in ids if modality[i] == name][:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"StarDist training steps of {STARDIST_BATCH} patches of {PATCH_SIZE}² "
                             f"(default: the crops {REFERENCE_MODEL} was trained with / {STARDIST_BATCH} = 5600)")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="StarDist's default: 100")
    parser.add_argument("--quick", action="store_true", help="smoke run: a few images and 6 steps")
    parser.add_argument("--score-only", action="store_true", help="do not train; score the weights there are")
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS,
                        help="cytolens models to score: name (at HEAD) or name@commit")
    parser.add_argument("--venv", type=Path, default=CACHE / "venvs" / "stardist", help="StarDist's own venv")
    parser.add_argument("--work", type=Path, default=CACHE / "stardist-dsb",
                        help="prepared data, StarDist model folders and predictions")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"DSB2018 data not found at {DATA} (expected ../shared/data/dsb2018_stage1_train next to the repo)")
    stem = "peers_dsb" + ("_quick" if args.quick else "")
    log = Log(RESULTS / f"{stem}.log")
    split = json.loads(SPLIT.read_text())
    ids = {side: split[side] for side in ("train", "val", "test")}
    modality = pd.read_csv(DATA / "index.csv").set_index("id")["modality"].map(MODALITY_NAMES)
    if args.quick:
        ids = {side: first_of_each_modality(ids[side], modality, count)
               for side, count in (("train", 5), ("val", 2), ("test", 2))}
    head = head_commit()
    packages, described = {}, {}
    for spec in dict.fromkeys([REFERENCE_MODEL, *args.models]):
        name, commit, fit_filter = parse_model(spec, head)
        package = committed_package(name, commit, log)
        label = model_label(name, commit, package)
        if fit_filter:
            package = with_object_filter(package, log)
            label += " + object filter fitted on train"
        packages[label], described[label] = package, describe_package(package)
    reference_label = next(iter(packages))
    reference = described[reference_label]
    if reference["parent"] is not None:
        sys.exit(f"{REFERENCE_MODEL} is not a model trained from scratch: fix REFERENCE_MODEL")
    if args.steps is None:
        args.steps = reference["crops"] // STARDIST_BATCH
    if args.quick:
        args.steps, args.steps_per_epoch = 6, 3
    reference_package = packages[reference_label]
    if REFERENCE_MODEL not in args.models:  # its settings and budget are still the reference
        del packages[reference_label]
    target_diameter = float(reference_package.meta["scale"]["target_diameter"])
    normalization = (float(reference_package.meta["normalization"]["low"]),
                     float(reference_package.meta["normalization"]["high"]))
    report = {"data": f"DSB2018 stage1_train, test and val splits of {SPLIT.relative_to(ROOT)}",
              "quick": args.quick, "machine": machine(), "head": head,
              "images": {k: len(v) for k, v in ids.items()},
              "target_diameter": target_diameter, "normalization": list(normalization),
              "cytolens_models": {label: described[label] for label in packages},
              "budget": {"reference_label": reference_label, "reference": reference,
                         "stardist": {"steps": args.steps, "batch_size": STARDIST_BATCH, "patch_size": PATCH_SIZE,
                                      "patches": args.steps * STARDIST_BATCH}}}
    log(f"{stem}: {report['images']}; StarDist budget {args.steps} steps x {STARDIST_BATCH} x {PATCH_SIZE}² "
        f"(ours: {reference['crops']} crops)")

    python = ensure_venv(args.venv, STARDIST_REQUIREMENTS, "StarDist", log)
    data_folder = args.work / ("data_quick" if args.quick else "data")
    prepare_stardist_data(data_folder, ids, target_diameter, normalization, log)

    rows, report["cytolens_seconds"] = score_cytolens(packages, ids, log)
    rows += score_round_trip(ids, target_diameter)

    name = f"dsb2018_scratch_steps{args.steps}" + ("_quick" if args.quick else "")
    basedir, predictions = args.work / "models", args.work / "predictions" / name
    if args.quick and not args.score_only:  # a smoke run always trains afresh
        shutil.rmtree(basedir / name, ignore_errors=True)
    shutil.rmtree(predictions, ignore_errors=True)
    returncode = run_stardist(python, data_folder, basedir, name, predictions, args.steps, args.steps_per_epoch,
                              args.score_only, log)
    if returncode == 0:
        rows += score_stardist(predictions, ids)
        report["stardist"] = json.loads((predictions / "stardist_summary.json").read_text())
    else:
        report["stardist_error"] = f"the StarDist worker exited with {returncode} (see the log)"
        log(report["stardist_error"])

    model_order = ["stardist", "stardist_nearest", *packages, "truth_round_trip"]
    rows.sort(key=lambda row: (SPLITS.index(row["split"]), model_order.index(row["model"])))
    table = pd.DataFrame(rows)
    table.insert(3, "modality", table["id"].map(modality))
    table.to_csv(RESULTS / f"{stem}_per_image.csv", index=False)
    report["results"] = summaries(table)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    page = markdown(report)
    (RESULTS / f"{stem}.md").write_text(page)
    print(page)
    log(f"wrote {RESULTS / stem}.{{json,md,log}} and {stem}_per_image.csv")
    if returncode:
        sys.exit(returncode)


if __name__ == "__main__":
    main()
