"""Divisions when linking alone, with the division cost chosen without Fluo-N2DH-SIM+ 01 (issue 26).

The hand-made division cost's settings were first chosen on ``Fluo-N2DH-SIM+/01`` (division F1
0.982 there) and generalize poorly to another SIM+ movie (0.89). Its present form was chosen
on data other than SIM+ 01 only:

- **synthetic movies** made here with :func:`cytolens.data.synthetic_movie` and a wide
  :class:`cytolens.data.Mitosis` (mothers condensing, unequal daughters, daughters held together
  for up to 4 frames before they part, off-axis and shifted daughters, daughters growing
  back; cropped so that cells enter and leave; crowded movies; movies without divisions), plus
  a "far" family (mothers condensing 1.25-4x over 2-5 frames, daughters appearing up to 2
  semi-axes apart) and copies in which some nuclei are cut into two touching pieces for 1-5
  frames (the segmentation errors a division rule must not take for divisions);
- **Fluo-N2DH-GOWT1/01** (2 annotated divisions; one is beyond reach, its daughter appears 4
  frames after the mother's end).

``Fluo-N2DH-SIM+/01`` is the held-out figure. Every movie is linked from its ground-truth
masks (``TRA``), labels shuffled per frame (seed 0), once with the code of ``--baseline``
(today's defaults before the change) and once with this working tree, each in a subprocess
that imports that code; both are scored by the same harness as ``tracking_ctc.py``
(py-ctcmetrics: TRA, DET, LNK, division F1 = BC(0)). ``cytolens-learned (trained on X)``: the
learned link cost fitted to the ground truth of the other sequence X, as in ``tracking_ctc.py``.

Usage: nice -n 15 python benchmarks/tracking_divisions_heldout.py [--baseline df5611b]
           [--datasets Fluo-N2DH-SIM+,Fluo-N2DH-GOWT1] [--no-synthetic] [--no-learned]
Writes benchmarks/results/tracking_divisions_heldout.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine
from tracking_ctc import DATA, DATASETS, RESULTS, score, shuffle_labels

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEM = "tracking_divisions_heldout"
BASELINE = "df5611b"  # the commit before issue 26's division change: today's defaults
CHOSEN_ON = ("synthetic movies (families 'wide' cropped/crowded/no divisions, 'far', and their cut-nucleus copies; "
             "seeds fixed in this script) and Fluo-N2DH-GOWT1/01; Fluo-N2DH-SIM+/01 held out")


# --- the synthetic choice suite ----------------------------------------------------------------------------


def _mitoses():
    from cytolens.data import Mitosis

    wide = Mitosis(condensation=(0.4, 1.0), condensation_frames=(1, 3), daughter_area=(0.3, 0.75),
                   spacing=(0.3, 1.2), axis_turn=(0.0, 1.5), midpoint_shift=(0.0, 0.5), held=(0, 4),
                   separation_speed=(0.0, 3.0), growth_frames=(0, 15))
    far = Mitosis(condensation=(0.25, 0.8), condensation_frames=(2, 5), daughter_area=(0.3, 0.75),
                  spacing=(0.8, 2.0), axis_turn=(0.0, 1.5), midpoint_shift=(0.0, 0.5), held=(0, 1),
                  separation_speed=(1.0, 4.0), growth_frames=(0, 15))
    return wide, far


def crop(labels: np.ndarray, lineage: pd.DataFrame, margin: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut ``margin`` px off every side: cells enter and leave. A cell that leaves and comes back is a new
    track; a parent outside the crop is dropped (CTC conventions)."""
    cropped = labels[:, margin:-margin, margin:-margin]
    out = cropped.copy()
    parent = dict(zip(lineage["label"], lineage["parent"]))
    frames: dict[int, list[int]] = {}
    for t, frame in enumerate(cropped):
        for label in np.unique(frame[frame > 0]):
            frames.setdefault(int(label), []).append(t)
    rows, next_label = [], int(cropped.max()) + 1
    for label, present in sorted(frames.items()):
        runs = np.split(np.asarray(present), np.flatnonzero(np.diff(present) > 1) + 1)
        for k, run in enumerate(runs):
            new = label
            if k:
                new, next_label = next_label, next_label + 1
                for t in run:
                    out[t][cropped[t] == label] = new
            rows.append({"label": new, "begin": int(run[0]), "end": int(run[-1]),
                         "parent": 0 if k else parent.get(label, 0)})
    table = pd.DataFrame(rows)
    ends = dict(zip(table["label"], table["end"]))
    table["parent"] = [p if p in ends and ends[p] == b - 1 else 0 for p, b in zip(table["parent"], table["begin"])]
    return out, table.sort_values("label", ignore_index=True)


def cut_nuclei(labels: np.ndarray, lineage: pd.DataFrame, rng: np.random.Generator, rate: float = 0.04,
               longest: int = 5) -> np.ndarray:
    """Segmentation errors: a nucleus cut in two touching pieces (along a line near its centre) for 1..longest frames,
    starting in a fraction ``rate`` of its frames."""
    out = labels.copy()
    next_label = int(labels.max()) + 1
    for row in lineage.itertuples():
        t = row.begin
        while t <= row.end:
            if rng.random() < rate:
                run, piece = int(rng.integers(1, longest + 1)), next_label
                next_label += 1
                angle = rng.uniform(0, np.pi)
                for u in range(t, min(t + run, row.end + 1)):
                    yy, xx = np.nonzero(out[u] == row.label)
                    if len(yy) < 20:
                        continue
                    side = (yy - yy.mean()) * np.cos(angle) + (xx - xx.mean()) * np.sin(angle) > rng.normal(0, 1.5)
                    out[u][yy[side], xx[side]] = piece
                t += run
            t += 1
    return out


def synthetic_suite() -> list[dict]:
    """The movies the division cost was chosen on: name, family, label movie, lineage (cut copies: and the truth)."""
    from cytolens.data import synthetic_movie

    wide, far = _mitoses()
    movies = []
    for k in range(12):
        step, diameters, cells = [0.7, 1.5, 3.0][k % 3], [(12, 24), (20, 40)][(k // 3) % 2], [28, 40][k // 6]
        _, labels, lineage = synthetic_movie(n_frames=40, shape=(384, 384), n_cells=cells, divisions=12, seed=300 + k,
                                             diameter_range=diameters, step=step, mitosis=wide)
        labels, lineage = crop(labels, lineage, 32)
        movies.append({"name": f"wide-cropped{k}", "family": "wide: cropped", "labels": labels, "lineage": lineage})
    for k in range(4):
        _, labels, lineage = synthetic_movie(n_frames=40, shape=(320, 320), n_cells=70, divisions=12, seed=400 + k,
                                             diameter_range=(12, 22), step=[1.0, 2.0][k % 2], mitosis=wide)
        movies.append({"name": f"wide-crowded{k}", "family": "wide: crowded", "labels": labels, "lineage": lineage})
    for k in range(3):
        _, labels, lineage = synthetic_movie(n_frames=30, shape=(384, 384), n_cells=70, divisions=0, seed=500 + k,
                                             diameter_range=(12, 30), step=[1.5, 3.0, 4.5][k])
        labels, lineage = crop(labels, lineage, 32)
        movies.append({"name": f"no-divisions{k}", "family": "no divisions (cropped, crowded)", "labels": labels,
                       "lineage": lineage})
    for k in range(8):
        _, labels, lineage = synthetic_movie(n_frames=40, shape=(384, 384), n_cells=30, divisions=12, seed=600 + k,
                                             diameter_range=[(12, 24), (20, 40)][k // 4],
                                             step=[0.7, 1.5, 3.0, 1.5][k % 4], mitosis=far)
        labels, lineage = crop(labels, lineage, 32)
        movies.append({"name": f"far{k}", "family": "far", "labels": labels, "lineage": lineage})
    rng = np.random.default_rng(7)
    for movie in list(movies):
        if movie["name"] in ("wide-cropped0", "wide-cropped4", "wide-cropped8", "wide-crowded0", "no-divisions0",
                             "no-divisions1", "no-divisions2"):
            movies.append({"name": "cut-" + movie["name"], "family": "cut nuclei (segmentation errors)",
                           "labels": cut_nuclei(movie["labels"], movie["lineage"], rng), "truth": movie["labels"],
                           "lineage": movie["lineage"]})
    return movies


def write_truth(folder: Path, labels: np.ndarray, lineage: pd.DataFrame) -> Path:
    """A CTC ground-truth folder (``TRA/man_trackTTT.tif`` + ``man_track.txt``) for py-ctcmetrics."""
    import tifffile

    tra = folder / "TRA"
    tra.mkdir(parents=True)
    for t, frame in enumerate(labels):
        tifffile.imwrite(tra / f"man_track{t:03d}.tif", frame.astype(np.uint16))
    (tra / "man_track.txt").write_text("".join(f"{r.label} {r.begin} {r.end} {r.parent}\n"
                                               for r in lineage.itertuples()))
    return folder


# --- linking with a given version of the code, in a subprocess ---------------------------------------------


def code_of(commit: str | None, scratch: Path) -> Path:
    """The ``src`` folder to import cytolens from: this working tree's, or ``commit``'s (git archive)."""
    if commit is None:
        return REPO / "src"
    target = scratch / f"src_{commit}"
    if not target.is_dir():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit, "src"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def link_with(code: Path, labels: np.ndarray, scratch: Path, model: Path | None = None) -> tuple[pd.DataFrame, float]:
    """``cytolens.track(labels=...)`` run by the code under ``code``: the tracks table and the seconds it took."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        np.save(Path(tmp) / "labels.npy", labels)
        args = [sys.executable, __file__, "--link", str(Path(tmp) / "labels.npy"), str(Path(tmp) / "tracks.csv")]
        if model is not None:
            args += ["--model", str(model)]
        done = subprocess.run(args, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip()[-2000:])
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        return pd.read_csv(Path(tmp) / "tracks.csv"), seconds


def fit_with(code: Path, truth: Path, out: Path) -> Path:
    """Fit the learned link cost to a CTC ground truth with the code under ``code``."""
    done = subprocess.run([sys.executable, __file__, "--fit", str(truth), str(out)],
                          env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-2000:])
    return out


def _worker(args: argparse.Namespace) -> None:
    import cytolens.track as tracking

    if args.fit:
        truth, out = args.fit
        tracking.fit_link_model_ctc(truth, trained_on=str(truth)).save(out)
        return
    labels_path, out = args.link
    labels = np.load(labels_path)
    settings = {"link_cost": "learned", "link_model": args.model} if args.model else {}
    start = time.perf_counter()
    result = tracking.track(labels=labels, **settings)
    seconds = time.perf_counter() - start
    result.tracks[["t", "label", "track_id", "parent_track_id"]].to_csv(out, index=False)
    print(json.dumps({"seconds": seconds}))


# --- the benchmark -----------------------------------------------------------------------------------------


def summary(rows: list[dict]) -> dict:
    tp, fp, fn = (sum(r["divisions_tp_fp_fn"][k] for r in rows) for k in range(3))
    return {"movies": len(rows), "divisions": tp + fn, "tp": tp, "fp": fp, "fn": fn,
            "division_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
            "division_precision": tp / (tp + fp) if tp + fp else float("nan"),
            "division_recall": tp / (tp + fn) if tp + fn else float("nan"),
            "TRA": float(np.mean([r["TRA"] for r in rows])), "LNK": float(np.mean([r["LNK"] for r in rows]))}


def run_synthetic(codes: dict[str, Path], scratch: Path) -> dict:
    movies = synthetic_suite()
    per_movie: dict[str, dict[str, dict]] = {version: {} for version in codes}
    for movie in movies:
        labels = shuffle_labels(movie["labels"], 0)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            truth = write_truth(Path(tmp) / "GT", movie.get("truth", movie["labels"]), movie["lineage"])
            for version, code in codes.items():
                table, seconds = link_with(code, labels, scratch)
                per_movie[version][movie["name"]] = {**score(labels, table, truth), "seconds": seconds,
                                                     "family": movie["family"]}
        print(f"  {movie['name']}: " + ", ".join(
            f"{v} {per_movie[v][movie['name']]['divisions_tp_fp_fn']}" for v in codes), flush=True)
    families = {}
    for version in codes:
        for family in dict.fromkeys(m["family"] for m in movies):
            rows = [r for r in per_movie[version].values() if r["family"] == family]
            families.setdefault(family, {})[version] = summary(rows)
        clean = [r for r in per_movie[version].values() if not r["family"].startswith("cut")]
        families.setdefault("all without cut nuclei", {})[version] = summary(clean)
    return {"families": families, "movies": per_movie}


def run_ctc(codes: dict[str, Path], datasets: list[str], scratch: Path, learned: bool) -> tuple[dict, dict]:
    results, notes = {}, {}
    roots = {name: DATA / f"ctc_{name}" for name in datasets}
    available = {n: r for n, r in roots.items() if (r / "01_GT" / "TRA").is_dir()}
    for name in roots:
        if name not in available:
            notes[name] = f"{roots[name]}/01_GT/TRA not found"
    from cytolens.io import read_ctc_masks

    for version, code in codes.items():
        models = {}
        if learned and len(available) > 1:
            for name, root in available.items():
                models[name] = fit_with(code, root / "01_GT", scratch / f"learned_{version}_{name}.json")
        for name, root in available.items():
            gt = root / "01_GT"
            labels = shuffle_labels(read_ctc_masks(gt / "TRA"), 0)
            table, seconds = link_with(code, labels, scratch)
            results.setdefault(name, {}).setdefault("cytolens", {})[version] = {**score(labels, table, gt),
                                                                               "seconds": seconds}
            for other, model in models.items():
                if other != name:
                    table, seconds = link_with(code, labels, scratch, model)
                    results[name].setdefault(f"cytolens-learned (trained on {other})", {})[version] = {
                        **score(labels, table, gt), "seconds": seconds}
            print(f"  {name} ({version}): " + ", ".join(f"{tracker} {rows[version]['division_f1']:.3f} "
                                                        f"{rows[version]['divisions_tp_fp_fn']}"
                                                        for tracker, rows in results[name].items()), flush=True)
    return results, notes


def markdown(report: dict) -> str:
    before, after = report["versions"]
    lines = ["# Divisions when linking alone, division cost chosen without Fluo-N2DH-SIM+ 01 (issue 26)", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; commit "
             f"{report['machine']['commit']}. **{before}** = the code at commit `{report['baseline']}` (today's "
             f"defaults before the change), **{after}** = this commit. Detections = the ground-truth masks (`TRA`), "
             "labels shuffled per frame (seed 0); scored with py-ctcmetrics (`tracking_ctc.score`). "
             "Division F1 = BC(0).",
             "", f"Settings chosen on: {report['chosen_on']}.", ""]
    if report.get("ctc"):
        lines += ["## Cell Tracking Challenge, sequence 01 (linking only)", "",
                  "| sequence | tracker | code | TRA | DET | LNK | division F1 (P / R) | divisions TP / FP / FN |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for sequence, trackers in report["ctc"].items():
            role = "held out" if sequence == "Fluo-N2DH-SIM+" else "chosen on"
            for tracker, versions in trackers.items():
                for version, row in versions.items():
                    lines.append(f"| {sequence} ({role}) | {tracker} | {version} | {row['TRA']:.4f} | "
                                 f"{row['DET']:.4f} | {row['LNK']:.4f} | {row['division_f1']:.3f} "
                                 f"({row['division_precision']:.2f} / {row['division_recall']:.2f}) | "
                                 f"{' / '.join(map(str, row['divisions_tp_fp_fn']))} |")
        lines.append("")
    if report.get("synthetic"):
        lines += ["## Synthetic movies the cost was chosen on (linking only, summed over movies)", "",
                  "| family | code | movies | divisions | TP / FP / FN | division F1 (P / R) | mean TRA | mean LNK |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for family, versions in report["synthetic"]["families"].items():
            for version, row in versions.items():
                f1 = "—" if not row["divisions"] or np.isnan(row["division_f1"]) else (
                    f"{row['division_f1']:.3f} ({row['division_precision']:.2f} / {row['division_recall']:.2f})")
                lines.append(f"| {family} | {version} | {row['movies']} | {row['divisions']} | "
                             f"{row['tp']} / {row['fp']} / {row['fn']} | {f1} | {row['TRA']:.4f} | {row['LNK']:.4f} |")
        lines += ["", "Families: *wide* (`Mitosis` ranges in `_mitoses()`: mothers condensing to 0.4-1 of their area "
                  "over 1-3 frames, daughters of 0.3-0.75 of it each, held together 0-4 frames, pushed apart at 0-3 "
                  "px/frame, off-axis up to 1.5 rad, growing back over 0-15 frames), 384² movies cropped to 320² "
                  "(cells enter and leave) or crowded 320² movies; *far*: mothers condensing to 0.25-0.8 over 2-5 "
                  "frames and daughters up to 2 semi-axes apart; *no divisions*: crowded, fast, cropped; *cut "
                  "nuclei*: copies of some of them in which about 4 % of a nucleus' frames start a 1-5 frame run cut "
                  "in two touching pieces (scored against the uncut truth: the false divisions are what matters "
                  "there, a proxy for segmentation errors end to end).", ""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- **{k}**: {v}" for k, v in report["notes"].items()] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="commit whose code gives the 'before' figures")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="CTC datasets (sequence 01), comma-separated")
    parser.add_argument("--no-synthetic", action="store_true", help="leave out the synthetic choice suite")
    parser.add_argument("--no-learned", action="store_true", help="leave out the learned-cost rows")
    parser.add_argument("--output", default=STEM, help="results file stem under benchmarks/results/")
    parser.add_argument("--link", nargs=2, help=argparse.SUPPRESS)  # worker: labels.npy tracks.csv
    parser.add_argument("--fit", nargs=2, help=argparse.SUPPRESS)  # worker: ground-truth folder, model.json
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.link or args.fit:
        _worker(args)
        return
    baseline = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    report = {"machine": machine(), "baseline": baseline, "chosen_on": CHOSEN_ON,
              "versions": [f"before ({baseline})", "after"], "notes": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        codes = {f"before ({baseline})": code_of(baseline, scratch), "after": code_of(None, scratch)}
        if not args.no_synthetic:
            print("synthetic choice suite", flush=True)
            report["synthetic"] = run_synthetic(codes, scratch)
        datasets = [d for d in args.datasets.split(",") if d]
        if datasets:
            print("CTC sequences 01", flush=True)
            report["ctc"], report["notes"] = run_ctc(codes, datasets, scratch, learned=not args.no_learned)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(report, indent=1, default=float))
    (RESULTS / f"{args.output}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
