"""Transfer learning for classification: cell-cycle from the blood-cells encoder vs from scratch, 10/30/100 % of data.

The `cell-cycle` recipe (``training/cell-cycle/config.yaml``: 7 phases of Jurkat cells, 3 channels,
40 px, class-weighted loss, 8 epochs of 40 steps of 64 cells) is trained on nested 10 %, 30 % and
100 % subsets of its training split (the same cells for both arms), either from random weights
(``scratch``) or starting from the bundled ``blood-cells`` classifier (``transfer``: its encoder, a new
7-class head, the encoder frozen for the first 2 epochs, then everything trained). Both arms use the
parent's network (ResNet depth 4, width 16, not the bundled cell-cycle's depth 3, width 32), so only the
starting weights differ; the 40 px cells are resized to 48 px for it (a multiple of 2^4). Each run is scored
on the fixed validation split (549 cells) at its lowest-validation-loss epoch, through
:func:`cytolens.train.learning_curve`, so the training budget per run is the same in both arms.

The blood-cells encoder learned RGB blood smears at 64 px; the cell-cycle images are bright field,
DNA stain and dark field at 40 px: a distant source task, which is what a lab usually has.

Run: ``PYTHONPATH=src nice -n 10 python benchmarks/transfer_learning_classification.py [--arms scratch transfer]``
(each arm ~8 min on one thread of the 2-core EPYC; the two arms can run as two processes, then
``--report`` alone writes the table from both). Writes
``benchmarks/results/transfer_learning_classification.{csv,md}`` and per-arm curves under
``benchmarks/results/transfer_learning_classification/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "transfer_learning_classification"
CONFIG = ROOT / "training" / "cell-cycle" / "config.yaml"
FRACTIONS = (0.1, 0.3, 1.0)
PARENT_ARCHITECTURE = {"depth": 4, "base_channels": 16, "dropout": 0.1}  # blood-cells' model.json
CROP_SIZE = 48  # the 40 px cells resized to a multiple of 2^depth, as init_from requires
ARMS = {"scratch": {}, "transfer": {"init_from": "blood-cells", "freeze_encoder_epochs": 2}}


def run_arm(arm: str, work: Path) -> pd.DataFrame:
    """One learning curve of the recipe, changed as ``ARMS[arm]`` says."""
    from cytolens.train import learning_curve, load_config

    config = load_config(CONFIG)
    # both arms get the parent's network (a ResNet of depth 4, width 16): only the starting weights differ
    architecture = config.architecture.model_copy(update=PARENT_ARCHITECTURE)
    optimization = config.optimization.model_copy(update={"crop_size": CROP_SIZE})
    config = config.model_copy(update={**ARMS[arm], "architecture": architecture, "optimization": optimization,
                                       "output": str(work / arm / "model")})
    result = learning_curve(config, FRACTIONS, out_dir=OUT / arm, progress=True)
    table = result.table.assign(arm=arm)
    table.to_csv(OUT / f"{arm}.csv", index=False)
    return table


def report() -> None:
    tables = [pd.read_csv(OUT / f"{arm}.csv") for arm in ARMS if (OUT / f"{arm}.csv").exists()]
    if not tables:
        sys.exit("no arm has run yet")
    table = pd.concat(tables)
    table.to_csv(RESULTS / "transfer_learning_classification.csv", index=False)
    metric = next(c for c in table.columns if c.startswith("val_") and c != "val_loss")
    info = machine()
    lines = ["# Transfer learning: cell-cycle from the blood-cells encoder vs from scratch", "",
             (f"Made by `benchmarks/transfer_learning_classification.py`. Machine: {info['cpu']}, {info['cores']} "
              f"cores (shared with other jobs), 1 torch thread, commit {info['commit']}."),
             ("Recipe `training/cell-cycle/config.yaml` on nested fractions of its training split; scored on its "
              f"fixed validation split at each run's lowest-validation-loss epoch. `{metric}` = validation macro-F1 "
              "unless the column says otherwise."), "",
             "| fraction of the training split | cells | scratch | transfer (blood-cells encoder) | gain |",
             "| --- | --- | --- | --- | --- |"]
    wide = table.pivot_table(index="fraction", columns="arm", values=metric)
    cells = table.groupby("fraction")["images"].first()  # per-cell items: one image per cell
    for fraction, row in wide.iterrows():
        scratch, transfer = row.get("scratch"), row.get("transfer")
        gain = transfer - scratch if pd.notna(scratch) and pd.notna(transfer) else float("nan")
        shown = [f"{v:.3f}" if pd.notna(v) else "-" for v in (scratch, transfer)]
        lines.append(f"| {fraction:g} | {int(cells[fraction])} | {shown[0]} | {shown[1]} | "
                     + (f"{gain:+.3f} |" if pd.notna(gain) else "- |"))
    (RESULTS / "transfer_learning_classification.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--report", action="store_true", help="only write the table from the arms already run")
    args = parser.parse_args()
    import tempfile

    import torch

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.report:
        with tempfile.TemporaryDirectory() as work:
            for arm in args.arms:
                run_arm(arm, Path(work))
    report()


if __name__ == "__main__":
    main()
