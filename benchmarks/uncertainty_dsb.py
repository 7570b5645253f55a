"""How sure are the DSB2018 figures? Bootstrap intervals over images, from the per-image tables.

Every AP figure of ``segmentation_dsb.py`` and ``peers_dsb.py`` is a mean over 80 test (or 41
val) images; another draw of images from the same population would give another mean, and the
issue's threshold (AP@0.5 >= 0.85) will be checked on DSB2018 images we do not have. This script
resamples the images of each committed per-image table with replacement, within each modality
(the split was stratified by modality, so each resample keeps its make-up), and reports the
2.5 / 97.5 % percentiles of the resampled means (a 95 % percentile bootstrap interval) and the
standard error. Models scored on the same images are also compared *paired*: the interval of the
mean per-image difference, which is much narrower than either model's own interval.

It reads only tables already in ``benchmarks/results/`` (no segmentation, a few seconds):

- ``segmentation_dsb_<model>_per_image.csv`` (test) and ``segmentation_dsb_val_<model>_per_image.csv``
  (val): ``cytolens.segment(image, model)`` as a user gets it, diameter estimated;
- ``peers_dsb_per_image.csv``: StarDist and cytolens given the same inputs (true diameter).

Usage::

    python benchmarks/uncertainty_dsb.py [--resamples 10000] [--seed 0]

Writes ``results/uncertainty_dsb.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
USER_MODELS = ("nuclei", "nuclei_fast", "nuclei_pixel_classes")
#: (label, model A, model B) pairs compared image by image in peers_dsb_per_image.csv
PEER_PAIRS = (("same budget, trained from scratch on 2 CPU cores", "nuclei_fast v1 (5e6d759) + object filter fitted on train",
               "stardist"),
              ("same budget, without the object filter", "nuclei_fast v1 (5e6d759)", "stardist"),
              ("bundled model (GPU-trained) vs StarDist (CPU, same budget as nuclei_fast v1)", "nuclei v4.1 (9ccb243)",
               "stardist"))
GOAL = 0.85
#: per-image columns compared between two models
METRICS = ("ap50", "ap75", "kaggle")


def bootstrap_means(values: np.ndarray, strata: np.ndarray, resamples: int = 10_000, seed: int = 0) -> np.ndarray:
    """Means of ``resamples`` stratified resamples of ``values`` (each stratum keeps its size).

    >>> values = np.array([0.0, 1.0, 0.5, 0.5]); strata = np.array(["a", "a", "b", "b"])
    >>> means = bootstrap_means(values, strata, resamples=2000)
    >>> bool(abs(means.mean() - values.mean()) < 0.02), bool(means.min() >= 0.25), bool(means.max() <= 0.75)
    (True, True, True)
    >>> float(np.ptp(bootstrap_means(np.full(5, 0.8), np.zeros(5), resamples=50)))  # no spread, no interval
    0.0
    """
    values = np.asarray(values, dtype=float)
    strata = np.asarray(strata)
    if len(values) == 0 or len(values) != len(strata):
        raise ValueError("values and strata must be non-empty and of the same length")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for stratum in np.unique(strata):
        members = values[strata == stratum]
        picks = rng.integers(0, len(members), size=(resamples, len(members)))
        total += members[picks].sum(axis=1)
    return total / len(values)


def summary(values: np.ndarray, strata: np.ndarray, resamples: int, seed: int) -> dict:
    """Mean, standard error and 95 % percentile interval of the mean (stratified bootstrap), and the
    share of resampled means at or above :data:`GOAL` and above zero."""
    means = bootstrap_means(values, strata, resamples, seed)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"images": len(values), "mean": float(np.mean(values)), "se": float(means.std(ddof=1)),
            "ci95": [float(low), float(high)], "share_of_resamples_at_or_above_goal": float((means >= GOAL).mean()),
            "share_of_resamples_above_zero": float((means > 0).mean())}


def paired(a: pd.DataFrame, b: pd.DataFrame, resamples: int, seed: int) -> dict:
    """Intervals of the mean per-image differences a − b in each of :data:`METRICS`; both tables
    must cover the same images."""
    both = a[["id", "modality", *METRICS]].merge(b[["id", *METRICS]], on="id", suffixes=("", "_b"))
    if len(both) != len(a) or len(both) != len(b):
        raise ValueError(f"the two tables cover different images ({len(a)}, {len(b)}, {len(both)} shared)")
    return {metric: summary((both[metric] - both[f"{metric}_b"]).to_numpy(), both["modality"].to_numpy(),
                            resamples, seed) for metric in METRICS}


def user_tables() -> dict[tuple[str, str], pd.DataFrame]:
    tables = {}
    for model in USER_MODELS:
        for split, stem in (("test", f"segmentation_dsb_{model}"), ("val", f"segmentation_dsb_val_{model}")):
            path = RESULTS / f"{stem}_per_image.csv"
            if path.exists():
                tables[(model, split)] = pd.read_csv(path)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    report = {"machine": machine(), "resamples": args.resamples, "seed": args.seed, "goal_ap50": GOAL,
              "as_a_user_gets_it": [], "paired_as_a_user_gets_it": [], "peers_same_input": [], "paired_peers": []}
    tables = user_tables()
    for (model, split), table in tables.items():
        report["as_a_user_gets_it"].append({"model": model, "split": split, **summary(
            table["ap50"].to_numpy(), table["modality"].to_numpy(), args.resamples, args.seed)})
    for split in ("test", "val"):
        for other in USER_MODELS[1:]:
            if ("nuclei", split) in tables and (other, split) in tables:
                report["paired_as_a_user_gets_it"].append({"a": "nuclei", "b": other, "split": split, **paired(
                    tables[("nuclei", split)], tables[(other, split)], args.resamples, args.seed)})
    peers = pd.read_csv(RESULTS / "peers_dsb_per_image.csv")
    for (model, split), table in peers.groupby(["model", "split"], sort=False):
        report["peers_same_input"].append({"model": model, "split": split, **summary(
            table["ap50"].to_numpy(), table["modality"].to_numpy(), args.resamples, args.seed)})
    for label, a, b in PEER_PAIRS:
        for split in ("test", "val"):
            rows = [peers[(peers.model == name) & (peers.split == split)] for name in (a, b)]
            if all(len(r) for r in rows):
                report["paired_peers"].append({"comparison": label, "a": a, "b": b, "split": split,
                                               **paired(rows[0], rows[1], args.resamples, args.seed)})

    (RESULTS / "uncertainty_dsb.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "uncertainty_dsb.md").write_text(markdown(report))
    print(markdown(report))


def _interval(row: dict) -> str:
    return f"{row['ci95'][0]:.3f} – {row['ci95'][1]:.3f}"


def _differences(row: dict) -> str:
    return " | ".join(f"{row[m]['mean']:+.3f} ({_interval(row[m])}; {row[m]['share_of_resamples_above_zero']:.0%})"
                      for m in METRICS)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# How sure are the DSB2018 AP@0.5 figures? — bootstrap over images", "",
             (f"Stratified bootstrap (images resampled within each modality), {report['resamples']} resamples, "
             f"seed {report['seed']}, over the committed per-image tables of `segmentation_dsb.py` and `peers_dsb.py` "
             f"(DSB2018 stage1_train, `training/nuclei/split.json`). Script: `benchmarks/uncertainty_dsb.py` at commit "
             f"{m['commit']}; pure arithmetic, no machine dependence. The interval is for the mean AP@0.5 over images "
             "like these; `>= 0.85` is the share of resampled means at or above the issue's goal (a measure of how "
             "far the figure is from it in units of its own noise, not a probability that the model meets it)."), "",
             "## As a user gets it (`cytolens.segment`, diameter estimated)", "",
             "| model | split | images | AP@0.5 | s.e. | 95 % interval | resamples >= 0.85 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["as_a_user_gets_it"]:
        lines.append(f"| {row['model']} | {row['split']} | {row['images']} | {row['mean']:.3f} | {row['se']:.3f} | "
                     f"{_interval(row)} | {row['share_of_resamples_at_or_above_goal']:.0%} |")
    paired_header = ["| {} | split | " + " | ".join(f"{name} difference (95 % interval; resamples > 0)" for name in
                                                    ("AP@0.5", "AP@0.75", "Kaggle")) + " |",
                     "| --- | --- | --- | --- | --- |"]
    lines += ["", "Paired, the same images (mean per-image difference a − b):", "",
              paired_header[0].format("a − b"), paired_header[1]]
    for row in report["paired_as_a_user_gets_it"]:
        lines.append(f"| {row['a']} − {row['b']} | {row['split']} | " + _differences(row) + " |")
    lines += ["", "## StarDist and cytolens on the same inputs (true diameter; `peers_dsb.md`)", "",
              "| model | split | images | AP@0.5 | s.e. | 95 % interval |", "| --- | --- | --- | --- | --- | --- |"]
    for row in report["peers_same_input"]:
        lines.append(f"| {row['model']} | {row['split']} | {row['images']} | {row['mean']:.3f} | {row['se']:.3f} | "
                     f"{_interval(row)} |")
    lines += ["", paired_header[0].format("comparison: a − b"), paired_header[1]]
    for row in report["paired_peers"]:
        lines.append(f"| {row['comparison']}: {row['a']} − {row['b']} | {row['split']} | " + _differences(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
