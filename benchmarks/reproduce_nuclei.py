"""Does retraining the bundled `nuclei` model with its saved config reproduce its validation AP?

Step 1 (``train``): copy the config saved in the bundled package (train_config.yaml; the
same settings as training/nuclei_gpu/config.yaml) changing only ``output`` (so the bundled
model is never overwritten), and run ``cytolens train`` on it, exactly as a user would.
Training resumes from its checkpoint when run again. The bundled model is trained on a GPU
(about 9 minutes on an H100 or H200; many hours on a 2-core CPU): on a lent GPU machine,
``training/device/train_sized.py`` does the same run from a packed copy of the data
(training/device/README.md); pass its package to step 2 with ``--output``.

The result files (results/reproduce_nuclei.*) are from `nuclei` v2, bundled at the time.
v3 is v2 continued by training/nuclei_gpu/continue.yaml (init_from = the v2 package, restored
from commit fe61f38) and v4 is v3 widened to the contact watershed schema and trained further
by training/nuclei_gpu/contact.yaml; ``train`` stops with that explanation while a
continuation is bundled, since a rerun of config.yaml alone reproduces v2, not v3 or v4,
and ``evaluate`` stops when the two packages have different schemas (their thresholds differ).

Step 2 (``evaluate``, a few minutes): segment the 41 images of the validation split
(training/nuclei/split.json) with both packages, the same post-processing (the bundled
model's thresholds) and the true median diameter of each image (isolates the network from
the separately fitted size model), and report per-image mean AP@0.5 / AP@0.75 for both,
their difference, and the training-time validation scores each package recorded.

Usage:
    python benchmarks/reproduce_nuclei.py train      [--output DIR]
    python benchmarks/reproduce_nuclei.py evaluate   [--output DIR]
Writes benchmarks/results/reproduce_nuclei.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from segmentation_dsb import score_image  # noqa: E402

import cytolens  # noqa: E402
from cytolens.io import read_image  # noqa: E402
from cytolens.models import load  # noqa: E402
from cytolens.tasks.segmentation.training import median_diameter  # noqa: E402
from cytolens.train.config import load_config, save_config  # noqa: E402
from cytolens.train.splits import load_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "nuclei_gpu" / "config.yaml"
BUNDLED = ROOT / "src" / "cytolens" / "models" / "bundled" / "nuclei"
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUTPUT = ROOT / "reproduce-nuclei"  # gitignored: a retrained package is not committed


def train(output: Path) -> None:
    config = load_config(BUNDLED / "train_config.yaml")
    if config.init_from:
        recipe = json.loads((BUNDLED / "model.json").read_text())["training"].get("recipe", "in its model.json")
        sys.exit(f"the bundled package continues a parent model (init_from: {config.init_from}); its recipe: "
                 f"{recipe}; not a run from scratch (see this script's docstring)")
    recipe = load_config(CONFIG.resolve())
    for section in ("architecture", "augmentation", "optimization", "modality_weights", "seed", "target_diameter"):
        if getattr(config, section) != getattr(recipe, section):
            sys.exit(f"the bundled package's {section} differs from {CONFIG}; which one is the recipe?")
    config = config.model_copy(update={"output": output / "nuclei_retrained"})
    output.mkdir(parents=True, exist_ok=True)
    config_path = save_config(config, output / "config.yaml")
    start = time.time()
    command = [sys.executable, "-m", "cytolens", "train", str(config_path)]
    if config.output.exists():  # a run stopped by its time budget: continue from its checkpoint
        command.append("--overwrite")
    subprocess.run(command, check=True)
    print(f"retrained in {(time.time() - start) / 60:.1f} min")


def score_package(package: Path, ids: list[str], images: Path, labels: Path, thresholds: dict) -> list[dict]:
    model = load(str(package))
    rows = []
    for image_id in ids:
        image = read_image(next(images.glob(f"{image_id}.*")))
        truth = read_image(next(labels.glob(f"{image_id}.*"))).astype(np.int64)
        pred = cytolens.segment(image, model, diameter=median_diameter(truth), **thresholds)
        rows.append({"id": image_id, **score_image(truth, pred)})
    return rows


def evaluate(output: Path) -> None:
    config = load_config(CONFIG.resolve())
    split = load_split(config.data.split_file)
    bundled_card = json.loads((BUNDLED / "model.json").read_text())
    thresholds = {key: value for key, value in bundled_card["postprocess"].items() if key != "min_size"}
    retrained = output / "nuclei_retrained"
    if not (retrained / "model.json").is_file():
        sys.exit(f"no retrained package at {retrained}: run the train step first")
    retrained_schema = json.loads((retrained / "model.json").read_text())["schema"]
    if retrained_schema != bundled_card["schema"]:
        sys.exit(f"the retrained package predicts schema {retrained_schema!r}, the bundled one "
                 f"{bundled_card['schema']!r}: one set of thresholds cannot serve both (see the docstring)")
    result = {"data": "DSB2018 stage1_train, labels_lopuhin_fixed, val split of training/nuclei/split.json",
              "images": len(split["val"]), "postprocess": thresholds, "diameter": "true median per image",
              "machine": machine(), "packages": {}}
    for name, package in (("bundled", BUNDLED), ("retrained", retrained)):
        rows = score_package(package, split["val"], config.data.images, config.data.labels, thresholds)
        card = json.loads((package / "model.json").read_text())
        result["packages"][name] = {
            "path": str(package.relative_to(ROOT)) if package.is_relative_to(ROOT) else str(package),
            "val_ap50": float(np.mean([r["ap50"] for r in rows])),
            "val_ap75": float(np.mean([r["ap75"] for r in rows])),
            "training_best_val": card["training"]["best_val"],
            "best_epoch": card["training"]["best_epoch"], "epochs_run": card["training"]["epochs_run"],
            "commit": card["training"].get("commit"),
            "machine": card["training"].get("machine", "this machine's CPU"),
            "batchnorm_repair": card["training"].get("batchnorm_repair"),
        }
    diff = result["packages"]["retrained"]["val_ap50"] - result["packages"]["bundled"]["val_ap50"]
    result["difference_ap50"] = diff
    result["within_0.02"] = bool(abs(diff) <= 0.02)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reproduce_nuclei.json").write_text(json.dumps(result, indent=1))
    lines = ["# Retraining `nuclei` with its saved config", "",
             f"Validation split ({result['images']} images), thresholds {thresholds}, true diameter; "
             f"{result['machine']['cpu']}, {result['machine']['cores']} cores.", "",
             "| package | val AP@0.5 | val AP@0.75 | training-time val AP@0.5 | best epoch / run | trained on |",
             "|---|---|---|---|---|---|"]
    for name, entry in result["packages"].items():
        lines.append(f"| {name} | {entry['val_ap50']:.3f} | {entry['val_ap75']:.3f} | "
                     f"{entry['training_best_val'].get('val_ap50', float('nan')):.3f} | "
                     f"{entry['best_epoch']} / {entry['epochs_run']} | {entry['machine']} |")
    lines += ["", f"Difference (retrained − bundled) AP@0.5: {diff:+.3f} → within 0.02: {result['within_0.02']}"]
    planned = config.optimization.epochs
    for name, entry in result["packages"].items():
        if entry["epochs_run"] < planned:
            lines.append(f"The {name} run stopped after {entry['epochs_run']} of {planned} epochs (its config's "
                         f"early stopping or max_minutes = {config.optimization.max_minutes}).")
    for name, entry in result["packages"].items():
        if entry.get("batchnorm_repair"):
            repair = entry["batchnorm_repair"]
            lines.append(f"The {name} package's batchnorm statistics of {', '.join(repair['layers'])} were "
                         f"re-estimated on {repair['batches']} × {repair['batch_size']} training crops "
                         "(training/nuclei_gpu/repair_batchnorm.py: its float16 copy had overflowed).")
    lines.append("The post-processing thresholds were chosen on this split for the bundled model "
                 "(training/nuclei/tune_thresholds.py), which favours it slightly; the training-time column "
                 "uses the default thresholds for both.")
    (RESULTS / "reproduce_nuclei.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["train", "evaluate"])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    (train if args.step == "train" else evaluate)(args.output.resolve())


if __name__ == "__main__":
    main()
