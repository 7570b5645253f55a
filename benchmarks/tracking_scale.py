"""Linking speed at scale: a synthetic movie of ~1000 cells x 100 frames with divisions (~10^5 detections).

Cells random-walk (sigma 2 px per frame) in a 1200 x 1200 field; each divides with
probability 0.004 per frame (daughters 5 px either side of the mother, half its area,
growing back) and leaves with the same probability, so the count stays near 1000. The
same detection table (no label images) is linked by cytolens (defaults) and by laptrack
(LapTrack, in its own venv, cutoffs from the same diameter: links and gap closing
within one diameter, splits within 1.5 diameters), in the same run. We report the wall
time of the linking call only (no I/O) and, for both, the fraction of true frame-to-frame
links recovered and the division F1 against the simulated truth.

Usage: nice -n 15 python benchmarks/tracking_scale.py [--cells 1000] [--frames 100] [--seed 0]
Writes benchmarks/results/tracking_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine
from tracking_ctc import PEER_SCRIPTS, peer_python

import cytolens.track as tracking

RESULTS = Path(__file__).resolve().parent / "results"


def simulate(cells: int, frames: int, seed: int, size: float = 1200.0) -> tuple[pd.DataFrame, dict[int, int]]:
    """Detections with the true cell id per row, and {daughter cell: mother cell}."""
    rng = np.random.default_rng(seed)
    position = rng.uniform(10, size - 10, (cells, 2))
    area = rng.uniform(60, 100, cells)
    ident = np.arange(cells)
    next_id = cells
    parents: dict[int, int] = {}
    rows = []
    for t in range(frames):
        rows.append(pd.DataFrame({"t": t, "y": position[:, 0], "x": position[:, 1], "area": area, "cell": ident}))
        position = position + rng.normal(0, 2.0, position.shape)
        area = np.minimum(area * 1.02, 100)
        leave = rng.random(len(ident)) < 0.004
        divide = (rng.random(len(ident)) < 0.004) & ~leave
        inside = np.all((position > 0) & (position < size), axis=1)
        keep = ~leave & ~divide & inside
        angle = rng.uniform(0, np.pi, divide.sum())
        offset = 5.0 * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        new_ids = np.arange(next_id, next_id + 2 * divide.sum())
        next_id += 2 * divide.sum()
        for mother, a, b in zip(ident[divide], new_ids[0::2], new_ids[1::2]):
            parents[int(a)] = parents[int(b)] = int(mother)
        position = np.concatenate([position[keep], position[divide] + offset, position[divide] - offset])
        area = np.concatenate([area[keep], area[divide] / 2, area[divide] / 2])
        # same order as position/area: kept cells, first daughters, second daughters
        ident = np.concatenate([ident[keep], new_ids[0::2], new_ids[1::2]])
    table = pd.concat(rows, ignore_index=True)
    table["label"] = table.groupby("t").cumcount() + 1
    return table, parents


def accuracy(table: pd.DataFrame, truth: dict[int, int]) -> dict:
    """Fraction of true consecutive links recovered (same track), and division F1 by (mother, daughters)."""
    table = table.sort_values(["cell", "t"])
    same_cell = table["cell"].to_numpy()[1:] == table["cell"].to_numpy()[:-1]
    same_track = table["track_id"].to_numpy()[1:] == table["track_id"].to_numpy()[:-1]
    link_recall = float((same_cell & same_track).sum() / max(same_cell.sum(), 1))
    last_cell_of_track = table.groupby("track_id")["cell"].last()
    first_cell_of_track = table.groupby("track_id")["cell"].first()
    parents = table.groupby("track_id")["parent_track_id"].first()
    found = {}
    for track, parent in parents.items():
        if parent > 0:
            found.setdefault(int(last_cell_of_track[parent]), set()).add(int(first_cell_of_track[track]))
    found = {m: kids for m, kids in found.items() if len(kids) >= 2}
    true = {}
    for daughter, mother in truth.items():
        true.setdefault(mother, set()).add(daughter)
    tp = sum(1 for m, kids in found.items() if true.get(m) == kids)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"link_recall": link_recall, "division_f1": f1, "divisions_true": len(true), "divisions_found": len(found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-laptrack", action="store_true")
    args = parser.parse_args()
    table, truth = simulate(args.cells, args.frames, args.seed)
    print(f"{len(table)} detections, {len(truth) // 2} divisions", flush=True)
    start = time.perf_counter()
    result = tracking.track(detections=table[["t", "label", "y", "x", "area", "cell"]])
    ours_seconds = time.perf_counter() - start
    ours = {"seconds": ours_seconds, **accuracy(result.tracks, truth),
            "config": {k: result.config[k] for k in ("cell_diameter", "search_radius", "division_radius")}}
    print(f"cytolens: {ours}", flush=True)
    report = {"machine": machine(), "detections": len(table), "frames": args.frames, "cells_start": args.cells,
              "true_divisions": len(truth) // 2, "seed": args.seed, "cytolens": ours}
    if not args.skip_laptrack:
        try:
            python = peer_python("laptrack")
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                table[["t", "label", "y", "x", "area"]].to_csv(tmp / "det.csv", index=False)
                params = {"diameter": float(result.config["cell_diameter"]), "max_gap": 2}
                (tmp / "params.json").write_text(json.dumps(params))
                (tmp / "run.py").write_text(PEER_SCRIPTS["laptrack"])
                done = subprocess.run([str(python), str(tmp / "run.py"), str(tmp / "det.csv"), str(tmp / "params.json"),
                                       str(tmp / "out.csv")], capture_output=True, text=True, timeout=3600)
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.strip().splitlines()[-1])
                seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
                linked = pd.read_csv(tmp / "out.csv").merge(table[["t", "label", "cell"]], on=["t", "label"])
            report["laptrack"] = {"seconds": seconds, **accuracy(linked, truth), "params": params}
            report["speedup_vs_laptrack"] = seconds / ours_seconds
            print(f"laptrack: {report['laptrack']}", flush=True)
        except Exception as exc:
            report["laptrack"] = f"could not run: {exc}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracking_scale.json").write_text(json.dumps(report, indent=2, default=float))
    lines = ["# Linking speed: synthetic movie with divisions", "",
             f"{report['detections']} detections ({args.cells} cells at start x {args.frames} frames, "
             f"{report['true_divisions']} divisions); machine {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, commit {report['machine']['commit']}. Same table, same run.", "",
             "| tracker | link time (s) | true links recovered | division F1 |", "| --- | --- | --- | --- |"]
    for name in ("cytolens", "laptrack"):
        row = report.get(name)
        if isinstance(row, dict):
            lines.append(f"| {name} | {row['seconds']:.2f} | {row['link_recall']:.4f} | {row['division_f1']:.3f} |")
        elif row:
            lines.append(f"| {name} | {row} | | |")
    if "speedup_vs_laptrack" in report:
        lines += ["", f"cytolens is {report['speedup_vs_laptrack']:.1f}x faster than laptrack on this movie."]
    (RESULTS / "tracking_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
