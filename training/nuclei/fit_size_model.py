"""Fit the size model of a segmentation package on its training split; score it on its val split.

Usage: python training/nuclei/fit_size_model.py [PACKAGE] [CONFIG] [MAX_TRAIN_IMAGES]
(defaults: the bundled nuclei package, its recipe training/nuclei_gpu/config.yaml, all train images;
a smaller MAX_TRAIN_IMAGES takes an evenly spaced subset of the sorted train ids)

Writes PACKAGE/size_model.json and records the validation error in model.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cytolens.io import read_image
from cytolens.models import load, update_meta
from cytolens.tasks.segmentation.size_model import fit_size_model, style_of
from cytolens.tasks.segmentation.training import median_diameter, model_input
from cytolens.train.config import load_config
from cytolens.train.splits import load_split

HERE = Path(__file__).parent


def main() -> None:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "src/cytolens/models/bundled/nuclei"
    config = load_config(sys.argv[2] if len(sys.argv) > 2 else HERE.parent / "nuclei_gpu" / "config.yaml")
    package = load(package_dir)
    split = load_split(config.data.split_file)
    norm = config.normalization

    def pairs(ids):
        for i in ids:
            image = model_input(read_image(config.data.images / f"{i}.tif"), norm)
            yield image, median_diameter(read_image(config.data.labels / f"{i}.tif"))

    train_ids = split["train"]
    if len(sys.argv) > 3:
        train_ids = train_ids[:: max(1, len(train_ids) // int(sys.argv[3]))]
    train = list(pairs(train_ids))
    size_model = fit_size_model(package.network, [p[0] for p in train], [p[1] for p in train], seed=config.seed)
    errors = []
    for image, diameter in pairs(split["val"]):
        predicted = float(size_model.predict(style_of(package.network, image))[0])
        errors.append(abs(np.log(predicted / diameter)))
    errors = np.asarray(errors)
    scores = {"train_images": len(train), "val_images": len(errors), "median_abs_log_error": float(np.median(errors)),
              "within_20_percent": float(np.mean(errors < np.log(1.2))), "alpha": size_model.alpha}
    size_model.save(package_dir / "size_model.json")
    update_meta(package_dir, lambda meta: meta.setdefault("training", {}).update(size_model=scores))
    print(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
