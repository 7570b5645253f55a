"""AP@0.5, AP@0.75 and the Kaggle DSB2018 score of the nuclei models on the held-out DSB2018 test split.

Data: ../shared/data/dsb2018_stage1_train, community-fixed labels; the `test` ids of
training/nuclei/split.json (12 % of the images, stratified by modality, never used for
training or model selection). Images are segmented exactly as a user would:
``cytolens.segment(image, model)`` with the diameter estimated (``diameter=None``);
a second line gives the figure with the true median diameter passed (an upper bound
that isolates the size estimate). For a contact watershed model a third line gives the
figure with ``contact_weight=0``: the plain deep watershed post-processing of the same
network (what the contact channel adds at inference, as opposed to in training). For a
model with an object filter another line gives the figure with ``filter_objects=False``.

Conventions (see cytolens.metrics): AP = TP/(TP+FP+FN); AP@τ matches at IoU >= τ and
is averaged per image; the Kaggle score uses IoU > τ over τ = 0.50:0.05:0.95, averaged
per image; "pooled" sums TP/FP/FN over all images first.

Usage: python benchmarks/segmentation_dsb.py [--models nuclei nuclei_pixel_classes] [--limit N]
Writes benchmarks/results/segmentation_dsb.{json,md} and the scores into each bundled model.json.
``--split val`` scores the val split instead (for choosing settings without looking at
test; written to segmentation_dsb_val.*, never into model.json); ``--gamma G`` applies an
input gamma to every image (results get a ``_gammaG`` suffix); ``--precision bfloat16`` runs the
networks in mixed precision (suffix ``_bfloat16``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

import cytolens  # noqa: E402
from cytolens.io import read_image  # noqa: E402
from cytolens.metrics import match_thresholds  # noqa: E402
from cytolens.models import load, resolve, update_meta  # noqa: E402
from cytolens.tasks.segmentation.training import median_diameter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_stage1_train"
SPLIT = ROOT / "training" / "nuclei" / "split.json"
RESULTS = ROOT / "benchmarks" / "results"
MODALITY_NAMES = {
    "gray_darkbg(fluorescence-like)": "fluorescence",
    "gray_brightbg(brightfield-like)": "brightfield",
    "color_brightbg(stained/H&E-like)": "stained (H&E-like)",
}


def score_image(truth: np.ndarray, pred: np.ndarray) -> dict:
    truth, pred = truth.astype(np.int64), pred.astype(np.int64)
    loose = match_thresholds(truth, pred, (0.5, 0.75), strict=False)
    kaggle = match_thresholds(truth, pred, tuple(np.round(np.arange(0.5, 1.0, 0.05), 2)), strict=True)
    return {"ap50": loose[0].average_precision, "ap75": loose[1].average_precision,
            "kaggle": float(np.mean([m.average_precision for m in kaggle])),
            "tp50": loose[0].tp, "fp50": loose[0].fp, "fn50": loose[0].fn}


def summarize(table: pd.DataFrame) -> dict:
    pooled = table.tp50.sum() / max(table.tp50.sum() + table.fp50.sum() + table.fn50.sum(), 1)
    return {"images": int(len(table)), "ap50": float(table.ap50.mean()), "ap75": float(table.ap75.mean()),
            "kaggle": float(table.kaggle.mean()), "ap50_pooled": float(pooled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["nuclei", "nuclei_fast", "nuclei_pixel_classes"])
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images (quick check)")
    parser.add_argument("--no-write-model", action="store_true", help="do not record scores in model.json")
    parser.add_argument("--augment", action="store_true", help="also score test-time augmentation (flips)")
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--gamma", type=float, default=1.0, help="input gamma for every image")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="network precision for every image")
    args = parser.parse_args()
    stem = "segmentation_dsb" + ("_val" if args.split == "val" else "") + (
        f"_gamma{args.gamma:g}" if args.gamma != 1.0 else "") + ("_bfloat16" if args.precision == "bfloat16" else "")
    official = (args.split == "test" and args.gamma == 1.0 and args.precision == "float32" and args.limit is None
                and not args.no_write_model)
    if not DATA.is_dir():
        sys.exit(f"DSB2018 data not found at {DATA}")
    ids = json.loads(SPLIT.read_text())[args.split][: args.limit]
    modality = pd.read_csv(DATA / "index.csv").set_index("id")["modality"].map(MODALITY_NAMES)
    report = {"data": f"DSB2018 stage1_train {args.split} split ({len(ids)} images, {SPLIT.relative_to(ROOT)})",
              "machine": machine(), "models": {}}
    for name in args.models:
        try:
            package = load(name)
        except cytolens.CytolensError as exc:
            print(f"skipping {name}: {exc}")
            continue
        rows = []
        start = time.perf_counter()
        for image_id in ids:
            image = read_image(DATA / "images" / f"{image_id}.tif")
            truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
            segment = partial(cytolens.segment, image, package, gamma=args.gamma, precision=args.precision)
            estimated = score_image(truth, segment())
            oracle = score_image(truth, segment(diameter=median_diameter(truth)))
            row = {"id": image_id, "modality": modality[image_id], **estimated,
                   **{f"oracle_{k}": v for k, v in oracle.items()}}
            if args.augment:
                row.update({f"augment_{k}": v for k, v in score_image(truth, segment(augment=True)).items()})
            if "object_filter" in package.extras:  # what the object classifier adds
                unfiltered = score_image(truth, segment(filter_objects=False))
                row.update({f"unfiltered_{k}": v for k, v in unfiltered.items()})
            if package.meta["schema"] == "contact_watershed":  # what the contact channel adds at inference
                plain = score_image(truth, segment(contact_weight=0.0))
                row.update({f"nocontact_{k}": v for k, v in plain.items()})
            rows.append(row)
        seconds = time.perf_counter() - start
        table = pd.DataFrame(rows)
        def variant(prefix: str) -> pd.DataFrame:
            return table[[c for c in table if c.startswith(prefix)]].rename(columns=lambda c: c[len(prefix):])

        result = {"schema": package.meta["schema"], "overall": summarize(table),
                  "per_modality": {m: summarize(g) for m, g in table.groupby("modality")},
                  "overall_true_diameter": summarize(variant("oracle_")), "seconds": seconds}
        if args.augment:
            result["overall_augmented"] = summarize(variant("augment_"))
        if "nocontact_ap50" in table:
            result["overall_without_contacts"] = summarize(variant("nocontact_"))
        if "unfiltered_ap50" in table:
            result["overall_without_object_filter"] = summarize(variant("unfiltered_"))
        report["models"][name] = result
        table.to_csv(RESULTS / f"{stem}_{Path(name).name}_per_image.csv", index=False)  # name may be a path
        if official:
            scores = {"data": report["data"], "diameter": "estimated (diameter=None)",
                      "overall": result["overall"], "per_modality": result["per_modality"],
                      "script": "benchmarks/segmentation_dsb.py", "machine": report["machine"]["cpu"]}
            update_meta(resolve(name), lambda meta, scores=scores: meta.update(validation=scores))
        print(json.dumps({name: result}, indent=1))
    report["gamma"] = args.gamma
    report["precision"] = args.precision
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Segmentation on DSB2018 — {report['data']}", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, no GPU; "
             f"commit {report['machine']['commit']}. Diameter estimated unless stated"
             + (f"; input gamma {args.gamma:g} for every image" if args.gamma != 1.0 else "")
             + ("; networks in bfloat16 mixed precision." if args.precision == "bfloat16" else "."), "",
             "| model (schema) | subset | images | AP@0.5 | AP@0.75 | Kaggle score | AP@0.5 pooled |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, result in report["models"].items():
        subsets = [("all", result["overall"]), *result["per_modality"].items(),
                   ("all, true diameter given", result["overall_true_diameter"])]
        if "overall_augmented" in result:
            subsets.append(("all, test-time augmentation (flips)", result["overall_augmented"]))
        if "overall_without_contacts" in result:
            subsets.append(("all, contact_weight 0 (deep watershed post-processing)",
                            result["overall_without_contacts"]))
        if "overall_without_object_filter" in result:
            subsets.append(("all, without the object filter", result["overall_without_object_filter"]))
        for subset, s in subsets:
            lines.append(f"| {name} ({result['schema']}) | {subset} | {s['images']} | {s['ap50']:.3f} | "
                         f"{s['ap75']:.3f} | {s['kaggle']:.3f} | {s['ap50_pooled']:.3f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
