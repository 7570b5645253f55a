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


def _seconds_per_step(task, config, data, clock=time.perf_counter) -> float:
    """Time two training steps (after one warm-up) of the network the run will train, at its precision
    (``clock``: wall time, or ``time.process_time`` for CPU time)."""
    import torch

    from cytolens.nn.precision import autocast_for
    from cytolens.nn.registry import channels_last, channels_last_input
    from cytolens.train.fitting import network_for

    train = data.side("train")
    network = channels_last(network_for(task, config, data).train())
    autocast = autocast_for(config.optimization.precision, torch.device("cpu"))
    optimizer = torch.optim.Adam(network.parameters(), 1e-4)
    loss_fn = task.make_loss(config, train)
    batches = task.make_sampler(config, train)(0)
    times = []
    for _, (inputs, targets) in zip(range(3), batches):
        tick = clock()
        optimizer.zero_grad()
        with autocast():
            outputs = network(channels_last_input(inputs))
        loss_fn(outputs.float(), targets).backward()
        optimizer.step()
        times.append(clock() - tick)
    return float(np.mean(times[1:])) if len(times) > 1 else times[0]


def budgeted_epochs(task, config, data, minutes: float, validation_seconds: float = 1.0,
                    clock=time.perf_counter) -> tuple[int, float]:
    """Epochs of ``config.optimization.steps_per_epoch`` steps that fit in 90 % of ``minutes`` (from a timed
    step), so a cosine schedule ends when the budget does; also the seconds a step took. With
    ``clock=time.process_time`` the budget is CPU time (a fair budget on a shared machine)."""
    seconds = _seconds_per_step(task, config, data, clock)
    per_epoch = seconds * config.optimization.steps_per_epoch + validation_seconds
    return max(1, int(minutes * 60 * 0.9 / per_epoch)), seconds


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
