"""Where a nuclei model's errors come from, per modality, on the DSB2018 val split (or test).

Each image is segmented as a user would (``cytolens.segment(image, model)``, diameter
estimated), once with and once without the object filter. Every true nucleus left unmatched at
IoU >= 0.5 is put in one kind, by the best IoU any predicted object reaches with it:

- ``removed by the object filter``: matched when the filter is off;
- ``merged with a neighbour``: its best predicted object also covers more than a quarter of
  another true nucleus (two or more nuclei got one object);
- ``poorly outlined``: best IoU from 0.1 to 0.5, no neighbour inside the object;
- ``not found``: best IoU below 0.1 (no object where the nucleus is).

Predicted objects left unmatched are ``spurious`` (best IoU below 0.1) or ``poor`` (0.1 to 0.5).
The Caicedo et al. (2019) split/merge counts (``cytolens.metrics.segmentation.object_errors``)
are given beside them. The val split is the default: this script is for deciding what to work on,
and decisions are not made on test.

Usage: python benchmarks/segmentation_errors_dsb.py [--model nuclei] [--split val|test] [--limit N]
Writes benchmarks/results/segmentation_errors_dsb_<split>_<model>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from segmentation_dsb import DATA, MODALITY_NAMES, RESULTS, ROOT, SPLIT  # noqa: E402

import cytolens  # noqa: E402
from cytolens.io import read_image  # noqa: E402
from cytolens.metrics.segmentation import iou_matrix, match, match_iou_matrix, object_errors  # noqa: E402
from cytolens.models import load  # noqa: E402

TRUTH_KINDS = ("removed by the object filter", "merged with a neighbour", "poorly outlined", "not found")
PRED_KINDS = ("spurious", "poor")
CAICEDO = ("merge", "split", "missed", "extra", "catastrophe")


def error_kinds(truth: np.ndarray, pred: np.ndarray, unfiltered: np.ndarray | None = None) -> Counter:
    """Count each kind of unmatched true nucleus and predicted object (IoU >= 0.5 matches).

    >>> truth = np.zeros((20, 40), int); truth[2:8, 2:8] = 1; truth[2:8, 8:14] = 2; truth[12:18, 30:36] = 3
    >>> pred = np.zeros_like(truth); pred[2:8, 2:14] = 1; pred[12:18, 20:26] = 2
    >>> sorted(error_kinds(truth, pred).items())
    [('merged with a neighbour', 1), ('not found', 1), ('spurious', 1)]
    """
    truth, pred = np.asarray(truth, np.int64), np.asarray(pred, np.int64)
    kinds: Counter = Counter()
    iou, true_ids, pred_ids = iou_matrix(truth, pred)
    true_best = iou.max(axis=1) if iou.size else np.zeros(len(true_ids))  # each one's best IoU with the other side
    pred_best = iou.max(axis=0) if iou.size else np.zeros(len(pred_ids))
    # one-to-one: two nuclei at IoU 0.5 with one object match once
    pairs = match_iou_matrix(iou, true_ids, pred_ids).matched_pairs
    matched_true, matched_pred = {t for t, _ in pairs}, {p for _, p in pairs}
    matched_unfiltered = set()
    if unfiltered is not None:
        matched_unfiltered = {t for t, _ in match(truth, np.asarray(unfiltered, np.int64)).matched_pairs}
    true_area = dict(zip(*np.unique(truth[truth > 0], return_counts=True)))
    for true_id, best in zip(true_ids, true_best):
        if true_id in matched_true:
            continue
        if true_id in matched_unfiltered:
            kinds["removed by the object filter"] += 1
        elif best < 0.1:
            kinds["not found"] += 1
        else:
            inside = pred[truth == true_id]
            owner = np.bincount(inside[inside > 0]).argmax()  # the predicted object covering most of it
            others, counts = np.unique(truth[(pred == owner) & (truth != true_id) & (truth > 0)], return_counts=True)
            merged = any(count > 0.25 * true_area[other] for other, count in zip(others, counts))
            kinds["merged with a neighbour" if merged else "poorly outlined"] += 1
    for pred_id, best in zip(pred_ids, pred_best):
        if pred_id not in matched_pred:
            kinds["spurious" if best < 0.1 else "poor"] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (quick check)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"DSB2018 data not found at {DATA}")
    package = load(args.model)
    ids = json.loads(SPLIT.read_text())[args.split][: args.limit]
    modality = pd.read_csv(DATA / "index.csv").set_index("id")["modality"].map(MODALITY_NAMES)
    rows = []
    for image_id in ids:
        image = read_image(DATA / "images" / f"{image_id}.tif")
        truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif").astype(np.int64)
        pred = cytolens.segment(image, package).astype(np.int64)
        unfiltered = (cytolens.segment(image, package, filter_objects=False).astype(np.int64)
                      if "object_filter" in package.extras else None)
        caicedo = object_errors(truth, pred)
        rows.append({"modality": modality[image_id], "true nuclei": int(len(np.unique(truth)) - (truth.min() == 0)),
                     **error_kinds(truth, pred, unfiltered),
                     **{f"Caicedo {name}": int(getattr(caicedo, name)) for name in CAICEDO}})
    table = pd.DataFrame(rows).fillna(0)
    columns = ["true nuclei", *TRUTH_KINDS, *PRED_KINDS, *(f"Caicedo {n}" for n in CAICEDO)]
    for column in columns:
        if column not in table:
            table[column] = 0
    sums = table.groupby("modality")[columns].sum().astype(int)
    sums.loc["all"] = sums.sum()
    sums.insert(0, "images", [*table.groupby("modality").size().tolist(), len(table)])
    name = Path(args.model).name
    stem = RESULTS / f"segmentation_errors_dsb_{args.split}_{name}"
    report = {"model": args.model, "data": f"DSB2018 stage1_train {args.split} split ({len(ids)} images, "
              f"{SPLIT.relative_to(ROOT)})", "machine": machine(), "counts": sums.to_dict(orient="index")}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=int))
    lines = [f"# Errors of `{args.model}` by kind — {report['data']}", "",
             "Unmatched true nuclei (IoU >= 0.5 matching) by why, unmatched predicted objects, and the Caicedo "
             "split/merge counts; `cytolens.segment` with the diameter estimated. Machine: "
             f"{report['machine']['cpu']}, commit {report['machine']['commit']}.", "",
             "| subset | " + " | ".join(sums.columns) + " |", "| --- " * (len(sums.columns) + 1) + "|"]
    lines += [f"| {subset} | " + " | ".join(str(v) for v in row) + " |" for subset, row in sums.iterrows()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
