"""Train a segmentation config on whatever machine this is, sized to a time budget.

A lent GPU machine is held for minutes, not hours. This script first times a few
real training steps (augmentation workers + network on the device), then sets
``optimization.steps_per_epoch`` so that the whole run (all epochs of the cosine
schedule, plus validation) fits in ``--minutes``, writes that config next to the
package, and trains. The config it writes is the exact recipe of the model: retraining
from it needs no timing.

    python training/device/train_sized.py training/nuclei_gpu/config.yaml --minutes 6.5 \\
        --data-root .device_data/dsb2018 --output $OUT/nuclei

``--data-root`` points the config's images/labels/strata at a packed copy of the data
(``training/device/pack_dsb2018.py``) with the same folder names and without the test
images; the package still records the recipe's own data paths and full split.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from cytolens.tasks.segmentation.training import crop_sampler, make_loss, prepare_data
from cytolens.train.config import load_config, save_config
from cytolens.train.fitting import fit_model, network_for
from cytolens.train.loop import resolve_device
from cytolens.train.task import task_for


def seconds_per_step(config, data, steps: int = 30) -> float:
    """Seconds per training step: mean of ``steps`` training steps after a warm-up, on the config's device."""
    opt = config.optimization
    device = resolve_device(opt.device)
    torch.backends.cudnn.benchmark = True
    network = network_for(task_for(config), config, data).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    loss_fn = make_loss(config.schema_)
    sampler = crop_sampler(data.side("train"), config, steps=steps + 5)
    start = None
    for step, (inputs, targets) in enumerate(sampler(10_000)):
        if step == 5:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = loss_fn(network(inputs.to(device)), targets.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--minutes", type=float,
                        help="budget for the training run itself; without it the config's steps_per_epoch is kept")
    parser.add_argument("--validation-seconds", type=float, default=6.0, help="expected time of one validation")
    parser.add_argument("--data-root", help="folder with images/, labels_lopuhin_fixed/, index.csv")
    parser.add_argument("--output", help="package folder (default: the config's output)")
    args = parser.parse_args()
    recipe = load_config(args.config)
    if args.output:
        recipe = recipe.model_copy(update={"output": Path(args.output).resolve()})
    Path(recipe.output).parent.mkdir(parents=True, exist_ok=True)
    config = recipe
    if args.data_root:  # the packed copy holds no test images: they never travel to the GPU machine
        root = Path(args.data_root).resolve()
        split = json.loads(recipe.data.split_file.read_text())
        device_split = Path(str(recipe.output) + ".device_split.json")
        device_split.write_text(json.dumps({**split, "test": []}))
        config = recipe.model_copy(update={"data": recipe.data.model_copy(update={
            "images": root / recipe.data.images.name, "labels": root / recipe.data.labels.name,
            "strata_csv": root / recipe.data.strata_csv.name, "split_file": device_split})})
    tick = time.perf_counter()
    data = prepare_data(config, progress=False)
    print(f"prepared {len(data.samples)} images in {time.perf_counter() - tick:.0f} s", flush=True)
    steps, epochs = config.optimization.steps_per_epoch, config.optimization.epochs
    if args.minutes is not None:
        per_step = seconds_per_step(config, data)
        budget = args.minutes * 60 - epochs * args.validation_seconds
        steps = max(10, int(budget / epochs / per_step))
        print(f"{per_step * 1000:.1f} ms per step on {resolve_device(config.optimization.device)} → "
              f"{steps} steps per epoch × {epochs} epochs", flush=True)
    sized = {"optimization": config.optimization.model_copy(update={"steps_per_epoch": steps})}
    config, recipe = config.model_copy(update=sized), recipe.model_copy(update=sized)
    result = fit_model(task_for(config), config, data, progress=True)
    # the package records the recipe itself: real data paths and the full split (test side included)
    shutil.copy(recipe.data.split_file, result.package / "split.json")
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(
        update={"split_file": result.package / "split.json"})})
    save_config(recipe, result.package / "train_config.yaml", relative_to=result.package)
    print(f"best epoch {result.best['epoch']}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best.items()
                                                         if k.startswith("val_")), flush=True)


if __name__ == "__main__":
    main()
