"""Train and run CARE (csbdeep) or Noise2Void (n2v) in their own venv; imports only that tool (TensorFlow).

    /work/peer-venvs/csbdeep/bin/python benchmarks/_peer_care_worker.py care JOB.json
    /work/peer-venvs/n2v/bin/python benchmarks/_peer_care_worker.py n2v JOB.json

JOB.json: {"train_sources": [...], "train_targets": [...], "val_sources": [...], "out": folder,
"minutes": budget, "threads": 1}. Training stops when the budget of CPU time is spent (a Keras callback);
the validation images are then restored into ``out/<stem>.tif`` and the timings written to
``out/timing.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile


def main() -> None:
    tool, job_path = sys.argv[1], Path(sys.argv[2])
    job = json.loads(job_path.read_text())
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(job.get("threads", 1))
    tf.config.threading.set_inter_op_parallelism_threads(job.get("threads", 1))
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    budget = job["minutes"] * 60

    class TimeLimit(tf.keras.callbacks.Callback):
        """Stop when the process has used ``budget`` seconds of CPU time in training (fair on a shared machine)."""

        def on_train_batch_end(self, batch, logs=None):
            if time.process_time() - self.start > budget:
                self.model.stop_training = True

        def on_train_begin(self, logs=None):
            self.start = time.process_time()

    sources = [tifffile.imread(p).astype(np.float32) for p in job["train_sources"]]
    tick, cpu_tick = time.monotonic(), time.process_time()
    if tool == "care":
        from csbdeep.data import RawData, create_patches
        from csbdeep.models import CARE, Config

        targets = [tifffile.imread(p).astype(np.float32) for p in job["train_targets"]]
        raw = RawData.from_arrays(sources, targets, axes="YX")
        X, Y, axes = create_patches(raw, patch_size=(64, 64), n_patches_per_image=64, save_file=None, verbose=False)
        X, Y, axes = np.moveaxis(X, 1, -1), np.moveaxis(Y, 1, -1), "SYXC"  # channels last, as CARE's Config needs
        n_val = max(1, len(X) // 10)
        config = Config(axes, n_channel_in=1, n_channel_out=1, train_batch_size=16, train_epochs=1000,
                        train_steps_per_epoch=50, train_tensorboard=False)
        model = CARE(config, "care", basedir=str(out / "model"))
        model.prepare_for_training()
        model.callbacks.append(TimeLimit())
        history = model.train(X[n_val:], Y[n_val:], validation_data=(X[:n_val], Y[:n_val]))

        def predict(image):
            return model.predict(image, axes="YX")
    else:
        from n2v.internals.N2V_DataGenerator import N2V_DataGenerator
        from n2v.models import N2V, N2VConfig

        generator = N2V_DataGenerator()
        patches = generator.generate_patches_from_list([s[None, ..., None] for s in sources], shape=(64, 64))
        n_val = max(1, len(patches) // 10)
        config = N2VConfig(patches, unet_kern_size=3, train_steps_per_epoch=50, train_epochs=1000,
                           train_loss="mse", batch_norm=True, train_batch_size=16, n2v_perc_pix=0.198,
                           n2v_patch_shape=(64, 64), n2v_manipulator="uniform_withCP", n2v_neighborhood_radius=5)
        model = N2V(config, "n2v", basedir=str(out / "model"))
        model.prepare_for_training()
        model.callbacks.append(TimeLimit())
        history = model.train(patches[n_val:], patches[:n_val])

        def predict(image):
            return model.predict(image, axes="YX")
    train_seconds, train_cpu_seconds = time.monotonic() - tick, time.process_time() - cpu_tick
    epochs = len(history.history.get("loss", []))
    predict_seconds, pixels = 0.0, 0
    for path in job["val_sources"]:
        image = tifffile.imread(path).astype(np.float32)
        start = time.process_time()  # CPU time, as the cytolens side measures it
        restored = predict(image)
        predict_seconds += time.process_time() - start
        pixels += image.size
        tifffile.imwrite(out / f"{Path(path).stem}.tif", restored.astype(np.float32))
    (out / "timing.json").write_text(json.dumps({"tool": tool, "train_seconds": train_seconds, "epochs": epochs,
                                                 "train_cpu_seconds": train_cpu_seconds,
                                                 "steps_per_epoch": 50, "predict_seconds": predict_seconds,
                                                 "megapixels": pixels / 1e6}) + "\n")


if __name__ == "__main__":
    main()
