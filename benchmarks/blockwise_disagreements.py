"""Where block-wise and untiled segmentation disagree: stitching, or the network's tiling inside a block?

Reads a run that ``benchmarks/blockwise_large.py --keep FOLDER`` left behind (the Zarr image and the
stitched OME-Zarr labels), recomputes the untiled reference of the regions it lists (the same function,
range and grid), and for every object that does not match at IoU 0.5 looks at the block that owns it:
that block's padded window is segmented again (a) as the block was (tiles of 512 px with blended 64 px
overlaps inside the window) and (b) in one tile covering the whole window (no tiling inside it). If (a)
shows the disagreement and (b) does not, the object comes from the network's tiling inside the block
(the seams of ``predict_tiled``), not from the stitching of blocks. A crop of each is saved (image,
untiled, stitched, block as run, block in one tile).

Usage: python benchmarks/blockwise_disagreements.py FOLDER --size 16000 --block 1024 --overlap 192
    --margin 256 --regions Y0,X0,SIZE [Y0,X0,SIZE ...]
Writes benchmarks/results/blockwise_disagreements_<size>_block<block>.md and crops under
benchmarks/results/blockwise_disagreements/.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine
from blockwise_large import DIAMETER, GRID, MODEL, _untiled_region

RESULTS = Path(__file__).resolve().parent / "results"
PAD = 24


def main() -> None:
    import zarr
    from scipy import ndimage

    from cytolens.api import segment
    from cytolens.distributed import image_intensity_range
    from cytolens.io import write_image
    from cytolens.metrics.segmentation import match
    from cytolens.models import load
    from cytolens.overlay import outline_overlay

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--block", type=int, required=True)
    parser.add_argument("--overlap", type=int, required=True)
    parser.add_argument("--margin", type=int, default=256)
    parser.add_argument("--regions", nargs="+", required=True, help="Y0,X0,SIZE of each region")
    args = parser.parse_args()
    source = args.folder / "image.zarr"
    image = zarr.open_array(str(source), mode="r")
    stitched_all = zarr.open_group(str(args.folder / "labels.ome.zarr"), mode="r")["0"]
    intensity_range = image_intensity_range(source, load(MODEL).meta.get("normalization"), None, args.block)
    crops = RESULTS / "blockwise_disagreements"
    crops.mkdir(parents=True, exist_ok=True)
    rows = []
    for region in args.regions:
        y0, x0, size = map(int, region.split(","))
        window = (y0, y0 + size, x0, x0 + size)
        reference = _untiled_region(str(source), window, args.margin, args.size, intensity_range)
        stitched = np.asarray(stitched_all[y0:y0 + size, x0:x0 + size])
        m = match(reference, stitched, threshold=0.5)
        matched = {p for _, p in m.matched_pairs}
        unmatched = [i for i in np.unique(stitched) if i and i not in matched]
        for label in unmatched:
            cy, cx = (round(c) for c in ndimage.center_of_mass(stitched == label))
            gy, gx = y0 + cy, x0 + cx
            by, bx = gy // args.block * args.block, gx // args.block * args.block
            wy0, wx0 = max(by - args.overlap, 0), max(bx - args.overlap, 0)
            wy1, wx1 = min(by + args.block + args.overlap, args.size), min(bx + args.block + args.overlap, args.size)
            block_image = np.asarray(image[wy0:wy1, wx0:wx1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                as_run = segment(block_image, MODEL, diameter=DIAMETER, intensity_range=intensity_range)
                one_tile = segment(block_image, MODEL, diameter=DIAMETER, intensity_range=intensity_range,
                                   tile_size=-(-max(block_image.shape) // GRID) * GRID)
            ly, lx = gy - wy0, gx - wx0
            box = (slice(max(cy - PAD, 0), cy + PAD), slice(max(cx - PAD, 0), cx + PAD))
            block_box = (slice(box[0].start + y0 - wy0, box[0].stop + y0 - wy0),
                         slice(box[1].start + x0 - wx0, box[1].stop + x0 - wx0))

            def objects(labels: np.ndarray) -> int:
                return len(np.unique(labels)) - (1 if (labels == 0).any() else 0)

            panels = {"untiled": reference[box], "stitched": stitched[box], "block_as_run": as_run[block_box],
                      "block_one_tile": one_tile[block_box]}
            crop = np.asarray(image[y0 + box[0].start:y0 + box[0].stop, x0 + box[1].start:x0 + box[1].stop])
            name = f"{args.size}_b{args.block}_{gy}_{gx}"
            write_image(crops / f"{name}.png", np.concatenate(
                [outline_overlay(crop, labels) for labels in panels.values()], axis=1), overwrite=True)
            agree = {key: bool(match(panels["untiled"], value, threshold=0.5).fp == 0
                               and match(panels["untiled"], value, threshold=0.5).fn == 0)
                     for key, value in panels.items() if key != "untiled"}
            rows.append({"region": region, "object_y": gy, "object_x": gx, "block": f"{by},{bx}",
                         "distance_to_window_edge": int(min(ly, lx, wy1 - wy0 - ly, wx1 - wx0 - lx)),
                         **{f"objects_{k}": objects(v) for k, v in panels.items()},
                         **{f"{k}_agrees_with_untiled": v for k, v in agree.items()}, "crop": f"{name}.png"})
            print(rows[-1], flush=True)
    lines = [f"# blockwise_disagreements ({args.size} x {args.size}, blocks of {args.block})", "",
             (f"`python benchmarks/blockwise_disagreements.py FOLDER --size {args.size} --block {args.block} "
              f"--overlap {args.overlap} --margin {args.margin} --regions {' '.join(args.regions)}` on the run "
              "`blockwise_large.py` kept; each object of the stitched labels unmatched (IoU 0.5) by the untiled "
              f"reference, in a {2 * PAD} px crop around it: objects in the untiled reference, the stitched labels, "
              "the owning block's window segmented as the block was (tiles of 512 px inside it) and in one tile. "
              "'agrees' = every object of the crop matched both ways. Crops (image with outlines, panels in that "
              "order) in `blockwise_disagreements/`."), "",
             f"Machine: {json.dumps(machine())}", ""]
    if rows:
        lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows]
    else:
        lines.append("No unmatched object in these regions.")
    out = RESULTS / f"blockwise_disagreements_{args.size}_block{args.block}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
