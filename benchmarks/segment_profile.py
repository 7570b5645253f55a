"""Where the default segmentation call spends its time, stage by stage, and what each speed lever changes.

The call profiled is the one users run: ``cytolens.segment(image, "nuclei")``, the diameter
estimated, the object filter on, followed by ``cytolens.measure``. Images: the synthetic
fluorescence nuclei of ``segmentation_speed.py`` (512² and 2048², 80 nuclei per 512², median
diameter about 20 px), written to a TIFF and read back. Stages, timed by wrapping the functions
the call goes through (best of ``--repeats`` calls after a warm-up):

* read: ``cytolens.io.read_image`` of the TIFF;
* normalize: the image's percentiles (``tile_preparer``; each tile is then scaled inside the
  network stages);
* estimate: the diameter estimate (``_estimate``): the style pass and the size model, then a
  first network pass and watershed at the guessed scale (split below into its network and
  watershed parts; an image under 1536 px whose final scale is within 10 % of the guess keeps
  this pass as the result, so its "network" and "watershed" rows are then empty);
* network: the network on blended tiles at the final scale, outputs resized back;
* watershed: post-processing of the outputs into labels;
* filter: the object filter's features and trees;
* measure: ``cytolens.measure(labels, image)``.

Levers (each the whole call, same images, same process; round robin: every lever once per
round, a warm-up round first, each lever's fastest call kept): the network run
by ONNX Runtime or TorchScript (the model exported by ``cytolens models export``), the network's
weights in the default (NCHW) memory format instead of channels-last, bfloat16 autocast, the
diameter given instead of estimated (the most a cheaper estimate could save), and, for images
over 1536 px, the estimate on four 768² crops, the default before issue 31 (four 512² crops since;
the results committed before that change, ``segment_profile_estimate_crops/``, timed 512² as the lever).

Every figure is a ratio within this one run; the 2 cores are shared with other jobs, so absolute
seconds move from run to run. Torch and ONNX Runtime get ``--threads`` threads (default 1, to
leave the other core to the shared jobs).

Usage: python benchmarks/segment_profile.py [--sides 512 2048] [--repeats 2] [--threads 1] [--model nuclei]
[--levers WORD ...] [--results DIR]. Writes DIR/segment_profile.{md,json} (DIR: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from segmentation_speed import RESULTS, speed_image  # noqa: E402

import cytolens  # noqa: E402
from cytolens.io import read_image, write_image  # noqa: E402
from cytolens.metrics import average_precision  # noqa: E402
from cytolens.tasks.segmentation import inference  # noqa: E402
from cytolens.tasks.segmentation.object_filter import ObjectFilter  # noqa: E402

STAGES = ("read", "normalize", "estimate", "estimate: style", "estimate: network", "estimate: watershed",
          "network", "watershed", "filter", "measure")


@contextmanager
def stage_timers(totals: dict[str, float]):
    """Add each stage's seconds to ``totals`` while the segmentation functions run (patched, then restored)."""
    inside = {"estimate": False}
    originals = {name: getattr(inference, name) for name in
                 ("tile_preparer", "_estimate", "style_of", "predict_outputs", "postprocess_outputs")}
    original_apply = ObjectFilter.apply

    def timed(stage, function, flag=False):
        def wrapper(*args, **kwargs):
            label = f"estimate: {stage}" if inside["estimate"] and not flag else stage
            if flag:
                inside["estimate"] = True
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start
                if flag:
                    inside["estimate"] = False
        return wrapper

    inference.tile_preparer = timed("normalize", originals["tile_preparer"])
    inference._estimate = timed("estimate", originals["_estimate"], flag=True)
    inference.style_of = timed("style", originals["style_of"])
    inference.predict_outputs = timed("network", originals["predict_outputs"])
    inference.postprocess_outputs = timed("watershed", originals["postprocess_outputs"])
    ObjectFilter.apply = timed("filter", original_apply)
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(inference, name, function)
        ObjectFilter.apply = original_apply


def timed_call(path: Path, model, patch: dict | None = None, **options) -> tuple[dict, np.ndarray]:
    """Per-stage seconds (and the total) of one read → segment → measure, and the labels.

    ``patch``: module constants of ``inference`` set for this call only (e.g. ``ESTIMATE_CROP``).
    """
    saved = {name: getattr(inference, name) for name in (patch or {})}
    for name, value in (patch or {}).items():
        setattr(inference, name, value)
    totals: dict[str, float] = defaultdict(float)
    try:
        start = time.perf_counter()
        image = read_image(path)
        totals["read"] = time.perf_counter() - start
        with stage_timers(totals):
            labels = cytolens.segment(image, model, **options)
        measure_start = time.perf_counter()
        cytolens.measure(labels, image)
        totals["measure"] = time.perf_counter() - measure_start
        totals["total"] = time.perf_counter() - start
    finally:
        for name, value in saved.items():
            setattr(inference, name, value)
    return dict(totals), labels


def lever_calls(model: str, folder: Path) -> dict[str, tuple[object, dict, dict]]:
    """name → (model argument, segment options, inference constants patched) of each lever measured."""
    from cytolens.models import load
    from cytolens.models.export import export_model
    from cytolens.models.package import ModelPackage

    onnx = export_model(model, "onnx", folder / f"{model}.onnx")
    torchscript = export_model(model, "torchscript", folder / f"{model}.pt")
    package = load(model)
    contiguous = ModelPackage(meta=package.meta, network=package.network, path=None, extras=package.extras)
    import torch

    contiguous.__dict__["inference_network"] = package.inference_network.to(memory_format=torch.contiguous_format)
    return {
        "default (PyTorch, channels-last)": (model, {}, {}),
        "ONNX Runtime": (onnx, {}, {}),
        "TorchScript": (torchscript, {}, {}),
        "PyTorch, NCHW weights": (contiguous, {}, {}),
        "bfloat16 autocast": (model, {"precision": "bfloat16"}, {}),
        "diameter given (20 px)": (model, {"diameter": 20.0}, {}),
        # images over 1536 px only: the estimate on 4 crops of 768², the default before issue 31 (512² since)
        "estimate on 768² crops (before)": (model, {}, {"ESTIMATE_CROP": 768}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--levers", nargs="*", default=None, help="only the levers whose names contain one of these "
                                                                   "words (the default call always runs)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows, levers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calls = lever_calls(args.model, folder)
        for side in args.sides:
            image, truth = speed_image((side, side))
            path = write_image(folder / f"speed_{side}.tif", image)
            chosen = {name: call for name, call in calls.items() if not args.levers or name.startswith("default")
                      or any(word in name for word in args.levers)}
            # round robin: a warm-up round, then each round calls every lever once, so a change in the shared
            # machine's load falls on all levers alike; each lever keeps its fastest call
            best, outputs = {}, {}
            for round_ in range(args.repeats + 1):
                for name, (model, options, patch) in chosen.items():
                    stages, outputs[name] = timed_call(path, model, patch, **options)
                    if round_ and (name not in best or stages["total"] < best[name]["total"]):
                        best[name] = stages
                    print(side, round_, name, f"{stages['total']:.2f} s", flush=True)
            reference = outputs[next(iter(chosen))]
            for name in chosen:
                stages, labels = best[name], outputs[name]
                ap = average_precision([truth], [labels], 0.5)
                same = float(np.mean((labels > 0) == (reference > 0)))
                levers.append({"side": side, "lever": name, "seconds": stages["total"], "ap50": ap,
                               "objects": int(labels.max()), "foreground_agreement": same, "stages": stages})
                if name.startswith("default"):
                    rows.append({"side": side, **stages})
    write_results(args, rows, levers)


def write_results(args, rows: list[dict], levers: list[dict]) -> None:
    info = machine()
    info["threads"] = args.threads
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "segment_profile.json").write_text(json.dumps({"machine": info, "model": args.model,
                                                                   "profile": rows, "levers": levers}, indent=1))
    lines = [f"# Where `cytolens.segment(image, {args.model!r})` spends its time, and the speed levers", "",
             (f"Machine: {info['cpu']}, {info['cores']} cores shared with other jobs (when the committed table was "
              "made: two model trainings and another helper), so absolute seconds are noisy: compare ratios within "
              f"the table. "
             f"{args.threads} thread(s) for torch and ONNX Runtime, torch {info['torch']}, commit {info['commit']}. "
             f"Synthetic fluorescence nuclei (`segmentation_speed.speed_image`), diameter estimated, object filter on; "
             f"levers called round robin, best of {args.repeats} rounds after a warm-up round. "
              "Script: `benchmarks/segment_profile.py`."), "",
             "## Per stage (default call)", "",
             ("| stage | " + " | ".join(f"{r['side']}² s" for r in rows) + " | "
              + " | ".join(f"{r['side']}² share" for r in rows) + " |"),
             "| --- |" + " --- |" * (2 * len(rows))]
    for stage in (*STAGES, "total"):
        cells = [f"{r.get(stage, 0.0):.3f}" for r in rows]
        shares = [f"{r.get(stage, 0.0) / r['total']:.0%}" for r in rows]
        lines.append(f"| {stage} | " + " | ".join(cells) + " | " + " | ".join(shares) + " |")
    lines += ["", "\"estimate\" includes its style, network and watershed rows; \"total\" is read + segment + measure.",
              "", "## Levers (whole call: read, segment, measure)", "",
              ("| image | lever | seconds | time / default | network stages s | objects | AP@0.5 vs truth | "
               "foreground pixels as default |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for lever in levers:
        default = next(x for x in levers if x["side"] == lever["side"] and x["lever"].startswith("default"))
        network = sum(lever["stages"].get(k, 0.0) for k in ("network", "estimate: network", "estimate: style"))
        ap = "" if lever["ap50"] is None else f"{lever['ap50']:.3f}"
        lines.append(f"| {lever['side']}² | {lever['lever']} | {lever['seconds']:.2f} | "
                     f"{lever['seconds'] / default['seconds']:.2f}× | {network:.2f} | {lever['objects']} | {ap} | "
                     f"{lever['foreground_agreement']:.4f} |")
    (args.results / "segment_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
