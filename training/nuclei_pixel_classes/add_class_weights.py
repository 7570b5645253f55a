"""Record the training class weights in a pixel-classes package trained before they were saved.

Packages trained since cytolens stores ``postprocess.class_weights`` need nothing. For an
older package the weights are recomputed exactly as training computed them (inverse
class frequencies over the train split, at the model scale) and written to its model.json,
so post-processing can divide them out (see ``pixel_classes.postprocess``).

Usage: python training/nuclei_pixel_classes/add_class_weights.py [PACKAGE] [CONFIG]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cytolens.tasks.segmentation.training import pixel_class_weights, prepare_data
from cytolens.train.config import load_config

HERE = Path(__file__).parent


def main() -> None:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "src/cytolens/models/bundled/nuclei_pixel_classes"
    config = load_config(sys.argv[2] if len(sys.argv) > 2 else HERE / "config.yaml")
    meta = json.loads((package_dir / "model.json").read_text())
    if meta["schema"] != "pixel_classes":
        sys.exit(f"{package_dir} is a {meta['schema']} package, not pixel_classes")
    data = prepare_data(config)
    weights = [float(w) for w in pixel_class_weights(data.side("train"))]
    meta["postprocess"]["class_weights"] = weights
    (package_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("class weights (background, interior, edge):", weights)


if __name__ == "__main__":
    main()
