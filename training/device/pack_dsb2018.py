"""Pack DSB2018 stage1_train small enough to travel to a lent GPU machine (≤ 64 MiB).

The shared data stores every image as 4-channel TIFF; most are gray with R = G = B
and a constant alpha. This writes each train/val image of ``split.json`` (test images
stay behind: nothing on the GPU machine may see them) as an LZMA-compressed TIFF
holding exactly what :func:`cytolens.io.read_image` returns for it (alpha dropped,
gray as one channel), so the model sees identical inputs, and copies the fixed labels
and ``index.csv`` unchanged. The pack is a scratch copy for the GPU session only: it
lives in a git-ignored folder and is never committed.

    python training/device/pack_dsb2018.py ../shared/data/dsb2018_stage1_train \
        training/nuclei/split.json .device_data/dsb2018 [--parts 2]

With ``--parts N`` the images are dealt into N folders ``dsb2018_part1`` … of about equal
size (each with its labels and ``index.csv``), to be carried one call at a time when the
working tree plus the whole pack would exceed the device's 64 MiB; copying the parts
into one folder there gives back the single pack (see README.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def split_pack(packed: Path, parts: int) -> list[Path]:
    """Deal a pack's images (largest first, each to the lightest part) into ``parts`` sibling folders."""
    images = sorted((packed / "images").glob("*.tif"), key=lambda p: p.stat().st_size, reverse=True)
    folders = [packed.with_name(f"{packed.name}_part{k + 1}") for k in range(parts)]
    sizes = [0] * parts
    for folder in folders:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels_lopuhin_fixed").mkdir(parents=True, exist_ok=True)
        shutil.copy(packed / "index.csv", folder / "index.csv")
    for image in images:
        k = sizes.index(min(sizes))
        label = packed / "labels_lopuhin_fixed" / image.name
        shutil.copy(image, folders[k] / "images" / image.name)
        shutil.copy(label, folders[k] / "labels_lopuhin_fixed" / image.name)
        sizes[k] += image.stat().st_size + label.stat().st_size
    for folder, size in zip(folders, sizes):
        print(f"{folder}: {size / 2**20:.1f} MiB")
    return folders


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("split_file", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--parts", type=int, default=1)
    args = parser.parse_args()
    if not (args.target / "index.csv").is_file():  # packing takes minutes; an existing pack is reused
        pack(args.source, args.split_file, args.target)
    if args.parts > 1:
        split_pack(args.target, args.parts)
