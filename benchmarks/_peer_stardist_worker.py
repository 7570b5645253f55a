"""StarDist side of benchmarks/peers_dsb.py: train from scratch, tune thresholds, predict.

Runs in StarDist's own virtual environment (TensorFlow, stardist, csbdeep; no cytolens),
started by ``peers_dsb.py``, which prepares the data and scores the predictions. Everything
this script sees is already at the model scale (median nucleus diameter 20 px, percentile
normalized, 3 channels), so it holds no preprocessing of its own.

Inputs (``--data``): ``train.npz`` (training images, padded to at least one patch),
``val_padded.npz`` (the same for StarDist's per-epoch validation loss), ``val.npz``
(unpadded, for ``optimize_thresholds``) and ``predict_<split>.npz``. Each holds
``image_<i>`` (Y, X, 3) float32 and, except the predict files, ``labels_<i>`` (Y, X) int32; the
predict files hold ``shape_<i>``, the original image size, instead.

Training is resumable: ``progress.json`` in the model folder counts the epochs done, and a
cut-off run continues from ``weights_now.h5`` (the optimizer state restarts). Outputs:
``<out>/pred_<split>.npz`` (``labels_<i>`` at model scale, ``original_<i>``: the same polygons
rendered at the original size) and ``<out>/stardist_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def say(message: str) -> None:
    """One line for the benchmark log (the parent keeps lines with ``[stardist]``); a fresh line, since
    Keras' progress bar may not have ended its own."""
    print(f"\n[stardist] {message}", flush=True)


def load_pairs(path: Path, with_labels: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(path) as archive:
        count = sum(key.startswith("image_") for key in archive.files)
        images = [archive[f"image_{i}"] for i in range(count)]
        labels = [archive[f"labels_{i}"] for i in range(count)] if with_labels else []
    return images, labels


def flip_rotate_augment(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The augmentation of StarDist's 2D training example: a random 90° rotation and flip,
    a random intensity scale (0.6–2) and shift (±0.2), and a little Gaussian noise."""
    turns = np.random.randint(4)
    image, labels = np.rot90(image, turns, axes=(0, 1)), np.rot90(labels, turns, axes=(0, 1))
    if np.random.rand() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image = image * np.random.uniform(0.6, 2.0) + np.random.uniform(-0.2, 0.2)
    image = image + np.random.normal(0, 0.02 * np.random.rand(), image.shape)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels)


def read_progress(model_dir: Path) -> dict:
    path = model_dir / "progress.json"
    return json.loads(path.read_text()) if path.exists() else {"epochs_done": 0, "train_seconds": 0.0, "history": []}


def write_progress(model_dir: Path, progress: dict) -> None:
    temporary = model_dir / "progress.json.tmp"
    temporary.write_text(json.dumps(progress, indent=1) + "\n")
    os.replace(temporary, model_dir / "progress.json")


def make_progress_callback(model_dir: Path, progress: dict, total_epochs: int, steps_per_epoch: int):
    """A Keras callback that records each finished epoch (losses, time) in progress.json."""
    from csbdeep.utils.tf import keras_import

    Callback = keras_import("callbacks", "Callback")

    class ProgressCallback(Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()
            self.seconds_before = progress["train_seconds"]

        def on_epoch_end(self, epoch, logs=None):
            progress["epochs_done"] += 1
            progress["train_seconds"] = self.seconds_before + time.perf_counter() - self.started
            record = {"epoch": progress["epochs_done"], **{k: float(v) for k, v in (logs or {}).items()}}
            progress["history"].append(record)
            write_progress(model_dir, progress)
            steps = progress["epochs_done"] * steps_per_epoch
            say(f"epoch {progress['epochs_done']}/{total_epochs} ({steps} steps): loss {record.get('loss', 0):.4f} "
                f"val_loss {record.get('val_loss', float('nan')):.4f}, {progress['train_seconds'] / 60:.1f} min, "
                f"{steps / progress['train_seconds']:.3f} steps/s")

    return ProgressCallback()


def build_or_resume(name: str, basedir: Path, steps: int, steps_per_epoch: int):
    """The StarDist model to train (fresh or resumed) and the epochs still to run."""
    from stardist.models import Config2D, StarDist2D

    model_dir = basedir / name
    progress = read_progress(model_dir)
    steps_per_epoch = min(steps_per_epoch, steps)
    total_epochs = max(1, steps // steps_per_epoch)
    if progress["epochs_done"] and (model_dir / "weights_now.h5").exists():
        model = StarDist2D(None, name=name, basedir=str(basedir))
        model.load_weights("weights_now.h5")
        say(f"resuming after epoch {progress['epochs_done']} (weights_now.h5; optimizer state restarts)")
    else:
        progress = {"epochs_done": 0, "train_seconds": 0.0, "history": []}
        config = Config2D(axes="YXC", n_channel_in=3, n_rays=32, grid=(2, 2), use_gpu=False,
                          train_patch_size=(256, 256), train_batch_size=4, train_epochs=total_epochs,
                          train_steps_per_epoch=steps_per_epoch, train_tensorboard=False)
        model = StarDist2D(config, name=name, basedir=str(basedir))
    progress.update({"total_epochs": total_epochs, "steps_per_epoch": steps_per_epoch,
                     "batch_size": model.config.train_batch_size, "patch_size": list(model.config.train_patch_size)})
    return model, model_dir, progress


def train(args, model, model_dir: Path, progress: dict) -> None:
    from csbdeep.utils.tf import keras_import
    from stardist import fill_label_holes

    remaining = progress["total_epochs"] - progress["epochs_done"]
    if remaining <= 0:
        say(f"training already finished ({progress['epochs_done']} epochs)")
        return
    images, labels = load_pairs(args.data / "train.npz")
    labels = [fill_label_holes(y) for y in labels]  # as StarDist's examples do
    val_images, val_labels = load_pairs(args.data / "val_padded.npz")
    val_labels = [fill_label_holes(y) for y in val_labels]
    say(f"training on {len(images)} images for {remaining} epochs x {progress['steps_per_epoch']} steps "
        f"(batch {progress['batch_size']}, patch {progress['patch_size']})")
    model.prepare_for_training()
    model.callbacks.append(make_progress_callback(model_dir, progress, progress["total_epochs"],
                                                  progress["steps_per_epoch"]))
    checkpoint_type = keras_import("callbacks", "ModelCheckpoint")
    past_val_losses = [h["val_loss"] for h in progress["history"] if "val_loss" in h]
    for callback in model.callbacks:  # a resumed run keeps the best checkpoint of the earlier part
        if isinstance(callback, checkpoint_type) and callback.save_best_only and past_val_losses:
            callback.best = min(past_val_losses)
    write_progress(model_dir, progress)
    model.train(images, labels, validation_data=(val_images, val_labels), augmenter=flip_rotate_augment,
                seed=args.seed + progress["epochs_done"], epochs=remaining,
                steps_per_epoch=progress["steps_per_epoch"])
    progress["finished"] = True
    write_progress(model_dir, progress)


def polygons_at_original_size(details: dict, model_shape: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Render StarDist's polygons at the original image size, as ``predict_instances(scale=...)``
    does: vertices mapped back through the rescaling (pixel centres, as scipy's grid-mode zoom),
    drawn in order of increasing probability so the more confident object wins an overlap."""
    from stardist.geometry import polygons_to_label_coord

    factors = np.array([model_shape[0] / shape[0], model_shape[1] / shape[1]]).reshape(1, 2, 1)
    order = np.argsort(details["prob"], kind="stable")
    coord = (np.asarray(details["coord"])[order] + 0.5) / factors - 0.5
    return polygons_to_label_coord(coord, tuple(int(n) for n in shape)).astype(np.int32)


def load_for_prediction(model_dir: Path, basedir: Path):
    """The trained model with its best weights (or the latest ones of a cut-off run)."""
    from stardist.models import StarDist2D

    model = StarDist2D(None, name=model_dir.name, basedir=str(basedir))  # loads weights_best.h5 when present
    if not (model_dir / "weights_best.h5").exists():
        if not (model_dir / "weights_now.h5").exists():
            sys.exit("no StarDist weights to score: train first")
        model.load_weights("weights_now.h5")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with the prepared .npz files")
    parser.add_argument("--basedir", type=Path, required=True, help="StarDist model folder parent")
    parser.add_argument("--name", required=True, help="StarDist model name (a folder in basedir)")
    parser.add_argument("--steps", type=int, required=True, help="training steps (batches of 4 patches of 256²)")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="StarDist's default: 100")
    parser.add_argument("--predict", nargs="*", default=["test", "val"], help="splits to predict")
    parser.add_argument("--out", type=Path, required=True, help="folder for predictions and the summary")
    parser.add_argument("--no-train", action="store_true", help="only tune thresholds and predict")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import csbdeep
    import stardist
    import tensorflow as tf

    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.basedir / args.name
    if not args.no_train:
        model, model_dir, progress = build_or_resume(args.name, args.basedir, args.steps, args.steps_per_epoch)
        train(args, model, model_dir, progress)
    progress = read_progress(model_dir)
    if not progress["epochs_done"]:
        sys.exit(f"no finished StarDist epoch in {model_dir}: train first")
    model = load_for_prediction(model_dir, args.basedir)

    thresholds_file, weights_file = model_dir / "thresholds.json", model_dir / "weights_best.h5"
    if args.no_train and thresholds_file.exists() and weights_file.exists() \
            and thresholds_file.stat().st_mtime > weights_file.stat().st_mtime:
        thresholds, tune_seconds = dict(model.thresholds._asdict()), None  # loaded with the model
        say(f"thresholds tuned earlier for these weights: {thresholds}")
    else:
        val_images, val_labels = load_pairs(args.data / "val.npz")
        start = time.perf_counter()
        thresholds = model.optimize_thresholds(val_images, val_labels)
        tune_seconds = time.perf_counter() - start
        say(f"optimize_thresholds on {len(val_images)} val images: {thresholds} ({tune_seconds:.0f} s)")

    predict_seconds = {}
    for split in args.predict:
        images, _ = load_pairs(args.data / f"predict_{split}.npz", with_labels=False)
        with np.load(args.data / f"predict_{split}.npz") as archive:
            original_shapes = [tuple(archive[f"shape_{i}"]) for i in range(len(images))]
        start = time.perf_counter()
        predictions = {}
        for i, (image, shape) in enumerate(zip(images, original_shapes)):
            labels, details = model.predict_instances(image, axes="YXC")
            predictions[f"labels_{i}"] = labels.astype(np.int32)
            predictions[f"original_{i}"] = polygons_at_original_size(details, image.shape[:2], shape)
        predict_seconds[split] = time.perf_counter() - start
        np.savez(args.out / f"pred_{split}.npz", **predictions)
        say(f"predicted {len(images)} {split} images in {predict_seconds[split]:.0f} s")

    steps_done = progress["epochs_done"] * progress["steps_per_epoch"]
    summary = {
        "versions": {"stardist": stardist.__version__, "csbdeep": csbdeep.__version__, "tensorflow": tf.__version__,
                     "python": sys.version.split()[0]},
        "model_dir": str(model_dir),
        "config": {k: v for k, v in vars(model.config).items() if isinstance(v, (int, float, str, list, tuple, dict))},
        "epochs_done": progress["epochs_done"], "total_epochs": progress["total_epochs"],
        "steps_per_epoch": progress["steps_per_epoch"], "steps_done": steps_done,
        "steps_planned": progress["total_epochs"] * progress["steps_per_epoch"],
        "finished": bool(progress.get("finished")), "train_seconds": progress["train_seconds"],
        "steps_per_second": steps_done / progress["train_seconds"] if progress["train_seconds"] else None,
        "best_val_loss": min((h["val_loss"] for h in progress["history"] if "val_loss" in h), default=None),
        "history": progress["history"],
        "thresholds": {"prob": float(thresholds["prob"]), "nms": float(thresholds["nms"])},
        "tune_seconds": tune_seconds, "predict_seconds": predict_seconds,
    }
    (args.out / "stardist_summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
