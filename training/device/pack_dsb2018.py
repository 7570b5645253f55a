"""Pack DSB2018 stage1_train small enough to travel to a lent GPU machine (≤ 64 MiB).

The shared data stores every image as 4-channel TIFF; most are gray with R = G = B
and a constant alpha. This writes each train/val image of ``split.json`` (test images
stay behind: nothing on the GPU machine may see them) as an LZMA-compressed TIFF
holding exactly what :func:`cytolens.io.read_image` returns for it (alpha dropped,
gray as one channel), so the model sees identical inputs, and copies the fixed labels
and ``index.csv`` unchanged. The pack is a scratch copy for the GPU session only: it
lives in a git-ignored folder and is never committed.

    python training/device/pack_dsb2018.py ../shared/data/dsb2018_stage1_train \
        training/nuclei/split.json .device_data/dsb2018
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import tifffile

from cytolens.io import read_image
from cytolens.tasks.segmentation.training import model_input


def pack(source: Path, split_file: Path, target: Path) -> None:
    split = json.loads(split_file.read_text())
    keep = set(split["train"]) | set(split["val"])
    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "labels_lopuhin_fixed").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in (source / "images").glob("*.tif") if p.stem in keep):
        image = read_image(path)
        if image.ndim == 3 and np.all(image == image[..., :1]):
            image = image[..., 0]
        tifffile.imwrite(target / "images" / path.name, image, compression="lzma", predictor=True)
        check = read_image(target / "images" / path.name)
        if not np.array_equal(model_input(check), model_input(read_image(path))):
            raise SystemExit(f"packed {path.name} would give the model a different input")
        shutil.copy(source / "labels_lopuhin_fixed" / path.name, target / "labels_lopuhin_fixed" / path.name)
    shutil.copy(source / "index.csv", target / "index.csv")


if __name__ == "__main__":
    pack(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
