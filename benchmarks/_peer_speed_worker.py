"""One tool's side of benchmarks/peers_speed.py: time its whole segmentation call on each image.

Runs in the tool's own virtual environment (cytolens' for ``cytolens``, StarDist's, Cellpose's),
so it imports only that tool. ``--images`` is an ``.npz`` with ``image_<side>`` (the raw
uint16 image) and ``truth_<side>`` (its true labels, read only by the Cellpose side, see below). Every call
starts from the raw image: each tool normalizes, runs its network and post-processes as a
user's call would. One warm-up call on a corner of the image comes first (graph building,
first-call allocations); then the best of ``--repeats`` calls is kept.

Writes ``--out`` (JSON: seconds per image and setting, versions, and the arithmetic of each
network: thousands of multiply-accumulates of its convolutions per input pixel, counted on a 512²
input) and ``--out`` with ``.npz``
(the labels of the last call, for the AP against the truth).

The tools:

* ``cytolens``: ``cytolens.segment(image, model, diameter=D)`` (``--diameter``) for each ``--models`` entry, and
  the same with ``precision="bfloat16"`` (mixed precision; rows named "model (bfloat16)"), and the call as a
  user makes it, ``cytolens.segment(image, model)`` with the diameter estimated (rows "model, diameter
  estimated"; float32, the default).
  "network only" times the network part alone (normalization, tiles, network, blending:
  ``predict_outputs``), without the watershed and the object filter.
* ``stardist``: the StarDist 2D model that ``peers_dsb.py`` trained on DSB2018 (median
  diameter 20 px, 3 input channels): ``normalize`` (percentiles 1-99.8) of the image repeated
  to 3 channels, then ``predict_instances``: StarDist's documented call.
* ``cellpose``: Cellpose 3's network for nuclei (``CPnet``, 2 input channels, ``diam_mean`` 17,
  as the pretrained ``nuclei`` model) with ``eval(image, diameter=D, channels=[0, 0])``. Its
  pretrained weights cannot be downloaded here, and the time of its network does not depend on
  the weights, but the time of its mask step (following the flows) depends on what the network
  predicts. So the network runs for real, inside the real ``eval`` call, and its output is then
  replaced by the ideal flows of the true objects (what a perfect network would predict), from
  which ``eval`` computes the masks as usual. "network only" is the same call with
  ``compute_masks=False``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

WARM_UP_SIDE = 256


def torch_kmacs_per_pixel(network, channels: int, side: int = 512) -> float:
    """Thousands of multiply-accumulates per input pixel of a torch network's convolutions."""
    import torch
    from torch import nn

    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * per_output
        elif isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * module.out_channels * module.kernel_size[0] * module.kernel_size[1]

    hooks = [module.register_forward_hook(count) for module in network.modules()]
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(1, channels, side, side))
    finally:
        for hook in hooks:
            hook.remove()
    return total / side**2 / 1e3


def best_time(call, repeats: int) -> tuple[float, object]:
    """The shortest of ``repeats`` timed calls and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


def cytolens_calls(models: list[str], diameter: float) -> tuple[dict, dict, dict]:
    """The timed calls by row name, the versions, and each network's k MAC per pixel (same for every tool)."""
    import cytolens
    from cytolens.models import load
    from cytolens.tasks.segmentation.inference import as_yxc, predict_outputs, tile_preparer

    def network_only(image: np.ndarray, package) -> np.ndarray:
        image_yxc = as_yxc(image)
        scale = package.meta["scale"]["target_diameter"] / diameter
        predict_outputs(package, image_yxc, scale, tile_preparer(package, image_yxc))
        return np.zeros(0)

    calls, kmacs = {}, {}
    for name in models:
        package = load(name)
        calls[f"{name} network only"] = lambda image, package=package: network_only(image, package)
        kmacs[name] = torch_kmacs_per_pixel(package.network, package.meta["architecture"]["args"]["in_channels"])
        for precision in ("float32", "bfloat16"):
            row = name if precision == "float32" else f"{name} (bfloat16)"
            calls[row] = (lambda image, package=package, precision=precision:
                          cytolens.segment(image, package, diameter=diameter, precision=precision))
        calls[f"{name}, diameter estimated"] = lambda image, package=package: cytolens.segment(image, package)
    return calls, {"cytolens": cytolens.__version__}, kmacs


def stardist_calls(model_dir: Path) -> tuple[dict, dict, dict]:
    import stardist
    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    model = StarDist2D(None, name=model_dir.name, basedir=str(model_dir.parent))

    def segment(image: np.ndarray) -> np.ndarray:
        rgb = np.repeat(image[..., None], 3, axis=-1)
        return model.predict_instances(normalize(rgb, 1, 99.8, axis=(0, 1, 2)), axes="YXC")[0]

    convolutions = [layer for layer in model.keras_model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    probe = tf.keras.Model(model.keras_model.inputs, [layer.output for layer in convolutions])
    side = 512
    outputs = probe(np.zeros((1, side, side, model.config.n_channel_in), np.float32))
    kmacs = sum(int(np.prod(out.shape)) * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
                for layer, out in zip(convolutions, outputs)) / side**2 / 1e3
    return ({"stardist": segment}, {"stardist": stardist.__version__, "tensorflow": tf.__version__},
            {"stardist": kmacs})


def cellpose_calls(truths: dict, diameter: float) -> tuple[dict, dict, dict]:
    import cellpose
    from cellpose import dynamics, models

    model = models.CellposeModel(gpu=False, pretrained_model=None, model_type=None, nchan=2, diam_mean=17.0)
    run_network = model._run_net
    ideal = {}  # image shape -> (dP, cellprob) that replace the network's output

    def run_network_then_use_ideal_flows(x, **kwargs):
        dP, cellprob, styles = run_network(x, **kwargs)  # the real cost of the network
        flow, probability = ideal[x.shape[1:3]]
        return flow[:, None].astype(dP.dtype), probability[None].astype(cellprob.dtype), styles

    model._run_net = run_network_then_use_ideal_flows
    for truth in truths.values():  # computed before any timing
        flow = dynamics.masks_to_flows(truth.astype(np.int32))
        # Cellpose trains its network to predict 5 × the unit flows, and a cell probability logit
        ideal[truth.shape] = (5.0 * flow, np.where(truth > 0, 6.0, -6.0))

    def segment(image: np.ndarray, compute_masks: bool = True) -> np.ndarray:
        if image.shape not in ideal:  # the warm-up crop: flows of nothing
            ideal[image.shape] = (np.zeros((2, *image.shape), np.float32), np.full(image.shape, -6.0, np.float32))
        return model.eval(image, diameter=diameter, channels=[0, 0], compute_masks=compute_masks)[0]

    calls = {"cellpose": segment,
             "cellpose network only": lambda image: segment(image, compute_masks=False)}
    return calls, {"cellpose": cellpose.version}, {"cellpose": torch_kmacs_per_pixel(model.net, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", choices=["cytolens", "stardist", "cellpose"], required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--diameter", type=float, required=True, help="object size given to every tool (pixels)")
    parser.add_argument("--models", nargs="*", default=["nuclei", "nuclei_fast"], help="cytolens models")
    parser.add_argument("--stardist-model", type=Path, help="StarDist model folder (weights_best.h5, config.json)")
    args = parser.parse_args()
    with np.load(args.images) as archive:
        images = {int(key.split("_")[1]): archive[key] for key in archive.files if key.startswith("image_")}
        truths = {int(key.split("_")[1]): archive[key] for key in archive.files if key.startswith("truth_")}
    if args.tool == "cytolens":
        calls, versions, kmacs = cytolens_calls(args.models, args.diameter)
    elif args.tool == "stardist":
        calls, versions, kmacs = stardist_calls(args.stardist_model)
    else:
        calls, versions, kmacs = cellpose_calls(truths, args.diameter)
    seconds, labels = {}, {}
    for name, call in calls.items():
        for side, image in images.items():
            call(image[:WARM_UP_SIDE, :WARM_UP_SIDE])
            seconds[f"{name}|{side}"], result = best_time(lambda: call(image), args.repeats)
            if np.asarray(result).size:
                labels[f"{name}|{side}"] = np.asarray(result).astype(np.int32)
            print(f"[{args.tool}] {name} {side}²: {seconds[f'{name}|{side}']:.2f} s", flush=True)
    args.out.write_text(json.dumps({"seconds": seconds, "versions": versions, "network_kmacs_per_pixel": kmacs},
                                   indent=1) + "\n")
    np.savez_compressed(args.out.with_suffix(".npz"), **labels)


if __name__ == "__main__":
    main()
