"""Recompute the batchnorm statistics that a float16 package lost to overflow.

The first two GPU runs of ``training/nuclei_gpu/config.yaml`` saved every tensor in
float16; the running variances of one decoder batchnorm (``decoders.0.1``) exceed
float16's range and became ``inf`` (cytolens now keeps running statistics in float32:
:func:`cytolens.tasks.segmentation.training.half_precision_weights`). The learned
weights are intact, so this script re-estimates only the broken layers' statistics the
standard way (Ioffe & Szegedy 2015): with every other layer frozen in eval mode, it
averages the batch statistics of those layers over augmented *training* crops drawn
exactly as in training (no validation or test image is used), then saves the package
with float32 statistics.

    python training/nuclei_gpu/repair_batchnorm.py PACKAGE [--batches 150]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cytolens.models.package import build_network
from cytolens.nn.precision import half_precision_weights
from cytolens.tasks.segmentation.training import crop_sampler, prepare_data
from cytolens.train.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--batches", type=int, default=150)
    args = parser.parse_args()
    weights_path = args.package / "weights.safetensors"
    state = load_file(str(weights_path))
    broken = sorted({k.rsplit(".", 1)[0] for k, v in state.items()
                     if k.endswith(("running_mean", "running_var")) and not torch.isfinite(v).all()})
    if not broken:
        print("all batchnorm statistics are finite; nothing to do")
        return
    config = load_config(args.package / "train_config.yaml")
    meta = json.loads((args.package / "model.json").read_text())
    network = build_network(meta["architecture"])
    network.load_state_dict(state)
    network.eval()
    modules = dict(network.named_modules())
    for name in broken:
        modules[name].reset_running_stats()
        modules[name].momentum = None  # cumulative average over all batches
        modules[name].train()
    opt = config.optimization
    data = prepare_data(config.model_copy(update={"optimization": opt.model_copy(update={"workers": 2})}),
                        progress=False)
    sampler = crop_sampler(data.side("train"), config, steps=args.batches, workers=0)
    with torch.no_grad():
        for inputs, _ in sampler(0):
            network(inputs)
    repaired = half_precision_weights({k: v.detach() for k, v in network.state_dict().items()})
    save_file({k: v.contiguous() for k, v in repaired.items()}, str(weights_path))
    meta.setdefault("training", {})["batchnorm_repair"] = {
        "layers": broken, "batches": args.batches, "batch_size": opt.batch_size, "data": "train split, augmented crops",
        "why": "float16 overflow of running variances in the saved copy; statistics re-estimated, weights unchanged"}
    (args.package / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"re-estimated {', '.join(broken)} over {args.batches} × {opt.batch_size} training crops")


if __name__ == "__main__":
    main()
