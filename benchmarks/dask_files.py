"""Images per second with ``cytolens segment --dask``: 1 vs 2 local Dask workers, same files, same run.

Segments ``--images`` synthetic 256x256 fluorescence images (``nuclei_fast``, diameter estimated)
through :func:`cytolens.distributed.segment_files_on_dask` on a ``LocalCluster`` of 1 and then 2
worker processes (one thread each). Each cluster first segments one image per worker (model load,
not timed); the timed batch writes into a fresh folder. The outputs of both runs are compared byte
for byte.

Usage: python benchmarks/dask_files.py [--images 16]
Writes benchmarks/results/dask_files.{md,csv}.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "nuclei_fast"


def main() -> None:
    from distributed import Client

    from cytolens.data.synthetic import synthetic_nuclei
    from cytolens.distributed import local_cluster, segment_files_on_dask
    from cytolens.io import write_image
    from cytolens.segment_files import SegmentSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dask_files_"))
    (tmp / "in").mkdir()
    files = [write_image(tmp / "in" / f"img{i:03d}.tif", synthetic_nuclei((256, 256), 30, seed=i)[0])
             for i in range(args.images)]
    rows = []
    for workers in (1, 2):
        with local_cluster(workers) as cluster, \
                Client(cluster) as client:
            warm = tmp / f"warm{workers}"
            warm.mkdir()
            list(segment_files_on_dask(files[:workers], warm, MODEL, SegmentSettings(), address=client))
            out = tmp / f"out{workers}"
            out.mkdir()
            start = time.perf_counter()
            results = list(segment_files_on_dask(files, out, MODEL, SegmentSettings(), address=client))
            elapsed = time.perf_counter() - start
        assert all(info is not None for _, info, _ in results)
        rows.append({"workers": workers, "images": len(files), "seconds": round(elapsed, 2),
                     "images_per_s": round(len(files) / elapsed, 3)})
        print(rows[-1])
    same = all((tmp / "out1" / p.name).read_bytes() == p.read_bytes() for p in (tmp / "out2").iterdir())
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "dask_files.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# dask_files", "", f"`python benchmarks/dask_files.py --images {args.images}`: {args.images} synthetic "
             f"256x256 images, model {MODEL}, diameter estimated, LocalCluster of N worker processes x 1 thread.", "",
             f"Machine: {json.dumps(machine())}", "", "| workers | images | seconds | images/s |", "|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['images']} | {r['seconds']} | {r['images_per_s']} |" for r in rows]
    lines += ["", f"Speed-up 2 vs 1 workers: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}x; "
              f"outputs of the two runs byte-identical: {same}."]
    (RESULTS / "dask_files.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
