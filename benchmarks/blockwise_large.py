"""Block-wise segmentation of one big synthetic image on Dask vs untiled segmentation, region by region.

Builds a ``--size`` x ``--size`` synthetic fluorescence image (default 16000 x 16000: 256 Mpx)
as a Zarr array, written tile by tile (``synthetic_nuclei`` tiles of 1000 x 1000 with their own
seeds, so the image never has to be in memory), then segments it with
:func:`cytolens.distributed.segment_large_image` (``--block`` core blocks, ``--overlap`` context, a
LocalCluster of ``--workers`` processes x 1 thread, one fixed diameter) into OME-Zarr + table.

Agreement with untiled segmentation, region by region: ``--regions`` windows of ``--region``
pixels, placed on block corners (where four blocks meet: the hardest place for stitching) and
at random, are each segmented untiled (one ``cytolens.segment`` call, one tile, on the region plus a
margin of ``--margin`` pixels, cropped back) and matched against the stitched labels in the same window:
AP@0.5 = TP / (TP + FP + FN). Objects cut by the window edge are cut alike in both. Both normalize
intensities alike, once for the whole image: the model's percentiles of the whole image, from the
strided sample an in-memory run takes (``cytolens.distributed.image_intensity_range``), as an untiled
segmentation of the whole image would. And each region's crop starts on the network's pooling grid
of the whole image (multiples of ``GRID`` = 16 px, as the blocks' windows do), as the whole image's
run would see it: a U-Net's output moves when its input is shifted by a fraction of that grid.

Memory: each block task records its worker's peak resident memory (``ru_maxrss``) and the
block's pixels; the table reports the peak per worker. Run also with a smaller ``--block`` to
see the peak follow the block size, not the image size.

Usage: python benchmarks/blockwise_large.py [--size 16000] [--block 2048] [--overlap 128] [--workers 2]
Writes benchmarks/results/blockwise_large_<size>_block<block>_overlap<overlap>.{md,csv}.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "nuclei_fast"
TILE = 1000
DIAMETER = 20.0  # the model's target diameter: no resizing, so the grids below stay aligned
GRID = 16  # the network's input divisor (2 ** depth)


def _write_tile(path: str, y: int, x: int, size: int, seed: int) -> None:
    import zarr

    from cytolens.data.synthetic import synthetic_nuclei

    h, w = min(TILE, size - y), min(TILE, size - x)
    image, _ = synthetic_nuclei((h, w), n_nuclei=max(1, h * w // 1700), diameter_range=(14, 26), seed=seed)
    zarr.open_array(path, mode="r+")[y:y + h, x:x + w] = image


def make_image(path: Path, size: int, client) -> None:
    import zarr

    zarr.create_array(store=str(path), shape=(size, size), chunks=(TILE, TILE), dtype="uint16", overwrite=True)
    corners = [(y, x) for y in range(0, size, TILE) for x in range(0, size, TILE)]
    client.gather([client.submit(_write_tile, str(path), y, x, size, i, pure=False)
                   for i, (y, x) in enumerate(corners)])


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def _untiled_region(source: str, window: tuple, margin: int, size: int, intensity_range: tuple) -> np.ndarray:
    import zarr

    from cytolens.api import segment

    y0, y1, x0, x1 = window
    py0, px0 = (max(start - margin, 0) // GRID * GRID for start in (y0, x0))
    py1, px1 = min(y1 + margin, size), min(x1 + margin, size)
    image = np.asarray(zarr.open_array(source, mode="r")[py0:py1, px0:px1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = segment(image, MODEL, diameter=DIAMETER, tile_size=max(512, -(-max(image.shape) // 16) * 16 + 64),
                         intensity_range=intensity_range)
    return labels[y0 - py0:y1 - py0, x0 - px0:x1 - px0]


def main() -> None:
    import zarr
    from distributed import Client

    from cytolens.distributed import local_cluster, segment_large_image
    from cytolens.metrics.segmentation import match
    from cytolens.segment_files import SegmentSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16000)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--region", type=int, default=768)
    parser.add_argument("--margin", type=int, default=256, help="context around each region for the untiled run")
    parser.add_argument("--keep", type=Path, default=None, help="write the image and results here (else a temp dir)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="blockwise_"))
    folder.mkdir(parents=True, exist_ok=True)
    source, output = folder / "image.zarr", folder / "labels.ome.zarr"
    rng = np.random.default_rng(0)
    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        start = time.perf_counter()
        log(f"writing the {args.size} x {args.size} synthetic image to {source}")
        make_image(source, args.size, client)
        made = time.perf_counter() - start
        log(f"image written in {made:.0f} s; segmenting blocks of {args.block} (overlap {args.overlap})")
        start = time.perf_counter()
        result = segment_large_image(source, output, MODEL, SegmentSettings(diameter=DIAMETER),
                                     block_size=args.block, overlap=args.overlap, address=client, overwrite=True,
                                     progress=lambda done, total: log(f"block {done}/{total} segmented "
                                                                      f"({time.perf_counter() - start:.0f} s)"))
        segmented = time.perf_counter() - start
        log(f"segmented in {segmented:.0f} s: {result.n_objects} objects; intensity range {result.intensity_range}")
        # regions: centred on block corners first, then random
        corners = [(y, x) for y in range(args.block, args.size, args.block) for x in range(args.block, args.size,
                                                                                         args.block)]
        rng.shuffle(corners)
        half = args.region // 2
        centres = corners[:args.regions // 2]
        while len(centres) < args.regions:
            centres.append(tuple(rng.integers(half, args.size - half, 2)))
        windows = [(max(int(y) - half, 0), min(int(y) + half, args.size), max(int(x) - half, 0),
                    min(int(x) + half, args.size)) for y, x in centres]
        log(f"untiled segmentation of {len(windows)} regions")
        untiled = client.gather([client.submit(_untiled_region, str(source), w, args.margin, args.size,
                                               result.intensity_range, pure=False) for w in windows])
    stitched = zarr.open_group(str(output), mode="r")["0"]
    rows = []
    for (y0, y1, x0, x1), reference in zip(windows, untiled):
        mine = np.asarray(stitched[y0:y1, x0:x1])
        m = match(reference, mine, threshold=0.5)
        rows.append({"y0": y0, "x0": x0, "size": y1 - y0, "on_block_corner": (y0 + half) % args.block == 0
                     and (x0 + half) % args.block == 0, "untiled_objects": m.n_true, "blockwise_objects": m.n_pred,
                     "tp": m.tp, "ap50": round(m.tp / max(m.tp + m.fp + m.fn, 1), 4)})
        log(str(rows[-1]))
    workers: dict[int, float] = {}
    for block in result.blocks:
        workers[block["pid"]] = max(workers.get(block["pid"], 0.0), block["peak_rss_mb"])
    window_px = max(b["block_pixels"] for b in result.blocks)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"blockwise_large_{args.size}_block{args.block}_overlap{args.overlap}"
    with open(stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    aps = [r["ap50"] for r in rows]
    lines = [f"# blockwise_large ({args.size} x {args.size})", "",
             (f"`python benchmarks/blockwise_large.py --size {args.size} --block {args.block} --overlap {args.overlap} "
             f"--workers {args.workers} --regions {args.regions} --region {args.region} --margin {args.margin}`; "
             "synthetic nuclei "
             f"(diameters 14-26 px), model {MODEL}, diameter {DIAMETER} given; every block and every untiled "
             f"region normalized with the whole image's intensity range {result.intensity_range} (the model's "
             "percentiles of the whole image's strided sample)."), "",
             f"Machine: {json.dumps(machine())}", "",
             (f"- image written as Zarr in {made:.0f} s; segmented block-wise in {segmented:.0f} s "
             f"({len(result.blocks)} blocks, {result.n_objects} objects, "
             f"{sum(b['conflict_pixels'] for b in result.blocks)} pixels claimed by two blocks' objects)"),
             (f"- AP@0.5 block-wise vs untiled over {len(rows)} regions of {args.region} px: min {min(aps):.4f}, "
             f"mean {np.mean(aps):.4f} (regions on block corners: "
             f"{', '.join(str(r['ap50']) for r in rows if r['on_block_corner'])})"),
             (f"- peak resident memory per worker (MB, ru_maxrss of each worker process over the whole run): "
             f"{', '.join(f'{v:.0f}' for v in sorted(workers.values()))}; block size {args.block} px (core), "
             f"largest padded block {window_px / 1e6:.2f} Mpx; the whole image {args.size ** 2 / 1e6:.0f} Mpx "
             f"({args.size ** 2 * 2 / 2**20:.0f} MiB as uint16)"), "",
             "| y0 | x0 | size | on block corner | untiled objects | block-wise objects | TP | AP@0.5 |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['y0']} | {r['x0']} | {r['size']} | {r['on_block_corner']} | {r['untiled_objects']} | "
              f"{r['blockwise_objects']} | {r['tp']} | {r['ap50']} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
