"""How fast the training loop takes an optimizer step on the CPU, by memory layout and precision.

One step = forward, contact-watershed loss, backward and Adam update of the bundled
networks' U-Nets (`nuclei`: width 32, `nuclei_fast`: width 16, depth 4) on a batch of
16 crops of 256² (the recipe's batch). Three ways in the same run:

* float32, default (NCHW) layout: the loop before channels-last;
* float32, channels-last: what ``cytolens.train.loop.fit`` does on a CPU now;
* bfloat16 mixed precision, channels-last: ``optimization.precision: bfloat16``.

The last two go through ``fit`` itself (one epoch of ``--steps`` steps, validation
excluded); the first repeats the loop's step by hand. Random inputs and targets:
the cost of a step does not depend on the pixel values. Ratios are what to read;
absolute times on shared machines are noisy.

Usage: python benchmarks/training_step_speed.py [--steps 6]
Writes benchmarks/results/training_step_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from cytolens.nn import UNet  # noqa: E402
from cytolens.tasks.segmentation.training import make_loss  # noqa: E402
from cytolens.train.loop import LoopConfig, fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, CROP = 16, 256


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(BATCH, 3, CROP, CROP, generator=generator)
    targets = (torch.rand(BATCH, 3, CROP, CROP, generator=generator) > 0.5).float()
    return inputs, targets


def by_hand_seconds(width: int, steps: int) -> float:
    """Seconds per step of the loop's step in float32 with the default (NCHW) layout."""
    torch.manual_seed(0)
    model = UNet(in_channels=3, out_channels=3, depth=4, base_channels=width).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    loss_fn = make_loss("contact_watershed")
    inputs, targets = batch()
    times = []
    for _ in range(steps + 1):  # the first step warms oneDNN up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def loop_seconds(width: int, steps: int, precision: str) -> float:
    """Seconds per step of ``fit`` (one epoch of ``steps`` steps after a one-step warm-up epoch)."""
    torch.manual_seed(0)
    model = UNet(in_channels=3, out_channels=3, depth=4, base_channels=width)
    inputs, targets = batch()
    config = LoopConfig(epochs=2, learning_rate=1e-4, warmup_epochs=0, patience=0, precision=precision,
                        device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        history = fit(model, make_loss("contact_watershed"),
                      lambda epoch: [(inputs, targets)] * (1 if epoch == 0 else steps),
                      lambda net: {"val_loss": 0.0}, config, tmp, resume=False, progress=False)
    return history[1]["seconds"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    report = {"machine": machine(), "batch": BATCH, "crop": CROP, "steps": args.steps, "networks": {}}
    for name, width in (("nuclei", 32), ("nuclei_fast", 16)):
        row = {"float32_nchw": by_hand_seconds(width, args.steps),
               "float32_channels_last": loop_seconds(width, args.steps, "float32"),
               "bfloat16_channels_last": loop_seconds(width, args.steps, "bfloat16")}
        report["networks"][name] = row
        print(name, json.dumps(row), flush=True)
    (RESULTS / "training_step_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    m = report["machine"]
    lines = ["# Training step speed on the CPU", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"native bfloat16: {'yes' if m.get('cpu_bfloat16') else 'no'}; commit {m['commit']}. "
             f"One Adam step of a depth-4 U-Net on {BATCH} crops of {CROP}², contact watershed loss; "
             f"mean of {args.steps} steps after a warm-up.", "",
             "| network | float32, NCHW (s/step) | float32, channels-last (s/step) | bfloat16, channels-last (s/step) "
             "| channels-last speed-up | bfloat16 speed-up over NCHW float32 | crops/s in bfloat16 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in report["networks"].items():
        base = row["float32_nchw"]
        lines.append(f"| {name} | {base:.2f} | {row['float32_channels_last']:.2f} | {row['bfloat16_channels_last']:.2f}"
                     f" | {base / row['float32_channels_last']:.2f}× | {base / row['bfloat16_channels_last']:.2f}× | "
                     f"{BATCH / row['bfloat16_channels_last']:.1f} |")
    (RESULTS / "training_step_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
