"""How much a model's AP@0.5 on the stained (H&E-like) DSB2018 images moves when their stain changes.

Each colour image of a split is segmented as a user would (``cytolens.segment(image, model)``,
diameter estimated, object filter on), as it is and after the HED stain jitter that training
uses as augmentation (:func:`cytolens.train.sampler.stain_jitter`: the
haematoxylin, eosin and DAB concentrations each scaled by U(1 − s, 1 + s) and shifted by
U(−s, s) / 10) at each strength s, ``--draws`` seeded draws per image and strength. A model
that has learned nuclei rather than the stains of its training images keeps its AP as s grows.
On the train split this shows robustness around stains the network was trained on; on val (the
default) around stains it has not seen, the case of a user's slides.

Usage: python benchmarks/stain_robustness_dsb.py [--model nuclei] [--split val|train|test]
       [--strengths 0.1 0.2 0.3] [--draws 3] [--limit N]
Writes benchmarks/results/stain_robustness_dsb_<split>_<model>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from segmentation_dsb import DATA, MODALITY_NAMES, RESULTS, ROOT, SPLIT, score_image  # noqa: E402

import cytolens  # noqa: E402
from cytolens.io import read_image  # noqa: E402
from cytolens.models import load  # noqa: E402
from cytolens.train.sampler import stain_jitter  # noqa: E402


def jittered_rgb(image: np.ndarray, strength: float, draw: int) -> np.ndarray:
    """``(Y, X, 3)`` RGB in [0, 1] after one seeded stain jitter (the same draw for every model)."""
    rng = np.random.default_rng([draw, round(strength * 1000)])
    return np.clip(np.moveaxis(stain_jitter(np.moveaxis(image, -1, 0), rng, strength), 0, -1), 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--split", choices=["val", "train", "test"], default="val")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="only the first N colour images")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"DSB2018 data not found at {DATA}")
    package = load(args.model)
    modality = pd.read_csv(DATA / "index.csv").set_index("id")["modality"].map(MODALITY_NAMES)
    ids = [i for i in json.loads(SPLIT.read_text())[args.split] if modality[i].startswith("stained")][: args.limit]
    rows = []
    for image_id in ids:
        image = read_image(DATA / "images" / f"{image_id}.tif")[..., :3].astype(np.float32) / 255
        truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
        rows.append({"id": image_id, "strength": 0.0, "draw": 0,
                     "ap50": score_image(truth, cytolens.segment(image, package))["ap50"]})
        for strength in args.strengths:
            for draw in range(args.draws):
                labels = cytolens.segment(jittered_rgb(image, strength, draw), package)
                rows.append({"id": image_id, "strength": strength, "draw": draw,
                             "ap50": score_image(truth, labels)["ap50"]})
    table = pd.DataFrame(rows)
    per_image = table.groupby(["strength", "id"])["ap50"].agg(["mean", "min"])
    plain = per_image.loc[0.0, "mean"]
    summary = []
    for strength, group in per_image.groupby(level="strength"):
        means = group["mean"].droplevel("strength")
        summary.append({"strength": strength, "ap50": float(means.mean()),
                        "worst_draw_ap50": float(group["min"].mean()),
                        "images_down_by_0.1": int(((plain - means) > 0.1).sum())})
    name = Path(args.model).name
    stem = RESULTS / f"stain_robustness_dsb_{args.split}_{name}"
    report = {"model": args.model, "data": f"DSB2018 stage1_train {args.split} split, its {len(ids)} stained "
              f"(colour) images ({SPLIT.relative_to(ROOT)})", "draws": args.draws, "machine": machine(),
              "summary": summary}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Stain robustness of `{args.model}` — {report['data']}", "",
             "AP@0.5 per image (diameter estimated, object filter on), averaged over images, after HED stain "
             f"jitter of each strength ({args.draws} seeded draws per image; strength 0 = the images as they are). "
             f"Machine: {report['machine']['cpu']}, commit {report['machine']['commit']}. "
             "Script: `benchmarks/stain_robustness_dsb.py`.", "",
             "| stain jitter strength | AP@0.5 (mean of draws) | AP@0.5 (worst draw per image) | "
             "images whose AP@0.5 falls by > 0.1 |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['strength']:g} | {r['ap50']:.3f} | {r['worst_draw_ap50']:.3f} | {r['images_down_by_0.1']} of "
              f"{len(ids)} |" for r in summary]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
