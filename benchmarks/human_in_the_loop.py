"""Human in the loop on DSB2018 stained tissue: "correct" 1, 2, 5 and 10 images, fine-tune, score held-out images.

The field's test of correct-then-retrain (Cellpose 2.0): start from the bundled ``nuclei``
model, take the ground truth of k images of a dataset as a person's corrections, fine-tune
with ``cytolens.finetune`` on the CPU, and score AP@0.5 on held-out images of the same
dataset, segmented as a user segments them (``cytolens.segment``, diameter estimated).

Data: ../shared/data/dsb2018_stage1_train (community-fixed labels), the stained (H&E-like)
groups of training/nuclei/dsb_sources.csv. Most of these images were in the bundled model's
train split (src/cytolens/models/bundled/nuclei/split.json): the only stained images it never
trained on or selected epochs on are its `test` ids (4 of group "stained 256x320 c", 9 of
"stained 256x320 d"). So:

* held-out images (scored): those 13, reported per group: "d (same group)" and
  "c (other group)"; never used for fine-tuning;
* corrections: nested draws (seed 0) from group d's other images (its train and val ids:
  the bundled model trained on the train ones, so this measures what fine-tuning on a
  person's group adds to a model that has seen that kind of image, not a new domain).

``--dataset usiigaci`` runs the same loop where the model is truly mismatched: whole cells in
phase contrast (../shared/data/usiigaci_phase_contrast_cells, MIT), which no bundled model was
trained on. Corrections: nested draws from the train sets of training/cells/split.json; scored:
its test sets, by block of sets (A3 = sets 10-12, large cells; B2 = sets 19-20, small cells),
never used for fine-tuning. Results go to human_in_the_loop_usiigaci.{md,csv}.

Budgets (CPU time of this process, one torch thread, ``cpu_budget=True``, so a shared machine
does not shorten the training): ``--minutes`` for the 5-image headline (10 by default) and
``--small-minutes`` for the 1-, 2- and 10-image points (4 by default). The 5-image point runs
first.

Usage: nice -n 10 python benchmarks/human_in_the_loop.py [--minutes 10] [--small-minutes 4] [--counts 5 1 2 10]
        [--dataset dsb-stained|usiigaci] [--learning-rate 1e-4]
Writes benchmarks/results/human_in_the_loop[_usiigaci].{md,csv} (rewritten after every point).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_stage1_train"
SOURCES = ROOT / "training" / "nuclei" / "dsb_sources.csv"
SPLIT = ROOT / "src" / "cytolens" / "models" / "bundled" / "nuclei" / "split.json"
RESULTS = ROOT / "benchmarks" / "results"
CORRECTION_GROUP, OTHER_GROUP = "stained 256x320 d", "stained 256x320 c"
CELLS = ROOT.parent / "shared" / "data" / "usiigaci_phase_contrast_cells"
CELLS_SPLIT = ROOT / "training" / "cells" / "split.json"
CELLS_BLOCKS = ROOT / "training" / "cells" / "usiigaci_sets.csv"


class Dataset(NamedTuple):
    suffix: str  # of the results files
    images: Path
    labels: Path
    description: str
    text: str  # what is corrected and what is scored


DATASETS = {
    "dsb-stained": Dataset("", DATA / "images", DATA / "labels_lopuhin_fixed", "DSB2018 stained images", (
        "Corrections: the ground truth of k images of group \"stained 256x320 d\" (nested draws from its "
        "train/val ids, which the bundled model trained on or selected with). Scored: AP@0.5 (per image, "
        "mean) on the stained images of the bundled model's test split, which it never saw, segmented with "
        "`cytolens.segment` (no diameter given): 9 of group d and 4 of group c.")),
    "usiigaci": Dataset("_usiigaci", CELLS / "images", CELLS / "labels", "Usiigaci phase-contrast whole cells", (
        "Data: ../shared/data/usiigaci_phase_contrast_cells (Usiigaci, MIT): whole cells in phase contrast, "
        "1022x1024, which no bundled model was trained on. Corrections: the ground truth of k of the train sets "
        "of training/cells/split.json (nested draws). Scored: AP@0.5 (per image, mean) on its test sets by "
        "block, never used for fine-tuning: A3 (sets 10-12, large cells) and B2 (sets 19-20, small cells), "
        "segmented with `cytolens.segment` (no diameter given).")),
}


def choose_images(seed: int = 0, dataset: str = "dsb-stained") -> tuple[list[str], dict[str, list[str]]]:
    """Corrections (a shuffled order of the correction pool) and the held-out ids per group."""
    if dataset == "usiigaci":
        split = json.loads(CELLS_SPLIT.read_text())
        block = dict(pd.read_csv(CELLS_BLOCKS, dtype=str)[["id", "block"]].values)
        pool = sorted(split["train"])
        np.random.default_rng(seed).shuffle(pool)
        return pool, {"A3 (sets 10-12)": [i for i in split["test"] if block[i] == "A3"],
                      "B2 (sets 19-20)": [i for i in split["test"] if block[i] == "B2"]}
    sources = pd.read_csv(SOURCES, dtype=str)
    split = json.loads(SPLIT.read_text())
    group_of = dict(zip(sources["id"], sources["group"]))
    pool = sorted(i for i in split["train"] + split["val"] if group_of.get(i) == CORRECTION_GROUP)
    np.random.default_rng(seed).shuffle(pool)
    held = {"d (same group)": sorted(i for i in split["test"] if group_of.get(i) == CORRECTION_GROUP),
            "c (other group)": sorted(i for i in split["test"] if group_of.get(i) == OTHER_GROUP)}
    return pool, held


def score(model, ids: list[str], data: Dataset) -> list[float]:
    import cytolens
    from cytolens.io import read_image
    from cytolens.metrics import match

    aps = []
    for image_id in ids:
        truth = read_image(data.labels / f"{image_id}.tif")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = cytolens.segment(read_image(data.images / f"{image_id}.tif"), model=model)
        aps.append(match(truth, labels, 0.5).average_precision)
    return aps


def write(rows: list[dict], info: dict, data: Dataset) -> None:
    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"human_in_the_loop{data.suffix}.csv", index=False)
    base = {r["held_out"]: r["ap50"] for r in rows if r["corrected"] == 0}
    lines = [f"# Human in the loop: fine-tuning `nuclei` on corrected {data.description}", "",
             (f"Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores shared with other jobs, one "
              f"torch thread, bfloat16 {'native' if info['machine']['cpu_bfloat16'] else 'not native'}; commit "
              f"{info['machine']['commit']}. Script: `benchmarks/human_in_the_loop.py`."), "",
             data.text + " Budgets are CPU minutes of the training (one thread); preparation, object-filter "
             "refit and scoring come on top. Diameters are estimated per image: by the bundled size model, and for a "
             "fine-tuned model by its size model refitted on the corrected images (with 1 image: that image's "
             "median object diameter, recorded in the package).", "",
             ("| corrected images | budget (CPU min) | held out | images | AP@0.5 | gain | epochs | val held out "
              "in the fine-tune | object filter | wall s |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        gain = "" if r["corrected"] == 0 else f"{r['ap50'] - base[r['held_out']]:+.3f}"
        lines.append(f"| {r['corrected']} | {r['minutes'] or ''} | {r['held_out']} | {r['images']} | "
                     f"{r['ap50']:.3f} | {gain} | {r['epochs'] or ''} | {r['finetune_held_out']} | "
                     f"{r['object_filter']} | {r['wall_seconds']:.0f} |")
    lines += ["", info.get("note", "")]
    (RESULTS / f"human_in_the_loop{data.suffix}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU minutes for the 5-image point")
    parser.add_argument("--small-minutes", type=float, default=4.0, help="CPU minutes for the other points")
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 1, 2, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="dsb-stained")
    parser.add_argument("--learning-rate", type=float, default=1e-4,
                        help="the fine-tune's peak learning rate (finetune's default 1e-4); another value writes "
                             "results files named ..._lr<value>")
    args = parser.parse_args()
    import torch

    import cytolens

    torch.set_num_threads(1)
    data = DATASETS[args.dataset]
    if args.learning_rate != 1e-4:
        data = data._replace(suffix=f"{data.suffix}_lr{args.learning_rate:g}",
                             text=f"{data.text} Fine-tuning learning rate {args.learning_rate:g} (default 1e-4).")
    pool, held = choose_images(args.seed, args.dataset)
    info = {"machine": machine(), "held_out": held, "corrections_order": pool,
            "note": "Cellpose's own fine-tuning curve is not here: its pretrained weights cannot be downloaded on "
                    "this machine (no network), so its human-in-the-loop start point does not exist offline."}
    rows = []
    for name, ids in held.items():
        tick = time.perf_counter()
        aps = score("nuclei", ids, data)
        rows.append({"corrected": 0, "minutes": None, "held_out": name, "images": len(ids), "ap50": float(np.mean(aps)),
                     "per_image": json.dumps([round(a, 4) for a in aps]), "epochs": None, "finetune_held_out": "",
                     "object_filter": "bundled", "wall_seconds": time.perf_counter() - tick})
    write(rows, info, data)
    work = Path(tempfile.mkdtemp(prefix="hitl-"))
    for count in args.counts:
        minutes = args.minutes if count == 5 else args.small_minutes
        corrected = pool[:count]
        tick = time.perf_counter()
        result = cytolens.finetune([data.images / f"{i}.tif" for i in corrected], data.labels,
                                   work / f"k{count}", model="nuclei", minutes=minutes, cpu_budget=True,
                                   progress=False, seed=args.seed, learning_rate=args.learning_rate)
        trained = time.perf_counter() - tick
        flt = "refitted" if isinstance(result.object_filter, dict) else "none"
        for name, ids in held.items():
            aps = score(result.package, ids, data)
            rows.append({"corrected": count, "minutes": minutes, "held_out": name, "images": len(ids),
                         "ap50": float(np.mean(aps)), "per_image": json.dumps([round(a, 4) for a in aps]),
                         "epochs": result.epochs, "finetune_held_out": "yes" if result.held_out else "no",
                         "object_filter": flt, "wall_seconds": trained})
            print(rows[-1], flush=True)
        write(rows, info, data)
    (RESULTS / f"human_in_the_loop{data.suffix}.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
