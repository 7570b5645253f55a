"""How fast the training loop's crop sampler makes augmented batches (one process, one thread).

On a lent GPU the sampler's worker processes, not the GPU, set the pace of a nuclei run
(training/device/README.md: ~49 ms per step of 16 crops with 14 workers on an H200), so
crops per second per process is what bounds a GPU training minute.

Data: the first 60 train images of training/nuclei/split.json (DSB2018 stage1_train), the
bundled `nuclei` recipe's augmentation (training/nuclei_gpu/contact.yaml: zoom 0.7–1.4,
flips, rotations, stain, gamma, blur, intensity), contact watershed targets, 16 crops of 256².

Usage: python benchmarks/training_crops_speed.py [--batches 40] [--tag NAME]
Appends a row to benchmarks/results/training_crops_speed.md (the tag names the code measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from segmentation_dsb import DATA, RESULTS, SPLIT  # noqa: E402

from cytolens.io import read_image  # noqa: E402
from cytolens.tasks.segmentation.training import prepare_sample, target_kind  # noqa: E402
from cytolens.train.sampler import Augmentation, CropSampler  # noqa: E402

SCHEMA = "contact_watershed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"DSB2018 data not found at {DATA}")
    torch.set_num_threads(1)  # as in a DataLoader worker
    ids = json.loads(SPLIT.read_text())["train"][:60]
    samples = [prepare_sample(read_image(DATA / "images" / f"{i}.tif"),
                              read_image(DATA / "labels_lopuhin_fixed" / f"{i}.tif"), SCHEMA, 20.0) for i in ids]
    augmentation = Augmentation(scale_range=(0.7, 1.4), intensity=0.25, gamma=0.4, blur=0.5, stain=0.05)
    sampler = CropSampler(samples, crop_size=256, batch_size=16, steps_per_epoch=args.batches,
                          augmentation=augmentation, targets=target_kind(SCHEMA), seed=0)
    sampler.batch_at(0, 0)  # warm-up
    start = time.perf_counter()
    for step in range(args.batches):
        sampler.batch_at(1, step)
    seconds = time.perf_counter() - start
    per_batch_ms = 1000 * seconds / args.batches
    info = machine()
    row = (f"| {args.tag or info['commit']} | {info['commit']} | {info['cpu']} | {args.batches} | "
           f"{per_batch_ms:.0f} | {16 * args.batches / seconds:.0f} |")
    out = RESULTS / "training_crops_speed.md"
    if not out.exists():
        out.write_text("# Training crop sampler speed (one process, one thread; batches of 16 crops of 256²)\n\n"
                       "Written by benchmarks/training_crops_speed.py; rows measured on one machine in one sitting "
                       "compare code, not machines.\n\n"
                       "| code | commit | CPU | batches | ms per batch | crops per second |\n"
                       "| --- | --- | --- | --- | --- | --- |\n")
    with out.open("a") as handle:
        handle.write(row + "\n")
    print(row)


if __name__ == "__main__":
    main()
