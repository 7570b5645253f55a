"""``train_denoiser``: Noise2Void (N2V2) on the user's own noisy images, within a time budget.

The images are linked (files) or written (arrays) into ``<output>.work/images``, a
``task: restoration, mode: noise2void`` config is made for them, a few timed steps size the
schedule to the budget (the cosine schedule then ends when the budget does), and the
generic run trains and writes the model package that ``restore --model`` takes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidParameterError, OutputExistsError
from cytolens.train.budget import budgeted_epochs

#: steps per epoch of a denoiser run (an epoch ends with a validation and a checkpoint)
STEPS_PER_EPOCH = 40


def _gather(images: Sequence, folder: Path) -> None:
    """Link each image file (write each array) into ``folder``, with unique stems."""
    from cytolens.io import make_folder, write_image

    make_folder(folder)
    for old in folder.iterdir():
        old.unlink()
    seen: set[str] = set()
    for index, item in enumerate(images):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            if not path.is_file():
                raise InvalidParameterError(f"image file not found: {path}")
            stem = path.stem if path.stem not in seen else f"{path.stem}_{index}"
            seen.add(stem)
            os.symlink(path.resolve(), folder / f"{stem}{path.suffix}")
        else:
            array = np.asarray(item)
            if array.ndim not in (2, 3):
                raise InvalidParameterError(f"image {index} has shape {array.shape}; give (Y, X) images or "
                                            "(C, Y, X) stacks")
            stem = f"image{index:03d}"
            seen.add(stem)
            write_image(folder / f"{stem}.tif", array.astype(np.float32), axes="YX" if array.ndim == 2 else "ZYX",
                        overwrite=True)


def train_denoiser(images: Sequence, output: str | os.PathLike, *, minutes: float = 5.0, overwrite: bool = False,
                   progress: bool = True, seed: int = 0, crop_size: int = 64, batch_size: int = 16,
                   base_channels: int = 32, learning_rate: float = 1e-3, precision: str = "float32",
                   cpu_budget: bool = False):
    """Train a Noise2Void (N2V2) denoiser on ``images`` within ``minutes``; return the training result.

    Parameters
    ----------
    images : sequence of paths or arrays
        Noisy images (``(Y, X)``, or ``(C, Y, X)`` stacks with the same number of channels);
        they are all the data: no clean images are needed.
    output : path
        The model package folder to write (``restore --model OUTPUT``).
    minutes : float
        Time budget of the training (the data preparation and the package come on top).
    cpu_budget : bool
        Count ``minutes`` as this process's CPU time (the number of steps is set from a timed
        step; no wall-clock stop), e.g. for a fair comparison on a shared machine.
    """
    from cytolens.tasks.restoration.task import TASK
    from cytolens.train.fitting import fit_model

    if not images:
        raise InvalidParameterError("give at least one noisy image to train a denoiser on")
    if minutes <= 0:
        raise InvalidParameterError(f"minutes must be positive, got {minutes}")
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (--overwrite) or choose another output")
    folder = Path(str(output) + ".work") / "images"
    _gather(images, folder)
    raw = {"task": "restoration", "mode": "noise2void", "name": output.name, "data": {"images": str(folder)},
           "architecture": {"base_channels": base_channels},
           "optimization": {"epochs": 1, "steps_per_epoch": STEPS_PER_EPOCH, "batch_size": batch_size,
                            "crop_size": crop_size, "learning_rate": learning_rate, "max_minutes": minutes,
                            "warmup_epochs": 0, "precision": precision},
           "seed": seed, "license": "the user's own images", "output": str(output)}
    config = TASK.config_model.model_validate(raw)
    data = TASK.prepare_data(config, progress)
    epochs, seconds = budgeted_epochs(TASK, config, data, minutes, clock=time.process_time if cpu_budget
                                      else time.perf_counter)
    changes = {"epochs": epochs, **({"max_minutes": None} if cpu_budget else {})}
    config = config.model_copy(update={"optimization": config.optimization.model_copy(update=changes)})
    if progress:
        print(f"noise2void on {len(data.split['train'])} image(s): ~{seconds:.2f} s a step, {epochs} epochs of "
              f"{STEPS_PER_EPOCH} steps in {minutes:g} minutes", flush=True)
    return fit_model(TASK, config, data, progress=progress, resume=False)
