"""Do inference-time tricks lift a nuclei model on the DSB2018 *val* split? (for choosing, never test)

Scores one package four ways, each image at the diameter the package itself estimates:

- ``plain``: the network once at the estimated scale (as ``cytolens.segment`` does);
- ``flips``: network outputs averaged over the four flips (``augment=True``);
- ``two scales``: outputs at the estimated scale and at 1.25× averaged (smaller nuclei
  get more pixels; the network was trained with ±30 % zoom);
- ``ensemble``: the logits of a second package of the same schema averaged in.

All variants go through the package's own post-processing defaults; for a package with an
object filter each is scored a second time with the filter applied to its outputs (``+ filter``;
the filter was fitted on plain outputs). AP@0.5 is averaged per image (see
benchmarks/segmentation_dsb.py for the conventions).

Usage: python benchmarks/inference_variants_dsb.py [--model nuclei] [--partner nuclei_fast]
Writes benchmarks/results/inference_variants_dsb.{json,md}.
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
from _machine import machine  # noqa: E402
from segmentation_dsb import DATA, MODALITY_NAMES, RESULTS, SPLIT, score_image  # noqa: E402

from cytolens.io import read_image  # noqa: E402
from cytolens.models import load  # noqa: E402
from cytolens.tasks.segmentation import inference  # noqa: E402
from cytolens.tasks.segmentation.object_filter import ObjectFilter  # noqa: E402

SECOND_SCALE = 1.25


def outputs_at(package, image_yxc: np.ndarray, prep, diameter: float, zoom: float = 1.0, augment: bool = False):
    """Network outputs at the image's resolution, computed with objects at ``zoom`` × the model's size."""
    scale = float(np.clip(zoom * package.meta["scale"]["target_diameter"] / diameter, 0.1, 10.0))
    return inference.predict_outputs(package, image_yxc, scale, prep, augment=augment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--partner", default="nuclei_fast", help="second package for the ensemble")
    args = parser.parse_args()
    package, partner = load(args.model), load(args.partner)
    if partner.meta["schema"] != package.meta["schema"]:
        sys.exit(f"the ensemble needs two packages of one schema; got {package.meta['schema']} "
                 f"and {partner.meta['schema']}")
    object_filter = (ObjectFilter.from_dict(package.extras["object_filter"])
                     if "object_filter" in package.extras else None)
    ids = json.loads(SPLIT.read_text())["val"]
    modality = pd.read_csv(DATA / "index.csv").set_index("id")["modality"].map(MODALITY_NAMES)
    rows, start = [], time.perf_counter()
    for image_id in ids:
        image_yxc = inference.as_yxc(read_image(DATA / "images" / f"{image_id}.tif"))
        truth = read_image(DATA / "labels_lopuhin_fixed" / f"{image_id}.tif")
        diameter = inference.estimate_diameter(package, image_yxc)
        row = {"id": image_id, "modality": modality[image_id], "diameter": diameter}
        if diameter > 0:
            scale = inference._applied(package.meta["scale"]["target_diameter"] / diameter)
            prep = inference.tile_preparer(package, image_yxc)  # image percentiles: once per package
            plain = outputs_at(package, image_yxc, prep, diameter)
            variants = {
                "plain": plain,
                "flips": outputs_at(package, image_yxc, prep, diameter, augment=True),
                "two scales": (plain + outputs_at(package, image_yxc, prep, diameter, SECOND_SCALE)) / 2,
                "ensemble": (plain + outputs_at(partner, image_yxc, inference.tile_preparer(partner, image_yxc),
                                                diameter)) / 2,
            }
            for name, outputs in variants.items():
                labels = inference.postprocess_outputs(package, outputs, scale)
                row[name] = score_image(truth, labels)["ap50"]
                if object_filter is not None:
                    kept = object_filter.apply(labels, outputs, image_yxc, prep.lo, prep.hi, scale)
                    row[f"{name} + filter"] = score_image(truth, kept)["ap50"]
        rows.append(row)
    table = pd.DataFrame(rows).fillna(0.0)
    names = ["plain", "flips", "two scales", "ensemble"]
    if object_filter is not None:
        names += [f"{name} + filter" for name in names]
    summary = {"all": table[names].mean().to_dict(),
               **{m: g[names].mean().to_dict() for m, g in table.groupby("modality")}}
    report = {"data": f"DSB2018 stage1_train val split ({len(ids)} images, {SPLIT.name})", "model": args.model,
              "partner": args.partner, "metric": "AP@0.5 averaged per image, diameter estimated",
              "ap50": summary, "seconds": time.perf_counter() - start, "machine": machine()}
    (RESULTS / "inference_variants_dsb.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Inference-time variants of `{args.model}` — {report['data']}", "",
             f"AP@0.5 per image, diameter estimated; ensemble partner `{args.partner}`; second scale "
             f"{SECOND_SCALE}×. Machine: {report['machine']['cpu']}, commit {report['machine']['commit']}.", "",
             "| subset | images | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    counts = table.modality.value_counts()
    for subset, scores in summary.items():
        n = len(table) if subset == "all" else counts[subset]
        lines.append(f"| {subset} | {n} | " + " | ".join(f"{scores[k]:.3f}" for k in names) + " |")
    (RESULTS / "inference_variants_dsb.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
