"""Write the synthetic 3D training data of the `nuclei3d-synthetic` recipe (issue 27).

Volumes of touching nuclei from ``cytolens.data.synthetic3d.synthetic_nuclei_3d`` with the settings
``benchmarks/segmentation_3d.py`` scores (32 x 128 x 128 voxels, 24 nuclei asked, diameters 14-24 px,
anisotropy 2, 40 % pushed against a neighbour), from seeds that benchmark never uses:

* ``volumes/train`` seeds 0-29, ``volumes/val`` seeds 30-34: ``(Z, Y, X)`` TIFFs (image + labels) for the
  native 3D model (``config_native.yaml``);
* ``planes/train`` and ``planes/val``: every Z plane of the same volumes as a 2D image with its 2D labels,
  for the 2D model used with ``volume_method="slices"`` (``config_slices.yaml``).

The benchmark scores seeds 100-102. Usage: ``python make_data.py [OUT]`` (default ``../../trained/nuclei3d-data``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from cytolens.data.synthetic3d import synthetic_nuclei_3d
from cytolens.io import write_image, write_labels

#: the generator settings of benchmarks/segmentation_3d.py's synthetic volumes
VOLUME = {"shape": (32, 128, 128), "n_nuclei": 24, "anisotropy": 2.0}
SEEDS = {"train": range(0, 30), "val": range(30, 35)}


def main(out: Path) -> None:
    for side, seeds in SEEDS.items():
        for seed in seeds:
            image, labels = synthetic_nuclei_3d(seed=seed, **VOLUME)
            stem = f"seed{seed:03d}"
            write_image(out / "volumes" / side / "images" / f"{stem}.tif", image, overwrite=True, axes="ZYX")
            write_labels(out / "volumes" / side / "labels" / f"{stem}.tif", labels, overwrite=True, axes="ZYX")
            for z in range(image.shape[0]):
                write_image(out / "planes" / side / "images" / f"{stem}_z{z:02d}.tif", image[z], overwrite=True)
                write_labels(out / "planes" / side / "labels" / f"{stem}_z{z:02d}.tif", labels[z], overwrite=True)
    print(f"wrote {sum(map(len, SEEDS.values()))} volumes and their planes under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "trained" / "nuclei3d-data")
