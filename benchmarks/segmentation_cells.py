"""Whole-cell segmentation on held-out Usiigaci sets: each schema's ceiling, and trained models side by side.

Data: ``../shared/data/usiigaci_phase_contrast_cells`` (phase contrast, MIT), the test side of
``training/cells/split.json`` (sets 10-12 and 19-20: whole blocks of sets no model trains on).

``--oracle`` (no network): each schema's targets made from the truth, turned into network
outputs a perfect network would give and post-processed with the schema's defaults: the
best AP the representation itself allows on these cells (the watershed schemas cut
non-convex cells whose distance map has two peaks; flow_field should not).

``--models PKG [PKG ...]``: trained packages (e.g. ``trained/cells``, ``trained/cells_deep_watershed``
from ``training/cells/*.yaml``), each run with ``cytolens.segment`` on every full-size test
image (diameter estimated, as a user would), scored by AP@0.5, AP@0.75 and the DSB2018 score,
with seconds per image (1022x1024) in the same run.

``--cellpose DIR``: Cellpose 3 trained from scratch on the same training sets, in its own venv
(``--cellpose-venv``, default ``/work/peer-venvs/cellpose``; ``/work/shared/PEERS.md``), by
``_peer_cellpose_worker.py`` for ``--cellpose-minutes`` of wall time on the same CPU (its pretrained
weights cannot be downloaded here). If DIR already holds a trained model, it only predicts again,
so its seconds per image come from the same run as ours. Two rows: diameter = the training sets'
mean (what a user of a from-scratch model has) and diameter = each test image's true median (an
oracle Cellpose users do not have; ours always estimates it).

Usage: python benchmarks/segmentation_cells.py --oracle [--models trained/cells ...] [--cellpose DIR]
Writes benchmarks/results/segmentation_cells.{csv,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "usiigaci_phase_contrast_cells"
SPLIT = ROOT / "training" / "cells" / "split.json"
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA_NAMES = ("deep_watershed", "contact_watershed", "flow_field")
#: post-processing settings tried per schema: the defaults, and for the watershed schemas the bundled nuclei
#: models' h-maxima markers on a smoothed distance (fewer cuts of a cell with two distance peaks)
SETTINGS = {"deep_watershed": [{}, {"marker_dynamic": 0.3, "smoothing": 1.0}],
            "contact_watershed": [{}, {"marker_dynamic": 0.3, "smoothing": 1.0, "contact_weight": 0.5}],
            "flow_field": [{}]}
#: the scale the oracle works at: training/cells/config.yaml's target_diameter
TARGET_DIAMETER = 30.0


def test_ids() -> list[str]:
    return json.loads(SPLIT.read_text())["test"]


def read_pair(stem: str):
    from cytolens.io import read_image

    return read_image(DATA / "images" / f"{stem}.tif"), read_image(DATA / "labels" / f"{stem}.tif")


def scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    from cytolens.metrics.segmentation import dsb2018_score, match

    truth, pred = truth.astype(np.int64), pred.astype(np.int64)
    return {"ap50": match(truth, pred, 0.5).average_precision, "ap75": match(truth, pred, 0.75).average_precision,
            "dsb2018": dsb2018_score(truth, pred), "objects": int(len(np.unique(pred)) - 1),
            "true_objects": int(len(np.unique(truth)) - 1)}


def perfect_outputs(schema: str, targets: np.ndarray) -> np.ndarray:
    """The outputs a perfect network of ``schema`` would give for these targets."""
    from cytolens.tasks.segmentation import flow_field

    if schema == "flow_field":
        return np.concatenate([20 * (targets[:1] - 0.5), flow_field.FLOW_SCALE * targets[1:3]]).astype(np.float32)
    p = np.clip(targets, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).astype(np.float32)


def oracle_rows() -> list[dict]:
    from cytolens.tasks.segmentation import SCHEMAS
    from cytolens.tasks.segmentation.training import prepare_sample

    rows = []
    for stem in test_ids():
        image, labels = read_pair(stem)
        for schema in SCHEMA_NAMES:
            sample = prepare_sample(image, labels, schema, TARGET_DIAMETER)
            for setting in SETTINGS[schema]:
                start = time.perf_counter()
                pred = SCHEMAS[schema].postprocess(perfect_outputs(schema, sample.targets), **setting)
                seconds = time.perf_counter() - start
                name = schema + (" " + ", ".join(f"{k}={v:g}" for k, v in setting.items()) if setting else "")
                rows.append({"kind": "oracle", "method": name, "image": stem, **scores(sample.labels, pred),
                             "seconds": seconds})
    return rows


def model_rows(packages: list[str]) -> list[dict]:
    import warnings

    import cytolens
    from cytolens.models import load

    loaded = {path: load(path) for path in packages}
    names = [package.name for package in loaded.values()]
    rows = []
    for path, package in loaded.items():
        # a package's name, or its folder where two packages share a name (e.g. stages of one recipe)
        label = package.name if names.count(package.name) == 1 else str(path)
        for stem in test_ids():
            image, labels = read_pair(stem)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = cytolens.segment(image, package)
            seconds = time.perf_counter() - start
            rows.append({"kind": "model", "method": f"{label} ({package.meta['schema']})", "package": str(path),
                         "image": stem, **scores(labels, pred), "seconds": seconds})
    return rows


def cellpose_rows(folder: Path, venv: Path, minutes: float) -> list[dict]:
    """Train (unless ``folder`` has a model) and predict with Cellpose in its own venv; score its labels."""
    import subprocess

    summary_path = folder / "cellpose_summary.json"
    trained = summary_path.exists() and "model" in json.loads(summary_path.read_text())
    command = [str(venv / "bin" / "python"), str(Path(__file__).parent / "_peer_cellpose_worker.py"),
               "--images", str(DATA / "images"), "--labels", str(DATA / "labels"), "--split", str(SPLIT),
               "--out", str(folder), "--minutes", str(minutes)] + (["--predict-only"] if trained else [])
    subprocess.run(command, check=True)
    summary = json.loads(summary_path.read_text())
    from cytolens.io import read_image

    rows = []
    for stem in test_ids():
        _, labels = read_pair(stem)
        for kind, what in (("mean", "training-set mean diameter"), ("true", "true diameter given")):
            pred = read_image(folder / f"{stem}_{kind}.tif")
            rows.append({"kind": "peer", "method": f"Cellpose 3 from scratch, {summary['epochs']} epochs "
                         f"({summary['train_seconds'] / 60:.0f} min), {what}", "image": stem,
                         **scores(labels, pred), "seconds": summary["predict_seconds"][f"{stem}_{kind}"]})
    return rows


def record_scores(table: pd.DataFrame, packages: list[str], info: dict) -> None:
    """The model card's figures: each package's means over the held-out test sets, with what made them."""
    from cytolens.models import update_meta

    for path in packages:
        rows = table[table.package == str(path)]
        overall = {"images": len(rows), **{k: float(rows[k].mean()) for k in ("ap50", "ap75", "dsb2018")}}
        validation = {"data": "Usiigaci held-out sets " + ", ".join(test_ids()) + " (training/cells/split.json: "
                              "blocks of sets no training or model choice saw)",
                      "diameter": "estimated (diameter=None)", "overall": overall,
                      "per_image": {row.image: {"ap50": row.ap50, "ap75": row.ap75} for row in rows.itertuples()},
                      "script": "benchmarks/segmentation_cells.py", "machine": info["cpu"]}
        update_meta(path, lambda meta, scores=validation: meta.update(validation=scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--oracle", action="store_true", help="each schema's ceiling from perfect outputs")
    parser.add_argument("--models", nargs="*", default=[], help="trained package folders to score")
    parser.add_argument("--record", action="store_true",
                        help="write each --models package's test scores into its model.json (the model card)")
    parser.add_argument("--cellpose", type=Path, help="folder of the Cellpose peer's model and predictions")
    parser.add_argument("--cellpose-venv", type=Path, default=Path("/work/peer-venvs/cellpose"))
    parser.add_argument("--cellpose-minutes", type=float, default=40.0, help="Cellpose's training budget")
    parser.add_argument("--name", default="segmentation_cells", help="results file names (benchmarks/results/NAME.*)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"Usiigaci data not found at {DATA}")
    import torch

    torch.set_num_threads(2)
    rows = (oracle_rows() if args.oracle else []) + model_rows(args.models)
    if args.cellpose:
        rows += cellpose_rows(args.cellpose, args.cellpose_venv, args.cellpose_minutes)
    if not rows:
        sys.exit("nothing to do: give --oracle and/or --models")
    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"{args.name}.csv", index=False)
    summary = table.groupby(["kind", "method"], sort=False)[["ap50", "ap75", "dsb2018", "seconds"]].mean()
    info = machine()
    lines = ["# Whole cells: held-out Usiigaci sets (" + ", ".join(test_ids()) + ")", "",
             ("Made by `benchmarks/segmentation_cells.py` "
              f"({'--oracle ' if args.oracle else ''}{'--models ' + ' '.join(args.models) if args.models else ''}"
              f"{' --cellpose ' + str(args.cellpose) if args.cellpose else ''}"
              f"{' --name ' + args.name if args.name != 'segmentation_cells' else ''})."),
             (f"Machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
              f"commit {info['commit']}."), "",
             ("oracle = the schema's own targets (from the truth) as perfect network outputs, post-processed with the "
              f"schema's settings at target diameter {TARGET_DIAMETER:g} px: the ceiling of the representation. "
              "Means over the test images; seconds = post-processing (oracle) or the whole segment call (model)."),
             "", "| kind | method | AP@0.5 | AP@0.75 | DSB2018 | seconds / image |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (kind, method), row in summary.iterrows():
        lines.append(f"| {kind} | {method} | {row.ap50:.3f} | {row.ap75:.3f} | {row.dsb2018:.3f} | {row.seconds:.2f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    if args.record:
        record_scores(table, args.models, info)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
