"""Mark the training images a bundled nuclei model segments worst, for sampling them more often.

Segments every image of the *train* split (never val or test) with the package at its
true median diameter, scores AP@0.5, and writes a strata CSV whose ``sampling_group``
column is ``<modality>`` or ``<modality>/hard`` (the lowest-scoring third of each
modality). A training config points ``data.strata_csv`` at it, ``stratify_column:
sampling_group``, and gives each group a weight in ``modality_weights``.

Usage: python training/nuclei_cpu/hard_images.py PACKAGE OUT.csv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import cytolens
from cytolens.io import read_image
from cytolens.metrics import match_thresholds
from cytolens.models import load
from cytolens.tasks.segmentation.training import median_diameter

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_stage1_train"
SPLIT = ROOT / "training" / "nuclei" / "split.json"
HARD_FRACTION = 1 / 3


def mark_hard_images(table: pd.DataFrame, fraction: float = HARD_FRACTION) -> pd.DataFrame:
    """Add ``sampling_group``: ``<modality>/hard`` for the lowest-scoring ``fraction`` of each modality.

    >>> t = pd.DataFrame({"id": list("abcdef"), "modality": ["f"] * 3 + ["h"] * 3,
    ...                   "train_ap50": [0.9, 0.5, 0.8, 0.2, 0.6, 0.7]})
    >>> mark_hard_images(t).sampling_group.tolist()
    ['f', 'f/hard', 'f', 'h/hard', 'h', 'h']
    """
    table = table.copy()
    cutoff = table.groupby("modality").train_ap50.transform(lambda ap: ap.quantile(fraction))
    table["sampling_group"] = np.where(table.train_ap50 <= cutoff, table.modality + "/hard", table.modality)
    return table


def strata_table(train: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """The strata CSV: the marked train images, then every other id of ``index`` in its plain modality
    (sampling never draws val or test images, but the loader needs a row for every id)."""
    rest = index.drop(index=train.id).reset_index()[["id", "modality"]]
    rest["sampling_group"] = rest.modality
    return pd.concat([train, rest])


def main() -> None:
    package, out = load(sys.argv[1]), Path(sys.argv[2])
    train_ids = json.loads(SPLIT.read_text())["train"]
    index = pd.read_csv(DATA / "index.csv", dtype=str).set_index("id")
    rows = []
    for n, image_id in enumerate(train_ids):
        truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif").astype(np.int64)
        labels = cytolens.segment(read_image(DATA / "images" / f"{image_id}.tif"), package,
                                  diameter=median_diameter(truth))
        ap50 = match_thresholds(truth, labels.astype(np.int64), (0.5,), strict=False)[0].average_precision
        rows.append({"id": image_id, "modality": index.loc[image_id, "modality"], "train_ap50": ap50})
        if n % 50 == 0:
            print(n, len(train_ids), flush=True)
    table = mark_hard_images(pd.DataFrame(rows))
    strata_table(table, index).to_csv(out, index=False)
    print(table.groupby("sampling_group").train_ap50.agg(["count", "mean"]))


if __name__ == "__main__":
    main()
