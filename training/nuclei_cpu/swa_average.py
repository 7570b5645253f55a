"""Average the weights a training run kept after each epoch (stochastic weight averaging).

Izmailov et al. 2018: weights sampled along a run at a constant learning rate, averaged,
land in a flatter region of the loss than any one of them. The average's batchnorm running
statistics belong to none of the snapshots, so they are re-estimated afterwards over augmented
crops of the *train* split drawn as in training (``torch.optim.swa_utils.update_bn``; no
validation or test image is used).

Usage:
    python training/nuclei_cpu/swa_average.py CONFIG OUT_PACKAGE SNAPSHOT.pt [SNAPSHOT.pt ...] [--batches 150]

CONFIG is the run's training config; OUT_PACKAGE must already be a model package of that
architecture (e.g. a copy of the run's parent): its weights.safetensors is replaced and the
averaging is recorded in its model.json. Snapshots are ``last.pt`` copies
(training/nuclei_cpu/train_keeping_epochs.py) or model packages (a directory with weights.safetensors).
Then tune its thresholds and refit its size model and object filter as for any new weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import update_bn

from cytolens.nn import UNet
from cytolens.tasks.segmentation.training import CropSampler, half_precision_weights, prepare_data
from cytolens.train.config import load_config


def snapshot_state(path: Path) -> dict[str, torch.Tensor]:
    """The network weights in a ``last.pt`` checkpoint or a package directory, as float32."""
    if path.is_dir():
        state = load_file(str(path / "weights.safetensors"))
    else:
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("package", type=Path)
    parser.add_argument("snapshots", type=Path, nargs="+")
    parser.add_argument("--batches", type=int, default=150)
    args = parser.parse_args()
    states = [snapshot_state(p) for p in args.snapshots]
    if any(s.keys() != states[0].keys() for s in states):
        raise SystemExit("the snapshots do not share one architecture")
    mean = {k: torch.stack([s[k] for s in states]).mean(0) if states[0][k].is_floating_point() else states[-1][k]
            for k in states[0]}
    meta = json.loads((args.package / "model.json").read_text())
    network = UNet(**meta["architecture"]["args"])
    network.load_state_dict(mean)
    config = load_config(args.config)
    data = prepare_data(config, progress=False)
    sampler = CropSampler.from_config(data.side("train"), config, steps=args.batches, workers=0)
    with torch.no_grad():
        update_bn(sampler(0), network)
    averaged = half_precision_weights({k: v.detach() for k, v in network.state_dict().items()})
    save_file({k: v.contiguous() for k, v in averaged.items()}, str(args.package / "weights.safetensors"))
    meta.setdefault("training", {})["weight_averaging"] = {
        "snapshots": [str(p) for p in args.snapshots], "batchnorm_batches": args.batches,
        "batch_size": config.optimization.batch_size, "batchnorm_data": "train split, augmented crops",
        "script": "training/nuclei_cpu/swa_average.py"}
    (args.package / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"averaged {len(states)} snapshots into {args.package}; batchnorm re-estimated over "
          f"{args.batches} x {config.optimization.batch_size} training crops")


if __name__ == "__main__":
    main()
