"""Fit a segmentation package's object filter on its *train* split (val and test are never seen).

Usage: python training/nuclei/fit_object_filter.py [PACKAGE] [CONFIG]
(defaults: the bundled nuclei package and its recipe, training/nuclei_gpu/config.yaml;
``cytolens fit-object-filter CONFIG --package PACKAGE`` is the same)

How the filter is fitted: :mod:`cytolens.tasks.segmentation.object_filter_fit`
(gradient-boosted trees on per-object features, threshold by 5-fold cross-validation
grouped by image, written to PACKAGE/object_filter.json with the CV scores in model.json).
The bundled `nuclei` and `nuclei_fast` filters were fitted this way (nuclei_fast with
training/nuclei/config.yaml). Validation scores come from
``benchmarks/segmentation_dsb.py --split val``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cytolens.tasks.segmentation.object_filter_fit import fit_object_filter

HERE = Path(__file__).parent


def main() -> None:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "src/cytolens/models/bundled/nuclei"
    config = sys.argv[2] if len(sys.argv) > 2 else HERE.parent / "nuclei_gpu" / "config.yaml"
    print(json.dumps(fit_object_filter(package_dir, config, progress=True), indent=1))


if __name__ == "__main__":
    main()
