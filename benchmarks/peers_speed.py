"""CPU speed of the whole segmentation call: cytolens next to StarDist and Cellpose, in one run.

The same synthetic fluorescence images as ``segmentation_speed.py`` (512² and 2048², nuclei
12-32 px across, median about 20 px) go to each tool in turn, each in its own process and
virtual environment, one after the other (never two at once on the 2 cores). Each call starts
from the raw uint16 image and returns a label image, the object size is given to every tool
(20 px), and the best of ``--repeats`` calls counts after a warm-up call (details in
``_peer_speed_worker.py``):

* cytolens ``nuclei`` and ``nuclei_fast``: ``cytolens.segment(image, model, diameter=20)``, and the
  same call in mixed precision (``precision="bfloat16"``; fast only on CPUs with native bfloat16), and the
  default call as users run it, ``cytolens.segment(image, model)``: float32, the diameter estimated
  (rows "…, diameter estimated": StarDist needs no diameter, so these are the rows to compare with it).
* StarDist 2D: the model that ``peers_dsb.py`` trained from scratch on DSB2018 (``--stardist-model``),
  ``predict_instances`` on the percentile-normalized image.
* Cellpose 3: its nuclei network (CPnet) in ``eval(image, diameter=20, channels=[0, 0])``. Its
  pretrained weights cannot be downloaded here: the network runs with untrained weights (same
  cost) and its output is swapped for the ideal flows of the true objects before the mask step,
  so the time is that of a Cellpose whose network predicts perfectly. Its labels then match the
  truth by construction, so its AP column says only that the mask step ran. "network only" is
  the call without the mask step.

The ratio column is each call's time over the time of cytolens ``nuclei`` on the same image
(> 1: slower than cytolens); "speed / StarDist's" is StarDist's time over each call's time
(> 1: faster than StarDist). The AP@0.5 against the true objects checks that each tool did the
job it was timed on.

Usage: python benchmarks/peers_speed.py [--repeats 3] [--tools cytolens stardist cellpose]
Writes benchmarks/results/peers_speed.{json,md,log} (``--results DIR``: elsewhere). The peers' venvs
are created on first use (StarDist ~2 GB, Cellpose ~1.6 GB, under ~/.cache/cytolens-peers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from peers_dsb import CACHE, STARDIST_REQUIREMENTS, Log, ensure_venv  # noqa: E402
from segmentation_speed import DIAMETER, RESULTS, speed_image  # noqa: E402

from cytolens.metrics import match  # noqa: E402

CELLPOSE_REQUIREMENTS = ["torch==2.13.0", "cellpose==3.1.1.3"]
WORKER = Path(__file__).parent / "_peer_speed_worker.py"
STARDIST_MODEL = CACHE / "stardist-dsb" / "models" / "dsb2018_scratch_steps5600"
REFERENCE = "nuclei"


def make_images(sides: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The images of segmentation_speed.py: (image, true labels) per side."""
    return {side: speed_image((side, side)) for side in sides}


def run_worker(python: Path, tool: str, images: Path, out: Path, repeats: int, extra: list[str], log: Log) -> dict:
    """Run one tool's worker; its timing lines go to the log. Returns its JSON report."""
    command = [str(python), str(WORKER), "--tool", tool, "--images", str(images), "--out", str(out),
               "--repeats", str(repeats), "--diameter", str(DIAMETER), *extra]
    log("running " + " ".join(command))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as worker:
        output = []
        for line in worker.stdout:
            output.append(line)
            if line.startswith(f"[{tool}]"):
                log(line.rstrip())
    if worker.returncode != 0:
        sys.exit(f"the {tool} worker failed (exit {worker.returncode}):\n" + "".join(output[-30:]))
    return json.loads(out.read_text())


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Segmentation speed on a CPU: cytolens, StarDist, Cellpose", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, no GPU; cytolens commit {m['commit']}. Each tool in its own "
             f"process and virtual environment, one at a time; best of {report['repeats']} calls after a warm-up; "
             "synthetic fluorescence nuclei (median diameter ~20 px, given to every tool); file I/O excluded. "
             "Script: `benchmarks/peers_speed.py` (how each tool is called: its docstring).", "",
             "Versions: " + ", ".join(f"{k} {v}" for tool in report["versions"].values() for k, v in tool.items())
             + ".", "",
             "| image | tool | seconds | Mpx/s | time / cytolens nuclei time | speed / StarDist's "
             "| network k MAC / pixel | AP@0.5 vs truth |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for side, rows in report["results"].items():
        for name, row in rows.items():
            ap = "" if row["ap50"] is None else f"{row['ap50']:.3f}"
            if name == "cellpose" and ap:
                ap += " (ideal flows)"
            macs = "" if row["network_kmacs_per_pixel"] is None else f"{row['network_kmacs_per_pixel']:.1f}"
            versus = "" if row.get("speed_vs_stardist") is None else f"{row['speed_vs_stardist']:.2f}×"
            lines.append(f"| {side}² | {name} | {row['seconds']:.2f} | {row['mpx_per_s']:.2f} | "
                         f"{row['relative_to_reference']:.2f}× | {versus} | {macs} | {ap} |")
    if report.get("skipped"):
        lines += ["", "Not run: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items()) + "."]
    lines += ["", "Network k MAC / pixel: thousands of multiply-accumulates of the network's convolutions per pixel "
              "that enters it (counted on a 512² input), the arithmetic each design costs before tiling, "
              "resizing and post-processing (cytolens tiles overlap; Cellpose first resizes by 17/20 here).",
              "", "Cellpose's weights are untrained here (no download): its network costs the same, and its mask "
              "step ran on the ideal flows of the true objects, so its time is that of a Cellpose whose network "
              "predicts perfectly, and its AP says only that the masks were made. StarDist's model is the one "
              "trained from scratch on DSB2018 by `peers_dsb.py`; the synthetic images are not DSB2018 images, "
              "so its AP here is a sanity check, not an accuracy comparison (that is `peers_dsb.md`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--tools", nargs="+", default=["cytolens", "stardist", "cellpose"],
                        choices=["cytolens", "stardist", "cellpose"])
    parser.add_argument("--models", nargs="+", default=[REFERENCE, "nuclei_fast"], help="cytolens models")
    parser.add_argument("--stardist-model", type=Path, default=STARDIST_MODEL,
                        help="a trained StarDist model folder (peers_dsb.py makes one)")
    parser.add_argument("--stardist-venv", type=Path, default=CACHE / "venvs" / "stardist")
    parser.add_argument("--cellpose-venv", type=Path, default=CACHE / "venvs" / "cellpose")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for peers_speed.{json,md,log}")
    args = parser.parse_args(argv)
    if "cytolens" in args.tools and REFERENCE not in args.models:
        args.models.insert(0, REFERENCE)
    log = Log(args.results / "peers_speed.log")
    images = make_images(args.sizes)
    report = {"machine": machine(), "repeats": args.repeats, "versions": {}, "network_kmacs_per_pixel": {},
              "skipped": {}, "results": {}}
    seconds, labels = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "images.npz"
        np.savez(archive, **{f"image_{side}": image for side, (image, _) in images.items()},
                 **{f"truth_{side}": truth for side, (_, truth) in images.items()})
        for tool in args.tools:
            extra: list[str] = []
            if tool == "cytolens":
                python, extra = Path(sys.executable), ["--models", *args.models]
            elif tool == "stardist":
                if not (args.stardist_model / "weights_best.h5").exists():
                    report["skipped"]["stardist"] = f"no trained model in {args.stardist_model}: run peers_dsb.py"
                    log(f"skipping StarDist: {report['skipped']['stardist']}")
                    continue
                python = ensure_venv(args.stardist_venv, STARDIST_REQUIREMENTS, "StarDist", log)
                extra = ["--stardist-model", str(args.stardist_model)]
            else:
                python = ensure_venv(args.cellpose_venv, CELLPOSE_REQUIREMENTS, "Cellpose", log)
            out = Path(tmp) / f"{tool}.json"
            result = run_worker(python, tool, archive, out, args.repeats, extra, log)
            report["versions"][tool] = result["versions"]
            report["network_kmacs_per_pixel"].update(result["network_kmacs_per_pixel"])
            seconds.update(result["seconds"])
            with np.load(out.with_suffix(".npz")) as arrays:
                labels.update({key: arrays[key] for key in arrays.files})
    for side, (_, truth) in images.items():
        reference = seconds.get(f"{REFERENCE}|{side}")
        stardist = seconds.get(f"stardist|{side}")
        rows = {}
        for key, value in seconds.items():
            name, key_side = key.split("|")
            if int(key_side) != side:
                continue
            ap = (match(truth.astype(np.int64), labels[key].astype(np.int64), 0.5).average_precision
                  if key in labels else None)
            network = name.split(" (")[0].split(",")[0].removesuffix(" network only")
            rows[name] = {"seconds": value, "mpx_per_s": side * side / 1e6 / value,
                          "relative_to_reference": value / reference if reference else float("nan"),
                          "speed_vs_stardist": stardist / value if stardist else None, "ap50": ap,
                          "network_kmacs_per_pixel": report["network_kmacs_per_pixel"].get(network)}
        report["results"][str(side)] = rows
    (args.results / "peers_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    page = markdown(report)
    (args.results / "peers_speed.md").write_text(page)
    print(page)


if __name__ == "__main__":
    main()
