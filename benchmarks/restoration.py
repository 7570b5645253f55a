"""Denoising on FMD Confocal_BPAE_B: classical filters, cytolens supervised and Noise2Void, CARE and n2v.

    nice -n 10 python benchmarks/restoration.py [--minutes 8] [--skip-peers] [--work DIR]

Data: ``../shared/data/fmd_confocal_bpae_b`` (Zhang et al. CVPR 2019; 3 noisy frames per field,
target = the field's 50-frame average). Fields 1-12 train, 13-16 validation (12 noisy images,
the reported figures, never used to choose anything). Our supervised run trains on fields
1-11 and picks its epoch on field 12; CARE holds out 10 % of its patches of fields 1-12.
Every method gets the same CPU budget for training (``--minutes``, one thread each) and
its parameters are chosen on the training fields only (the filters' sigma, size and h).

Scores: PSNR and SSIM in the CARE convention (target percentile-normalized, prediction
affinely fitted), computed by ``cytolens.evaluate.evaluate_restoration`` (what
``cytolens evaluate restoration --care`` runs) on the restored images written to disk.
Speed: seconds per megapixel of restoring the 12 validation images, one thread, in this run.
Writes ``benchmarks/results/restoration.md`` and ``.csv`` (and ``restoration.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "fmd_confocal_bpae_b"
RESULTS = HERE / "results"
TRAIN_FIELDS, VAL_FIELDS = range(1, 13), range(13, 17)
PEER_VENVS = Path("/work/peer-venvs")


def pairs() -> tuple[list[str], list[str]]:
    with open(DATA / "pairs.csv") as handle:
        rows = list(csv.DictReader(handle))
    train = [r["id"] for r in rows if int(r["fov"]) in TRAIN_FIELDS]
    val = [r["id"] for r in rows if int(r["fov"]) in VAL_FIELDS]
    return train, val


def read(kind: str, stem: str) -> np.ndarray:
    from cytolens.io import read_image

    return read_image(DATA / kind / f"{stem}.tif").astype(np.float32)


def care_psnr(target: np.ndarray, pred: np.ndarray) -> float:
    from cytolens.metrics.restoration import restoration_scores

    return restoration_scores(target, pred, care=True)["psnr"]


def choose(filter_fn, values, train: list[str]) -> tuple[object, float]:
    """The parameter value with the best mean CARE PSNR on one noisy frame per training field."""
    chosen = [s for s in train if s.endswith("0")]
    best = None
    for value in values:
        score = float(np.mean([care_psnr(read("target", s), filter_fn(read("source", s), value)) for s in chosen]))
        if best is None or score > best[1]:
            best = (value, score)
    return best


def gaussian(image, sigma):
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(image, sigma)


def median(image, size):
    from scipy import ndimage as ndi

    return ndi.median_filter(image, size)


def noise_sigma(image: np.ndarray) -> float:
    """Immerkær's (1996) fast noise estimate: the mean absolute response of a Laplacian difference mask."""
    from scipy import ndimage as ndi

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    response = ndi.convolve(image.astype(np.float64), kernel)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6)


def nl_means(image, h_factor):
    from skimage.restoration import denoise_nl_means

    scaled = image / 255.0
    sigma = noise_sigma(scaled)
    return denoise_nl_means(scaled, h=h_factor * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                            fast_mode=True) * 255.0


def write_predictions(folder: Path, predictions: dict[str, np.ndarray]) -> None:
    from cytolens.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for stem, image in predictions.items():
        write_image(folder / f"{stem}_restored.tif", image.astype(np.float32), overwrite=True)


def timed(fn, val: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """``fn`` on every validation image; returns the outputs and seconds per megapixel."""
    outputs, seconds, pixels = {}, 0.0, 0
    for stem in val:
        image = read("source", stem)
        start = time.process_time()  # CPU time: one thread, on a machine shared with other jobs
        outputs[stem] = fn(image)
        seconds += time.process_time() - start
        pixels += image.size
    return outputs, seconds / (pixels / 1e6)


def train_ours(mode: str, train: list[str], val: list[str], work: Path, minutes: float,
               precision: str = "bfloat16") -> tuple[Path, dict]:
    """Our supervised model (fit_model on the pairs) or Noise2Void (train_denoiser on the noisy train images)."""
    import cytolens
    from cytolens.tasks.restoration.task import TASK
    from cytolens.train.api import as_config
    from cytolens.train.budget import budgeted_epochs
    from cytolens.train.fitting import fit_model

    output = work / f"ours_{mode}"
    tick, cpu_tick = time.monotonic(), time.process_time()
    if mode == "noise2void":
        result = cytolens.train_denoiser([DATA / "source" / f"{s}.tif" for s in train], output, minutes=minutes,
                                         overwrite=True, progress=False, precision="bfloat16", cpu_budget=True)
    else:
        split = work / "fmd_split.json"
        # the epoch is picked on the last training field, held out of training; the reported fields choose nothing
        selection = [s for s in train if s.startswith(f"fov{TRAIN_FIELDS[-1]:02d}")]
        fitting = [s for s in train if s not in selection]
        split.write_text(json.dumps({"train": fitting, "val": selection, "test": []}) + "\n")
        raw = {"task": "restoration", "name": "fmd_supervised",
               "data": {"images": str(DATA / "source"), "targets": str(DATA / "target"), "split_file": str(split)},
               "architecture": {"residual": True},  # CARE's default when input and output channels match
               "optimization": {"epochs": 1, "steps_per_epoch": 50, "batch_size": 16, "crop_size": 64,
                                "learning_rate": 1e-3, "warmup_epochs": 0,
                                "precision": precision},
               "loss": "l1", "target_normalization": "source", "output": str(output)}
        config = as_config(raw)
        data = TASK.prepare_data(config, False)
        epochs, _ = budgeted_epochs(TASK, config, data, minutes, validation_seconds=3.0, clock=time.process_time)
        raw["optimization"]["epochs"] = epochs
        config = as_config(raw)
        result = fit_model(TASK, config, data, progress=False, resume=False)
    info = {"train_seconds": round(time.monotonic() - tick, 1),
            "train_cpu_seconds": round(time.process_time() - cpu_tick, 1), "epochs": len(result.history),
            "steps_per_epoch": result.history and 50, "best_epoch": result.best["epoch"]}
    return result.package, info


def run_peer(tool: str, train: list[str], val: list[str], work: Path, minutes: float) -> dict | None:
    python = PEER_VENVS / ("csbdeep" if tool == "care" else "n2v") / "bin" / "python"
    if not python.is_file():
        print(f"{tool}: no venv at {python.parent.parent}; skipped", flush=True)
        return None
    out = work / f"peer_{tool}"
    job = {"train_sources": [str(DATA / "source" / f"{s}.tif") for s in train],
           "train_targets": [str(DATA / "target" / f"{s}.tif") for s in train],
           "val_sources": [str(DATA / "source" / f"{s}.tif") for s in val],
           "out": str(out), "minutes": minutes, "threads": 1}
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    with open(out / "log.txt", "w") as log:
        done = subprocess.run([str(python), str(HERE / "_peer_care_worker.py"), tool, str(out / "job.json")],
                              stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        print(f"{tool}: worker failed (see {out / 'log.txt'})", flush=True)
        return None
    return json.loads((out / "timing.json").read_text())


def score(name: str, folder: Path, truth: Path, work: Path) -> dict:
    from cytolens.evaluate import evaluate_restoration

    evaluation = evaluate_restoration(folder, truth, work / "scores" / name, care=True, overwrite=True)
    means = evaluation.summary["means"]
    return {"psnr": round(means["psnr"], 3), "ssim": round(means["ssim"], 4)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget of each learned method, "
                        "in CPU minutes")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--precision", default="bfloat16", help="ours supervised: training precision")
    parser.add_argument("--only", nargs="*", default=None, help="methods to run (default all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cytolens_restoration_benchmark"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from _machine import machine

    import cytolens

    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA}")
    train, val = pairs()
    work = args.work
    truth = work / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    for stem in val:
        link = truth / f"{stem}.tif"
        if not link.exists():
            os.symlink(DATA / "target" / f"{stem}.tif", link)
    info = machine()
    previous = RESULTS / "restoration.json"
    rows = {r["method"]: r for r in json.loads(previous.read_text())["rows"]} if previous.is_file() else {}
    wanted = set(args.only) if args.only else None
    mine: set[str] = set()

    def record(method, outputs, seconds_per_mp, **extra):
        folder = work / "pred" / method
        write_predictions(folder, outputs)
        rows[method] = {"method": method, **score(method, folder, truth, work),
                        "restore_s_per_mp": None if seconds_per_mp is None else round(seconds_per_mp, 3), **extra}
        print(json.dumps(rows[method]), flush=True)
        mine.add(method)
        write_results([rows[m] for m in mine], args, info)  # merged with the other methods' rows on disk

    def want(method):
        return wanted is None or method in wanted

    if want("noisy input"):
        record("noisy input", {s: read("source", s) for s in val}, None)
    if want("gaussian"):
        sigma, _ = choose(gaussian, [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0], train)
        outputs, speed = timed(lambda im: gaussian(im, sigma), val)
        record("gaussian", outputs, speed, setting=f"sigma={sigma} (best on train fields)")
    if want("median"):
        size, _ = choose(median, [3, 5, 7], train)
        outputs, speed = timed(lambda im: median(im, size), val)
        record("median", outputs, speed, setting=f"size={size} (best on train fields)")
    if want("nl-means"):
        h, _ = choose(nl_means, [0.8, 1.2, 1.6, 2.0, 2.5, 3.0], train)
        outputs, speed = timed(lambda im: nl_means(im, h), val)
        record("nl-means", outputs, speed,
               setting=f"h={h} x estimated sigma (Immerkaer), patch 5, distance 6 (best on train)")
    for mode, method in (("supervised", "ours supervised"), ("noise2void", "ours noise2void")):
        if want(method):
            package, trained = train_ours(mode, train, val, work, args.minutes, args.precision)
            loaded = cytolens.models.load(package)
            outputs, speed = timed(lambda im, loaded=loaded: cytolens.restore(im, model=loaded), val)
            precision = args.precision if mode == "supervised" else "bfloat16"
            record(method, outputs, speed, setting=f"{args.minutes:g} CPU min, 1 thread, {precision} training"
                   + (", residual, epoch picked on field 12" if mode == "supervised" else ""), **trained)
    if not args.skip_peers:
        for tool, method, ours in (("care", "CARE (csbdeep)", "ours supervised"), ("n2v", "N2V (n2v)",
                                                                                  "ours noise2void")):
            if not want(method):
                continue
            minutes = args.minutes
            timing = run_peer(tool, train, val, work, minutes)
            if timing is None:
                continue
            outputs = {s: __import__("tifffile").imread(work / f"peer_{tool}" / f"{s}.tif") for s in val}
            record(method, outputs, timing["predict_seconds"] / timing["megapixels"],
                   setting=f"{minutes:g} CPU min, 1 thread, float32 (TensorFlow)",
                   train_seconds=round(timing["train_seconds"], 1), epochs=timing["epochs"],
                   train_cpu_seconds=round(timing["train_cpu_seconds"], 1),
                   steps_per_epoch=timing["steps_per_epoch"])
    write_results([rows[m] for m in mine], args, info)


def write_results(rows: list[dict], args, info: dict) -> None:
    """Write the tables; rows of other methods already in ``restoration.json`` (another run) are kept."""
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / "restoration.json"
    if previous.is_file():
        merged = {r["method"]: r for r in json.loads(previous.read_text())["rows"]}
        merged.update({r["method"]: r for r in rows})
        rows = list(merged.values())
    (RESULTS / "restoration.json").write_text(json.dumps({"rows": rows, "machine": info,
                                                          "minutes": args.minutes}, indent=1) + "\n")
    keys = ["method", "psnr", "ssim", "restore_s_per_mp", "setting", "train_seconds", "train_cpu_seconds", "epochs",
            "best_epoch"]
    with open(RESULTS / "restoration.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Denoising: FMD Confocal_BPAE_B, fields 13-16 (12 noisy images), trained on fields 1-12", "",
             (f"Machine: {info.get('cpu')} ({info.get('cores')} cores, shared with other jobs), one thread per "
             f"method; written by `benchmarks/restoration.py` (commit {info.get('commit')})."), "",
             ("Ours supervised trains on fields 1-11 and picks its epoch on field 12; CARE holds out 10 % of its "
              "patches of fields 1-12; the self-supervised runs see the noisy frames of fields 1-12 only. The "
              "reported fields 13-16 choose nothing."), "",
             ("PSNR/SSIM: CARE convention (target percentile-normalized 0.1/99.9, prediction affinely fitted), "
              "`cytolens.evaluate.evaluate_restoration(care=True)`, the 12 validation images."), "",
             ("Training budgets in CPU time (the machine was shared with other jobs): ours run as many steps as a "
              "timed step says fit in `--minutes` of CPU; each peer stops on its own CPU time when it has used "
              "`--minutes` of CPU too, checked at the end of each 50-step epoch. The CPU seconds each run used "
              "are listed. Restore speed: CPU seconds per megapixel (one thread)."), "",
             "| method | PSNR (dB) | SSIM | restore CPU s/MP | training CPU s | setting |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r.get('restore_s_per_mp') or '-'} | "
                     f"{r.get('train_cpu_seconds') or '-'} | {r.get('setting', '')} |")
    (RESULTS / "restoration.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
