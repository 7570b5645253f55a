"""Hyperparameter search for the nuclei recipe on DSB2018 (optuna, short trials).

Searches learning rate, weight decay, width (base_channels), depth and augmentation
strength with a TPE sampler and a median pruner on the per-epoch validation AP@0.5,
each trial a short budget on the nuclei recipe's train split (training/nuclei/config.yaml),
scored on its validation split. The test split is never touched.

Usage: nice python benchmarks/tuning_dsb.py [--trials 12]
Writes benchmarks/results/tuning_dsb/{trials.csv,tuning.png,best_config.yaml,summary.json,README.md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine
from learning_curve_dsb import CONFIG, with_budget

from cytolens.train.config import load_config
from cytolens.train.search import tune

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "results" / "tuning_dsb"
#: Short trials (one CPU thread): 8 epochs × 30 steps of 8 crops of 128 px, at most 4 minutes each.
BUDGET = {"optimization": {"epochs": 8, "steps_per_epoch": 30, "batch_size": 8, "crop_size": 128,
                           "warmup_epochs": 1, "patience": 0, "max_minutes": 4}}
#: Depth up to 4 and width up to 32 keep a trial within a few CPU minutes.
SEARCH_SPACE = {
    "learning_rate": ("log", 3e-4, 1e-2),
    "weight_decay": ("log", 1e-6, 1e-2),
    "base_channels": ("categorical", [8, 16, 32]),
    "depth": ("int", 2, 4),
    "augmentation_strength": ("float", 0.0, 1.5),
}


def run_benchmark(config_path=CONFIG, out_dir=OUTPUT, trials: int = 12, budget: dict = BUDGET,
                  search_space: dict = SEARCH_SPACE, progress: bool = True):
    """Run the search and write its results and a README.md under ``out_dir``."""
    out_dir = Path(out_dir)
    config = with_budget(load_config(config_path), budget)
    result = tune(config, trials, out_dir, search_space=search_space, progress=progress)
    summary = json.loads((out_dir / "summary.json").read_text())
    info = {"config": str(config_path), "budget": budget, "machine": machine(), "trials": trials}
    (out_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    columns = [c for c in ["number", "state", result.metric, *search_space, "epochs_run"] if c in result.table]
    (out_dir / "README.md").write_text(
        f"# Hyperparameter search: {config.name} recipe\n\nConfig `{config_path}` with budget "
        f"`{json.dumps(budget)}`; {summary['trials']} trials ({summary['completed']} complete, "
        f"{summary['pruned']} pruned by the median rule).\n\nBest {result.metric} = {result.best_value:.4f} "
        f"(trial {summary['best_trial']}) with `{json.dumps(result.best_params)}`; config: `best_config.yaml`.\n\n"
        f"```\n{result.table[columns].round(5).to_string(index=False)}\n```\n\n![tuning](tuning.png)\n\n"
        f"Machine: {info['machine']}\n")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args(argv)
    result = run_benchmark(args.config, args.output, args.trials)
    print(f"best {result.metric}={result.best_value:.4f} {result.best_params}")


if __name__ == "__main__":
    main()
