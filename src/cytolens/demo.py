"""The demo: segment a realistic synthetic image, score it, write outputs and an overlay.

>>> from cytolens.demo import run_demo
>>> result = run_demo("cytolens-demo")  # doctest: +SKIP
>>> result["ap50"] > 0.8  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytolens.io import write_image, write_labels, write_table
from cytolens.overlay import write_overlay


def run_demo(output: str | Path, seed: int = 0, overwrite: bool = True) -> dict:
    """Make a synthetic image with truth, segment it with ``nuclei``, write files, return scores."""
    from cytolens.api import measure, segment
    from cytolens.data.synthetic import synthetic_nuclei
    from cytolens.metrics import match

    output = Path(output)
    image, truth = synthetic_nuclei(shape=(512, 512), seed=seed)
    labels = segment(image)
    scores = match(truth.astype(np.int64), labels.astype(np.int64), threshold=0.5)
    files = {
        "image": output / "demo_image.tif",
        "truth": output / "demo_truth_labels.tif",
        "labels": output / "demo_labels.tif",
        "table": output / "demo_cells.csv",
        "overlay": output / "demo_overlay.png",
    }
    write_image(files["image"], image, overwrite=overwrite)
    write_labels(files["truth"], truth, overwrite=overwrite)
    write_labels(files["labels"], labels, overwrite=overwrite)
    write_table(files["table"], measure(labels, image), overwrite=overwrite)

    write_overlay(files["overlay"], image, labels, overwrite=overwrite)
    return {"n_true": int(truth.max()), "n_pred": int(labels.max()), "ap50": scores.average_precision,
            "precision": scores.precision, "recall": scores.recall, "files": {k: str(v) for k, v in files.items()}}
