"""What fitted tiles save: ``cytolens.segment`` with tiles shrunk to fit vs fixed 512² tiles, same run.

Tiled inference cuts an image into overlapping tiles of at most ``tile_size`` (512) pixels.
Until commit f4f6268 every tile had that size, so a 520×696 camera frame took four 512×512
tiles, 2.9× its own pixels. ``cytolens.preprocess.fitted_tile`` now shrinks the tiles to the
smallest side (a multiple of 16) that needs no more of them. This script times the whole
``segment`` call (diameter given, so only tiling differs) both ways, alternating, best of
``--repeats``, on synthetic fluorescence nuclei of a few common frame sizes, and scores both
label images against the truth and against each other (AP@0.5).

Usage: python benchmarks/tiling_speed.py [--repeats 3] [--model nuclei]
Writes benchmarks/results/tiling_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from segmentation_speed import DIAMETER, speed_image  # noqa: E402

import cytolens  # noqa: E402
from cytolens import preprocess  # noqa: E402
from cytolens.metrics import match  # noqa: E402
from cytolens.models import load  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = [(520, 696), (1024, 1024), (1040, 1388), (2048, 2048)]
FITTED = preprocess.fitted_tile  # the rule cytolens uses now


def fixed_tile(length: int, tile_size: int, overlap: int, size_divisor: int) -> int:
    """The rule before fitted tiles: the full tile size unless the image side is smaller."""
    return min(tile_size, -(-length // size_divisor) * size_divisor)


def timed_segment(image, package, rule) -> tuple[float, object]:
    preprocess.fitted_tile = rule
    try:
        start = time.perf_counter()
        labels = cytolens.segment(image, package, diameter=DIAMETER)
        return time.perf_counter() - start, labels
    finally:
        preprocess.fitted_tile = FITTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="nuclei")
    args = parser.parse_args()
    package = load(args.model)
    report = {"machine": machine(), "model": args.model, "shapes": []}
    for shape in SHAPES:
        image, truth = speed_image(shape)
        times = {"fixed": [], "fitted": []}
        labels = {}
        for _ in range(args.repeats):  # alternate, so drifts of a shared machine hit both alike
            for name, rule in (("fixed", fixed_tile), ("fitted", FITTED)):
                seconds, labels[name] = timed_segment(image, package, rule)
                times[name].append(seconds)
        row = {"shape": list(shape), "fixed_seconds": min(times["fixed"]), "fitted_seconds": min(times["fitted"]),
               "speedup": min(times["fixed"]) / min(times["fitted"]),
               "fixed_ap50": match(truth, labels["fixed"], 0.5).average_precision,
               "fitted_ap50": match(truth, labels["fitted"], 0.5).average_precision,
               "agreement_ap50": match(labels["fixed"], labels["fitted"], 0.5).average_precision}
        report["shapes"].append(row)
        print(json.dumps(row), flush=True)
    (RESULTS / "tiling_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    m = report["machine"]
    lines = ["# Fitted tiles vs fixed 512² tiles", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), no GPU; "
             f"commit {m['commit']}. Model {args.model}, diameter given ({DIAMETER:g} px, synthetic fluorescence "
             f"nuclei), whole `segment` call, best of {args.repeats} alternating runs. Script: "
             "`benchmarks/tiling_speed.py`.", "",
             "| image | fixed tiles (s) | fitted tiles (s) | speed-up | AP@0.5 fixed / fitted vs truth | "
             "fitted vs fixed AP@0.5 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in report["shapes"]:
        lines.append(f"| {r['shape'][0]}×{r['shape'][1]} | {r['fixed_seconds']:.2f} | {r['fitted_seconds']:.2f} | "
                     f"{r['speedup']:.2f}× | {r['fixed_ap50']:.3f} / {r['fitted_ap50']:.3f} | "
                     f"{r['agreement_ap50']:.3f} |")
    (RESULTS / "tiling_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
