"""Segmentation quality on Cell Tracking Challenge movies: SEG, nuclei cut into pieces, specks.

For ``Fluo-N2DH-SIM+/01`` and ``Fluo-N2DH-GOWT1/01`` (``../shared/data``), every frame is
segmented as ``benchmarks/tracking_ctc.py`` segments it end to end (``cytolens.track.segment_movie``,
one diameter per movie, cached under ``benchmarks/.cache/``), with a chosen model and input gamma,
and scored against the annotations:

* **SEG**: the CTC measure on the frames with ``01_GT/SEG`` truth (all 65 frames of SIM+; 30
  gold frames of GOWT1, where only some nuclei are annotated);
* **cut**: a ``01_GT/TRA`` nucleus is cut in a frame when two or more predicted objects are pieces
  of it: each lies mostly (over half its area) on it and covers at least 10 % of it; reported as
  the share of frames with any cut nucleus and the worst share of a nucleus's frames in which it
  is cut (issue 26: at most 2 %);
* **specks**: predicted objects that touch no TRA nucleus, per frame.

Neither movie was used to train the bundled models; SIM+ 01's look chose ``segment_movie``'s
default gamma 0.67, so ``--gamma 1`` is the setting no movie chose.

Usage: python benchmarks/segmentation_ctc.py [--model nuclei] [--gamma 1] [--tag NAME]
Writes benchmarks/results/segmentation_ctc[_gammaG][_TAG].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402
from tracking_ctc import DATA, DATASETS, RESULTS, segmentation  # noqa: E402

from cytolens.io import read_ctc_masks  # noqa: E402
from cytolens.metrics.tracking import seg_score  # noqa: E402

#: a predicted object is a piece of a nucleus when over this share of it lies on the nucleus ...
PIECE_INSIDE = 0.5
#: ... and it covers at least this share of the nucleus
PIECE_COVER = 0.1


def pieces_and_specks(truth: np.ndarray, predicted: np.ndarray) -> tuple[dict[int, int], int]:
    """``{nucleus id: predicted objects assigned to it}`` and the number of predicted objects on no nucleus."""
    pairs = np.stack([predicted.ravel(), truth.ravel()], axis=1).astype(np.int64)
    pairs = pairs[pairs[:, 0] > 0]
    sizes = np.bincount(pairs[:, 0])
    nucleus_sizes = np.bincount(truth.ravel().astype(np.int64))
    inside = pairs[pairs[:, 1] > 0]
    codes, counts = np.unique(inside[:, 0].astype(np.int64) * (truth.max() + 1) + inside[:, 1], return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for code, count in zip(codes, counts):
        obj, nucleus = divmod(int(code), int(truth.max()) + 1)
        if count > best.get(obj, (0, 0))[0]:
            best[obj] = (count, nucleus)
    pieces: dict[int, int] = {}
    for obj, (count, nucleus) in best.items():
        if count > PIECE_INSIDE * sizes[obj] and count >= PIECE_COVER * nucleus_sizes[nucleus]:
            pieces[nucleus] = pieces.get(nucleus, 0) + 1
    specks = len(set(np.unique(predicted[predicted > 0]).tolist()) - set(best))
    return pieces, specks


def score_movie(labels: np.ndarray, gt: Path) -> dict:
    tra = read_ctc_masks(gt / "TRA")
    cut_frames, cut_counts, frames_seen, specks, objects, nuclei = 0, {}, {}, [], [], []
    for t in range(len(labels)):
        pieces, speck_count = pieces_and_specks(tra[t], labels[t])
        present = [n for n in np.unique(tra[t]) if n > 0]
        for nucleus in present:
            frames_seen[nucleus] = frames_seen.get(nucleus, 0) + 1
            if pieces.get(nucleus, 0) >= 2:
                cut_counts[nucleus] = cut_counts.get(nucleus, 0) + 1
        cut_frames += any(pieces.get(n, 0) >= 2 for n in present)
        specks.append(speck_count)
        objects.append(len(np.unique(labels[t])) - 1)
        nuclei.append(len(present))
    seg_frames = sorted((gt / "SEG").glob("man_seg*.tif"))
    from cytolens.io import read_image

    reference = {int(p.stem.removeprefix("man_seg")): read_image(p) for p in seg_frames}
    worst = max((cut_counts.get(n, 0) / frames_seen[n] for n in frames_seen), default=0.0)
    return {"SEG": float(seg_score(reference, labels)),
            "frames": len(labels), "frames_with_a_cut_nucleus": cut_frames / len(labels),
            "worst_nucleus_cut_share": worst, "nuclei_ever_cut": sum(1 for n in cut_counts if cut_counts[n]),
            "mean_objects_per_frame": float(np.mean(objects)), "mean_nuclei_per_frame": float(np.mean(nuclei)),
            "mean_specks_per_frame": float(np.mean(specks)), "seg_frames": len(reference)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--gamma", type=float)
    parser.add_argument("--tag", default="")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    stem = "segmentation_ctc" + (f"_gamma{args.gamma:g}" if args.gamma else "") + (f"_{args.tag}" if args.tag else "")
    report = {"machine": machine(), "model": args.model, "gamma": args.gamma, "results": {}}
    for name in args.datasets.split(","):
        root = DATA / f"ctc_{name}"
        if not (root / "01_GT" / "TRA").is_dir():
            sys.exit(f"{root}/01_GT not found")
        labels = segmentation(root, name, "01", False, args.model, args.gamma)
        report["results"][name] = score_movie(labels, root / "01_GT")
        print(name, json.dumps(report["results"][name]), flush=True)
    lines = [f"# Segmentation on CTC movies — model {args.model}, gamma {args.gamma or 'segment_movie default (0.67)'}",
             "", f"Machine: {report['machine']['cpu']}; commit {report['machine']['commit']}. "
             "Written by benchmarks/segmentation_ctc.py (see its docstring for the measures).", "",
             "| movie | SEG | frames with a cut nucleus | worst nucleus: share of its frames cut | nuclei ever cut | "
             "objects / nuclei per frame | specks per frame |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in report["results"].items():
        lines.append(f"| {name} 01 | {r['SEG']:.3f} | {r['frames_with_a_cut_nucleus']:.1%} | "
                     f"{r['worst_nucleus_cut_share']:.1%} | {r['nuclei_ever_cut']} | {r['mean_objects_per_frame']:.1f} / "
                     f"{r['mean_nuclei_per_frame']:.1f} | {r['mean_specks_per_frame']:.2f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
