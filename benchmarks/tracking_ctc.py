"""Tracking accuracy on Cell Tracking Challenge sequences: cytolens vs laptrack, trackpy, btrack.

For each sequence (``Fluo-N2DH-SIM+/01`` and ``Fluo-N2DH-GOWT1/01`` under ``../shared/data``):

(a) **linking only**: the detections are the ground-truth masks ``01_GT/TRA``, their
    labels shuffled per frame (seeded) so no identity leaks;
(b) **end to end**: the detections are our own segmentation (``cytolens.track.segment_movie``
    with its defaults: bundled ``nuclei`` model, one estimated diameter per movie, input gamma
    0.67 for these fluorescence movies, splits that come and go merged), cached under
    ``benchmarks/.cache/``.

Every tracker gets the same detections (label movie + a table ``t, label, y, x, area``)
and returns ``(t, label) -> track_id`` plus each track's parent; one harness turns that
into a CTC result folder (tracks split at gaps, CTC gap convention) and
``ctc_metrics.evaluate_sequence`` (py-ctcmetrics) scores all of them: TRA, DET, LNK and
division F1 = BC(0) (divisions found in the right frame with the right daughters).

cytolens runs with its defaults (nothing per sequence). ``cytolens-learned (trained on X)``
is cytolens with ``link_cost="learned"``: link and division probabilities fitted
(:func:`cytolens.track.fit_link_model_ctc`) to the ground truth of the *other* sequence X,
never to the one it is scored on; the fitted models are written next to the results
(``tracking_ctc.learned_<X>.json``). Peers get settings derived from
the same data in the same way (cell diameter D from the median detection area:
search radius D, gap closing over 2 frames within D, splitting within 1.5 D) plus the
documented defaults of each tool; we did not tune them per sequence either. Each peer is
installed into its own venv under ``benchmarks/.venvs/`` by this script; peers that
cannot be installed or run are recorded with the reason.

Usage: nice -n 15 python benchmarks/tracking_ctc.py [--linking-only] [--peers laptrack,trackpy,btrack]
           [--sequence 02] [--datasets Fluo-N2DH-SIM+,Fluo-N2DL-HeLa] [--filter-objects]
Writes benchmarks/results/tracking_ctc.{json,md} (``tracking_ctc_<sequence>.*`` for a sequence other
than 01; a ``_filtered`` suffix with ``--filter-objects``, which segments with the object filter
on; datasets are read from ``$CYTOLENS_SHARED_DATA/ctc_<dataset>/<sequence>[_GT]``). With
``--linking-only`` the end-to-end rows of the previous results file are kept, marked with the commit
they were measured at.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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

import cytolens.track as tracking
from cytolens.io import read_ctc_masks, write_ctc_result

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VENVS = HERE / ".venvs"
CACHE = HERE / ".cache" / "tracking_ctc"
DATA = Path(os.environ.get("CYTOLENS_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
DATASETS = ["Fluo-N2DH-SIM+", "Fluo-N2DH-GOWT1"]
METRICS = ["TRA", "DET", "LNK", "BC"]

# --- peers: each runs in its own venv; reads detections, writes t,label,track_id,parent_track_id -----------

PEER_PACKAGES = {
    "laptrack": ["laptrack==0.17.0"],
    "trackpy": ["trackpy==0.7"],
    "btrack": ["btrack==0.6.5"],
}

PEER_COMMON = r'''
import json, sys, time
import numpy as np, pandas as pd
detections = pd.read_csv(sys.argv[1])
params = json.loads(open(sys.argv[2]).read())
out_path = sys.argv[3]
labels = np.load(sys.argv[4]) if len(sys.argv) > 4 else None
def write(rows, seconds):
    rows = rows[["t", "label", "track_id", "parent_track_id"]].astype(int)
    rows.to_csv(out_path, index=False)
    print(json.dumps({"seconds": seconds}))
def write_laptrack(track_df, split_df, seconds):
    """laptrack's 0-based track ids and split table -> 1-based ids with parent ids (0 = none)."""
    parents = dict(zip(split_df["child_track_id"], split_df["parent_track_id"])) if len(split_df) else {}
    track_df["parent_track_id"] = track_df["track_id"].map(parents).fillna(-1).astype(int)
    track_df["track_id"] = track_df["track_id"] + 1
    track_df.loc[track_df.parent_track_id >= 0, "parent_track_id"] += 1
    track_df.loc[track_df.parent_track_id < 0, "parent_track_id"] = 0
    write(track_df, seconds)
'''

PEER_SCRIPTS = {
    # laptrack, centroid distances (LapTrack)
    "laptrack": PEER_COMMON + r'''
from laptrack import LapTrack
D = params["diameter"]
lt = LapTrack(metric="sqeuclidean", cutoff=D**2, gap_closing_metric="sqeuclidean", gap_closing_cutoff=D**2,
              gap_closing_max_frame_count=params["max_gap"], splitting_metric="sqeuclidean",
              splitting_cutoff=(1.5 * D) ** 2, merging_cutoff=False)
start = time.perf_counter()
track_df, split_df, merge_df = lt.predict_dataframe(detections, coordinate_cols=["y", "x"], frame_col="t",
                                                    only_coordinate_cols=False)
seconds = time.perf_counter() - start
track_df = track_df.reset_index(drop=True)
write_laptrack(track_df, split_df, seconds)
''',
    # laptrack, label overlaps (OverLapTrack): 1 - IoU for links and gaps, 1 - (daughter covered) for splits
    "laptrack-overlap": PEER_COMMON + r'''
from laptrack import OverLapTrack
olt = OverLapTrack(metric_coefs=(1.0, 0.0, -1.0, 0.0, 0.0), gap_closing_metric_coefs=(1.0, 0.0, -1.0, 0.0, 0.0),
                   splitting_metric_coefs=(1.0, 0.0, 0.0, 0.0, -1.0), cutoff=0.9, gap_closing_cutoff=0.9,
                   gap_closing_max_frame_count=params["max_gap"], splitting_cutoff=0.9, merging_cutoff=False)
start = time.perf_counter()
track_df, split_df, merge_df = olt.predict_overlap_dataframe(labels)
seconds = time.perf_counter() - start
track_df = track_df.reset_index().rename(columns={"frame": "t"})
write_laptrack(track_df, split_df, seconds)
''',
    "trackpy": PEER_COMMON + r'''
import trackpy as tp
tp.quiet()
D = params["diameter"]
frame = detections.rename(columns={"t": "frame"})
start = time.perf_counter()
linked = tp.link(frame, search_range=D, memory=params["max_gap"], adaptive_stop=1.0, adaptive_step=0.9)
seconds = time.perf_counter() - start
linked = linked.rename(columns={"frame": "t"})
linked["track_id"] = linked["particle"].astype(int) + 1
linked["parent_track_id"] = 0
write(linked, seconds)
''',
    "btrack": PEER_COMMON + r'''
import btrack, tempfile, os
D = params["diameter"]
config = {"TrackerConfig": {
  "MotionModel": {"name": "cell_motion", "dt": 1.0, "measurements": 3, "states": 6, "accuracy": 7.5,
    "prob_not_assign": 0.1, "max_lost": 5,
    "A": {"matrix": [1,0,0,1,0,0, 0,1,0,0,1,0, 0,0,1,0,0,1, 0,0,0,1,0,0, 0,0,0,0,1,0, 0,0,0,0,0,1]},
    "H": {"matrix": [1,0,0,0,0,0, 0,1,0,0,0,0, 0,0,1,0,0,0]},
    "P": {"sigma": 150.0, "matrix": [0.1,0,0,0,0,0, 0,0.1,0,0,0,0, 0,0,0.1,0,0,0, 0,0,0,1,0,0, 0,0,0,0,1,0, 0,0,0,0,0,1]},
    "G": {"sigma": 15.0, "matrix": [0.5,0.5,0.5,1,1,1]},
    "R": {"sigma": 5.0, "matrix": [1,0,0, 0,1,0, 0,0,1]}},
  "ObjectModel": {},
  "HypothesisModel": {"name": "cell_hypothesis",
    "hypotheses": ["P_FP", "P_init", "P_term", "P_link", "P_branch", "P_dead"],
    "lambda_time": 5.0, "lambda_dist": 3.0, "lambda_link": 10.0, "lambda_branch": 50.0, "eta": 1e-10,
    "theta_dist": 20.0, "theta_time": 5.0, "dist_thresh": D, "time_thresh": params["max_gap"] + 1,
    "apop_thresh": 5, "segmentation_miss_rate": 0.1, "apoptosis_rate": 0.001, "relax": True}}}
path = os.path.join(tempfile.mkdtemp(), "cell_config.json")
open(path, "w").write(json.dumps(config))
objects = btrack.utils.objects_from_dict({"t": detections["t"].to_numpy(), "x": detections["x"].to_numpy(),
                                          "y": detections["y"].to_numpy(), "z": np.zeros(len(detections)),
                                          "label": detections["label"].to_numpy()})
start = time.perf_counter()
with btrack.BayesianTracker(verbose=False) as tracker:
    tracker.configure_from_file(path)
    tracker.max_search_radius = D
    tracker.append(objects)
    tracker.volume = ((0, float(detections["x"].max()) + 1), (0, float(detections["y"].max()) + 1), (-1e5, 1e5))
    tracker.track_interactive(step_size=100)
    tracker.optimize()
    tracks = tracker.tracks
seconds = time.perf_counter() - start
rows = []
for trk in tracks:
    for t, y, x, dummy in zip(trk.t, trk.y, trk.x, trk.dummy):
        if not dummy:
            rows.append((t, y, x, trk.ID, trk.parent if trk.parent != trk.ID else 0))
found = pd.DataFrame(rows, columns=["t", "y", "x", "track_id", "parent_track_id"])
# map back to labels by position (btrack keeps coordinates)
found = found.merge(detections[["t", "y", "x", "label"]], on=["t", "y", "x"], how="inner")
write(found, seconds)
''',
}


def peer_python(name: str) -> Path:
    """The venv python for a peer, created and installed on first use."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    module = {"laptrack": "laptrack", "trackpy": "trackpy", "btrack": "btrack"}[name]
    if python.exists() and subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES[name]], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(PEER_PACKAGES[name])} failed: {done.stderr.strip()[-300:]}")
    check = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"import {module} fails: {check.stderr.strip().splitlines()[-1]}")
    return python


def run_peer(name: str, labels: np.ndarray, detections: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, float]:
    venv = "laptrack" if name.startswith("laptrack") else name
    python = peer_python(venv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        detections[["t", "label", "y", "x", "area"]].to_csv(tmp / "det.csv", index=False)
        (tmp / "params.json").write_text(json.dumps(params))
        (tmp / "run.py").write_text(PEER_SCRIPTS[name])
        args = [str(python), str(tmp / "run.py"), str(tmp / "det.csv"), str(tmp / "params.json"), str(tmp / "out.csv")]
        if name == "laptrack-overlap":
            np.save(tmp / "labels.npy", labels)
            args.append(str(tmp / "labels.npy"))
        done = subprocess.run(args, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        return pd.read_csv(tmp / "out.csv"), seconds


# --- one harness for everyone ------------------------------------------------------------------------------


def shuffle_labels(movie: np.ndarray, seed: int = 0) -> np.ndarray:
    """Relabel every frame with a random permutation (no identity carried between frames)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(movie.shape, np.uint16)
    for t, frame in enumerate(movie):
        ids = np.unique(frame)
        ids = ids[ids > 0]
        lookup = np.zeros(int(frame.max()) + 1, np.uint16)
        lookup[ids] = rng.permutation(len(ids)) + 1
        out[t] = lookup[frame]
    return out


def contiguous_tracks(table: pd.DataFrame) -> pd.DataFrame:
    """Split tracks at gaps (CTC convention: the piece after a gap is a child of the piece before)."""
    table = table.sort_values(["track_id", "t"]).reset_index(drop=True)
    piece = (table.groupby("track_id")["t"].diff().fillna(1) != 1).groupby(table["track_id"]).cumsum()
    key = list(zip(table["track_id"], piece))
    new_ids = {k: i + 1 for i, k in enumerate(dict.fromkeys(key))}
    table["new_id"] = [new_ids[k] for k in key]
    last_piece = {tid: new_ids[(tid, p)] for tid, p in zip(table["track_id"], piece)}  # last wins
    parents = []
    for (tid, p), parent in zip(key, table["parent_track_id"]):
        if p > 0:
            parents.append(new_ids[(tid, p - 1)])
        else:
            parents.append(last_piece.get(int(parent), 0) if parent > 0 else 0)
    table["parent_track_id"] = parents
    table["track_id"] = table["new_id"]
    return table.drop(columns="new_id")


def score(labels: np.ndarray, table: pd.DataFrame, gt: Path) -> dict:
    """Write a CTC result folder and score it with py-ctcmetrics."""
    from ctc_metrics import evaluate_sequence

    table = contiguous_tracks(table)
    with tempfile.TemporaryDirectory() as folder:
        write_ctc_result(folder, tracking.relabel(labels, table), tracking.ctc_tracks(table))
        with contextlib.redirect_stdout(io.StringIO()):
            res = evaluate_sequence(folder, str(gt), metrics=list(METRICS), threads=1)
    tp, fp, fn = (int(res[f"{k}_div(0)"]) for k in ("tp", "fp", "fn"))
    # py-ctcmetrics gives no BC for a movie without divisions in truth or result: F1 is then undefined (NaN)
    f1 = float(res["BC(0)"]) if res["BC(0)"] is not None else (2 * tp / (2 * tp + fp + fn) if fp + fn else np.nan)
    return {"TRA": float(res["TRA"]), "DET": float(res["DET"]), "LNK": float(res["LNK"]),
            "division_f1": f1, "division_precision": tp / (tp + fp) if tp + fp else 0.0,
            "division_recall": tp / (tp + fn) if tp + fn else 0.0, "divisions_tp_fp_fn": [tp, fp, fn],
            "AOGM": float(res["AOGM"]), "valid": int(res.get("Valid", 1) or 1)}


def segmentation(root: Path, name: str, sequence: str, filter_objects: bool = False, model: str = "nuclei",
                 gamma: float | None = None) -> np.ndarray:
    """Our own segmentation of every frame (cached per model version, settings and the segmentation code).

    ``gamma`` None is ``segment_movie``'s default (0.67 for these dark-background movies).
    """
    import hashlib
    import inspect

    from cytolens.models import package as packages
    from cytolens.tasks.segmentation import contact_watershed, deep_watershed, inference, object_filter, training
    from cytolens.track import consistency, pipeline

    from cytolens.io import read_image
    from cytolens.models import resolve
    from cytolens.track.pipeline import segment_movie

    package = resolve(model)
    digest = hashlib.sha1(b"".join((package / f).read_bytes() for f in ("weights.safetensors", "model.json",
                                                                         "object_filter.json", "size_model.json")
                                   if (package / f).is_file()))
    for module in (pipeline, consistency, inference, deep_watershed, contact_watershed, object_filter, training,
                   packages):
        digest.update(inspect.getsource(module).encode())
    digest.update(b"filtered" if filter_objects else b"")
    digest.update(b"" if gamma is None else f"gamma{gamma:g}".encode())
    cached = CACHE / f"{name}_{sequence}_segmentation_{digest.hexdigest()[:12]}.npy"
    if cached.exists():
        return np.load(cached)
    frames = sorted((root / sequence).glob("t*.tif"))
    labels = segment_movie(np.stack([read_image(f) for f in frames]), model=model, gamma=gamma,
                           filter_objects=filter_objects).astype(np.uint16)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, labels)
    return labels


def learned_models(roots: dict[str, Path], sequence: str, stem: str) -> dict[str, Path]:
    """Fit a learned link cost to each sequence's ground truth (written to results/<stem>.learned_<name>.json)."""
    paths = {}
    for name, root in roots.items():
        start = time.perf_counter()
        model = tracking.fit_link_model_ctc(root / f"{sequence}_GT", trained_on=f"{name}/{sequence}_GT")
        path = model.save(RESULTS / f"{stem}.learned_{name}.json")
        print(f"  fitted the learned cost to {name} in {time.perf_counter() - start:.1f} s "
              f"({model.link.positives} same-cell pairs, "
              f"{model.division.positives if model.division else 0} annotated daughters)", flush=True)
        paths[name] = path
    return paths


def evaluate(labels: np.ndarray, gt: Path, peers: list[str], notes: dict, learned: dict[str, Path]) -> dict:
    detections = tracking.detect(labels)
    rows = {}
    # every cytolens run is timed before any scoring (py-ctcmetrics) runs in this process
    start = time.perf_counter()
    result = tracking.track(labels=labels)
    seconds = time.perf_counter() - start
    runs = {}
    for other, path in learned.items():
        begin = time.perf_counter()
        found = tracking.track(labels=labels, link_cost="learned", link_model=str(path))
        runs[other] = (found, time.perf_counter() - begin)
    rows["cytolens"] = {**score(labels, result.tracks, gt), "seconds": seconds,
                        "settings": "defaults (estimated: " + ", ".join(
                            f"{k}={result.config[k]:.1f}" for k in ("cell_diameter", "search_radius",
                                                                     "division_radius")) + ")"}
    for other, (found, found_seconds) in runs.items():
        rows[f"cytolens-learned (trained on {other})"] = {**score(labels, found.tracks, gt),
                                                          "seconds": found_seconds,
                                                          "settings": f"link_cost='learned', model "
                                                                      f"{learned[other].name}"}
    diameter = float(result.config["cell_diameter"])
    params = {"diameter": diameter, "max_gap": 2}
    for peer in peers:
        try:
            table, peer_seconds = run_peer(peer, labels, detections, params)
            rows[peer] = {**score(labels, table, gt), "seconds": peer_seconds}
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            notes[peer] = f"could not run: {exc}"
            rows[peer] = None
        print(f"  {peer}: {rows[peer] and {k: round(v, 4) for k, v in rows[peer].items() if isinstance(v, float)}}",
              flush=True)
    for name in [r for r in rows if r.startswith("cytolens")]:
        print(f"  {name}: { {k: round(v, 4) for k, v in rows[name].items() if isinstance(v, float)} }", flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = ["# Tracking on CTC sequences (py-ctcmetrics scores)", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
             f"commit {report['machine']['commit']}. Labels shuffled per frame (seed {report['seed']}). "
             "Division F1 = BC(0).", ""]
    sequence = report.get("sequence", "01")
    for mode, title in (("linking", f"Linking only (detections = {sequence}_GT/TRA masks)"),
                        ("end_to_end", "End to end (detections = cytolens.track.segment_movie defaults, bundled nuclei model"
                                       + (", object filter on" if report.get("filter_objects") else "") + ")")):
        if not any(mode in seq for seq in report["results"].values()):
            continue
        lines += [f"## {title}", ""]
        if mode in report.get("kept_from", {}):
            lines += [f"Kept from the earlier run at commit {report['kept_from'][mode]} (not rerun this time).", ""]
        lines += ["| sequence | tracker | TRA | DET | LNK | division F1 (P / R) | link time (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for seq, modes in report["results"].items():
            for tracker, row in modes.get(mode, {}).items():
                if row is None:
                    lines.append(f"| {seq} | {tracker} | — | — | — | — | could not run |")
                    continue
                lines.append(f"| {seq} | {tracker} | {row['TRA']:.4f} | {row['DET']:.4f} | {row['LNK']:.4f} | "
                             f"{row['division_f1']:.3f} ({row['division_precision']:.2f} / "
                             f"{row['division_recall']:.2f}) | {row['seconds']:.2f} |")
        lines.append("")
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- **{k}**: {v}" for k, v in report["notes"].items()] + [""]
    lines += ["Link time: cytolens = the whole `cytolens.track(labels=...)` call (measuring objects and mask "
              "overlaps included); peers = their linking call only. Times on a shared 2-core machine are noisy.", ""]
    lines += ["Peers were given settings derived from the same estimated cell diameter D (search radius D, gap "
              "closing over 2 frames, splits within 1.5 D; OverLapTrack: 1 - IoU links, 1 - covered-fraction "
              "splits, cutoffs 0.9), not tuned per sequence; cytolens ran with its defaults.", ""]
    learned_note = ("`cytolens-learned (trained on X)`: `link_cost=\"learned\"` with link and division "
                    "probabilities (logistic regressions) fitted to the ground truth of sequence X only, the other "
                    "sequence; its fitted model is `tracking_ctc.learned_X.json`. With fewer than 3 annotated "
                    "divisions (GOWT1 has 2) no division model is fitted and the hand-made division cost is used "
                    "on the learned scale.")
    lines += [learned_note, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default="laptrack,laptrack-overlap,trackpy,btrack")
    parser.add_argument("--linking-only", "--skip-end-to-end", dest="linking_only", action="store_true",
                        help="run the linking-only part; keep the end-to-end rows of the previous results")
    parser.add_argument("--no-learned", action="store_true", help="leave out the learned-cost rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence", default="01", help="CTC sequence number (01, 02, ...)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="CTC dataset names, comma-separated")
    parser.add_argument("--filter-objects", action="store_true",
                        help="end to end with the object filter on (off by default for movies)")
    parser.add_argument("--model", default="nuclei", help="segmentation model end to end (bundled name or package)")
    parser.add_argument("--gamma", type=float, help="input gamma end to end (default: segment_movie's, 0.67 here)")
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. a candidate model's name)")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    sequence = args.sequence
    stem = ("tracking_ctc" if sequence == "01" else f"tracking_ctc_{sequence}") + (
        "_filtered" if args.filter_objects else "") + (f"_gamma{args.gamma:g}" if args.gamma else "") + (
        f"_{args.tag}" if args.tag else "")
    roots = {name: DATA / f"ctc_{name}" for name in args.datasets.split(",") if name}
    report = {"machine": machine(), "seed": args.seed, "sequence": sequence, "filter_objects": args.filter_objects,
              "model": args.model, "gamma": args.gamma,
              "results": {}, "notes": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    available = {name: root for name, root in roots.items() if (root / f"{sequence}_GT" / "TRA").is_dir()}
    fitted = {} if args.no_learned or len(available) < 2 else learned_models(available, sequence, stem)
    previous = RESULTS / f"{stem}.json"
    earlier = json.loads(previous.read_text()) if args.linking_only and previous.is_file() else None
    for name, root in roots.items():
        gt = root / f"{sequence}_GT"
        if not (gt / "TRA").is_dir() or not (root / sequence).is_dir():
            report["notes"][name] = f"{root}/{sequence} and {gt}/TRA not found"
            continue
        report["results"][name] = {}
        print(f"{name}: linking only", flush=True)
        labels = shuffle_labels(read_ctc_masks(gt / "TRA"), args.seed)
        learned = {other: path for other, path in fitted.items() if other != name}  # never the sequence scored
        report["results"][name]["linking"] = evaluate(labels, gt, peers, report["notes"], learned)
        if args.linking_only:
            kept = (earlier or {}).get("results", {}).get(name, {}).get("end_to_end")
            if kept:
                report["results"][name]["end_to_end"] = kept
                report.setdefault("kept_from", {})["end_to_end"] = earlier.get("kept_from", {}).get(
                    "end_to_end", earlier["machine"]["commit"])
        else:
            try:
                labels = segmentation(root, name, sequence, args.filter_objects, args.model, args.gamma)
            except Exception as exc:
                report["notes"][f"{name} end to end"] = f"segmentation failed: {type(exc).__name__}: {exc}"
                continue
            print(f"{name}: end to end", flush=True)
            learned = {other: path for other, path in fitted.items() if other != name}
            report["results"][name]["end_to_end"] = evaluate(labels, gt, peers, report["notes"], learned)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float))
    (RESULTS / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
