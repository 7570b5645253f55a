"""How large images' diameter estimate depends on its crop side: four 768² windows (the default) or 512².

An image over 1536 px a side has its diameter estimated on its four windows with the most
contrast (``inference.ESTIMATE_CROP``): a style pass and a first network pass + watershed on
each. Smaller windows cost less (``segment_profile.py``: the estimate is about a third of a
2048² call); this script checks what they do to the estimate itself, on synthetic 2048²
fluorescence images with nuclei of three size ranges (the true median diameter from the true
labels, the same image density as ``segmentation_speed.py``), with the bundled model.

Usage: python benchmarks/estimate_crops.py [--model nuclei] [--crops 768 512]
Writes benchmarks/results/estimate_crops.{md,json}. The 2 cores are shared: times are ratios
within this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from cytolens.data.synthetic import synthetic_nuclei  # noqa: E402
from cytolens.models import load  # noqa: E402
from cytolens.tasks.segmentation import inference  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIDE = 2048
#: (smallest, largest) nucleus diameters of each synthetic image
SIZES = ((8.0, 16.0), (12.0, 32.0), (28.0, 56.0))


def true_median_diameter(labels: np.ndarray) -> float:
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--crops", type=int, nargs="+", default=[768, 512])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    package = load(args.model)
    rows = []
    default_crop = inference.ESTIMATE_CROP
    for low, high in SIZES:
        mean_diameter = (low + high) / 2
        count = int(80 * (SIDE / 512) ** 2 * (20.0 / mean_diameter) ** 2)
        image, truth = synthetic_nuclei(shape=(SIDE, SIDE), n_nuclei=count, diameter_range=(low, high), seed=int(low))
        truth_diameter = true_median_diameter(truth)
        for crop in args.crops:
            inference.ESTIMATE_CROP = crop
            try:
                start = time.perf_counter()
                estimate = inference.estimate_diameter(package, image)
                seconds = time.perf_counter() - start
            finally:
                inference.ESTIMATE_CROP = default_crop
            rows.append({"sizes": f"{low:g}-{high:g}", "nuclei": int(truth.max()), "true_median": truth_diameter,
                         "crop": crop, "estimate": estimate, "seconds": seconds})
            print(rows[-1], flush=True)
    info = machine()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "estimate_crops.json").write_text(json.dumps({"machine": info, "model": args.model,
                                                                  "rows": rows}, indent=1))
    lines = [f"# Diameter estimate of {SIDE}² images on four windows of each side ({args.model})", "",
             (f"Machine: {info['cpu']}, {info['cores']} cores shared with other jobs (seconds are noisy; compare "
              f"within a row group), 1 torch thread, torch {info['torch']}, commit {info['commit']}. Synthetic "
              "fluorescence nuclei (`cytolens.data.synthetic.synthetic_nuclei`), 80 per 512² at 20 px. Script: "
              "`benchmarks/estimate_crops.py`."), "",
             "| nucleus diameters | nuclei | true median px | window | estimate px | estimate / truth | seconds | "
             "time / 768² windows |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        base = next(r for r in rows if r["sizes"] == row["sizes"] and r["crop"] == args.crops[0])
        lines.append(f"| {row['sizes']} | {row['nuclei']} | {row['true_median']:.1f} | {row['crop']}² | "
                     f"{row['estimate']:.1f} | {row['estimate'] / row['true_median']:.3f} | {row['seconds']:.1f} | "
                     f"{row['seconds'] / base['seconds']:.2f}× |")
    (args.results / "estimate_crops.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
