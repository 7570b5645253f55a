"""Cellpose side of benchmarks/segmentation_cells.py: train Cellpose 3 from scratch for a time budget, predict.

Runs in Cellpose's own virtual environment (``/work/shared/PEERS.md``: ``pip install torch==2.13.0
"cellpose<4"``; no cytolens there). Cellpose's pretrained weights download at run time, which
fails offline, so the network (CPnet, ``nchan=2``, ``diam_mean=30`` like our ``target_diameter``)
starts from random weights and trains on the same Usiigaci training sets as ``cells``, with
Cellpose's own defaults (AdamW, lr 0.005, batch 8, 224² crops, its rescaling to ``diam_mean``
and its augmentation).

``train_seg`` has no time budget, so calibration runs on the same data (1 and 4 epochs, whose
difference leaves out the set-up; flows are computed once beforehand) measure the seconds per
epoch first, and the real run gets ``n_epochs = minutes * 60 / seconds_per_epoch`` (Cellpose's
learning-rate schedule then runs to its end, as it would for a user).

Inputs: ``--images``/``--labels`` folders, ``--split`` (JSON with ``train`` and ``test`` stems).
Outputs in ``--out``: ``<stem>_mean.tif`` (diameter = the training sets' mean, what a user of a
from-scratch model has), ``<stem>_true.tif`` (diameter = the truth's median, an oracle), and
``cellpose_summary.json`` (model path, epochs, training seconds, seconds per test image).
``--predict-only`` predicts again with the model trained earlier (for speed in the same run as ours).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile


def say(message: str) -> None:
    print(f"[cellpose] {message}", flush=True)


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the objects (Cellpose's own ``diameters`` helper)."""
    from cellpose.utils import diameters

    return float(diameters(labels)[0])


def train(images, labels, epochs: int, save_path: Path, name: str) -> str:
    """Train a fresh CPnet for ``epochs``; returns the path of the saved model."""
    from cellpose import models
    from cellpose import train as cp_train

    model = models.CellposeModel(gpu=False, pretrained_model=None, model_type=None, nchan=2, diam_mean=30.0)
    model_path, _, _ = cp_train.train_seg(model.net, train_data=images, train_labels=labels, channels=[0, 0],
                                          normalize=True, n_epochs=epochs, save_path=str(save_path),
                                          model_name=name, min_train_masks=1)
    return model_path


def predict(model_path: Path, images: Path, labels: Path, stems: list[str], mean_diameter: float, out: Path) -> dict:
    """Labels for each test image at two diameters; returns seconds per image and diameter kind."""
    from cellpose import models

    model = models.CellposeModel(gpu=False, pretrained_model=str(model_path))
    seconds = {}
    for stem in stems:
        image = tifffile.imread(images / f"{stem}.tif").astype(np.float32)
        truth = tifffile.imread(labels / f"{stem}.tif")
        for kind, diameter in (("mean", mean_diameter), ("true", median_diameter(truth))):
            begin = time.perf_counter()
            masks = model.eval(image, channels=[0, 0], diameter=diameter)[0]
            seconds[f"{stem}_{kind}"] = time.perf_counter() - begin
            tifffile.imwrite(out / f"{stem}_{kind}.tif", masks.astype(np.int32))
        say(f"{stem}: predicted")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=40.0, help="training budget (wall minutes)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--predict-only", action="store_true",
                        help="reuse the model trained earlier in --out (its summary says which); predict again")
    args = parser.parse_args()

    import torch
    from cellpose import dynamics
    from cellpose import io as cellpose_io

    cellpose_io.logger_setup()  # Cellpose's own per-epoch lines (loss, time) in the log
    torch.manual_seed(0)
    np.random.seed(0)
    split = json.loads(args.split.read_text())
    summary_path = args.out / "cellpose_summary.json"
    if args.predict_only:
        summary = json.loads(summary_path.read_text())
    else:
        train_images = [tifffile.imread(args.images / f"{s}.tif").astype(np.float32) for s in split["train"]]
        train_labels = [tifffile.imread(args.labels / f"{s}.tif").astype(np.int32) for s in split["train"]]
        args.out.mkdir(parents=True, exist_ok=True)
        # flows once, outside every timed run (train_seg takes precomputed flows in place of labels)
        train_flows = dynamics.labels_to_flows([lab.copy() for lab in train_labels], device=torch.device("cpu"))
        calibration = {}
        for count in (1, 4):  # the difference leaves out train_seg's set-up (normalization, diameters)
            start = time.perf_counter()
            train(train_images, train_flows, count, args.out, "calibration")
            calibration[count] = time.perf_counter() - start
        seconds_per_epoch = (calibration[4] - calibration[1]) / 3
        epochs = max(2, int(args.minutes * 60 / seconds_per_epoch))
        say(f"{seconds_per_epoch:.1f} s per epoch ({len(train_images)} images) -> {epochs} epochs "
            f"in {args.minutes} min")
        start = time.perf_counter()
        model_path = train(train_images, train_flows, epochs, args.out, "cellpose_usiigaci")
        summary = {"model": str(model_path), "epochs": epochs, "train_seconds": time.perf_counter() - start,
                   "seconds_per_epoch": seconds_per_epoch,
                   "train_mean_diameter": float(np.mean([median_diameter(lab) for lab in train_labels]))}
    summary["predict_seconds"] = predict(Path(summary["model"]), args.images, args.labels, split["test"],
                                         summary["train_mean_diameter"], args.out)
    summary["torch_threads"] = torch.get_num_threads()
    summary_path.write_text(json.dumps(summary, indent=1))
    say(json.dumps({k: v for k, v in summary.items() if k != "predict_seconds"}))


if __name__ == "__main__":
    main()
