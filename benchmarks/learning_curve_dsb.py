"""Learning curve of the nuclei recipe on DSB2018: would more annotated images help?

Trains the CPU ``nuclei`` recipe (training/nuclei/config.yaml: same data, split,
architecture and augmentation) with a short budget on nested fractions 0.1, 0.25,
0.5 and 1.0 of its train split, scores every run on the same validation split
(AP@0.5 per image at the model scale, the metric used for model selection) and on
up to 50 of its own training images (the train-validation gap), and says whether
the curve has flattened (the last step gained less than --threshold AP).

Every run gets the same budget (epochs × steps_per_epoch crops), so the curve shows
the effect of data, not of training length. The network is narrower than the bundled
model's (base 8 channels) so that each run converges on a CPU in minutes: the curve
answers "would more data help this recipe?" at that capacity.

Usage: nice python benchmarks/learning_curve_dsb.py [--fractions 0.1,0.25,0.5,1] [--threshold 0.02]
Writes benchmarks/results/learning_curve_dsb/{learning_curve.csv,learning_curve.png,summary.json,README.md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine

from cytolens.train.config import dump_config, load_config, validate_config
from cytolens.train.search import learning_curve

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "nuclei" / "config.yaml"
OUTPUT = ROOT / "benchmarks" / "results" / "learning_curve_dsb"
#: Budget per run (one CPU thread, ~9 min): a narrower U-Net (base 8 channels) and 2000 steps
#: of 8 crops of 128 px. With 240 steps (base 16) no run converged and the curve was noise;
#: with 1000 steps the best epoch was still the last one.
BUDGET = {"architecture": {"base_channels": 8},
          "optimization": {"epochs": 50, "steps_per_epoch": 40, "batch_size": 8, "crop_size": 128,
                           "warmup_epochs": 1, "patience": 0, "max_minutes": 20}}


def with_budget(config, budget: dict):
    """``config`` with the settings of ``budget`` (nested sections) replaced."""
    raw = dump_config(config)
    for section, values in budget.items():
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    return validate_config(raw)


def run_benchmark(config_path=CONFIG, out_dir=OUTPUT, fractions=(0.1, 0.25, 0.5, 1.0), threshold: float = 0.02,
                  budget: dict = BUDGET, progress: bool = True):
    """Run the learning curve and write its results and a README.md under ``out_dir``."""
    out_dir = Path(out_dir)
    config = with_budget(load_config(config_path), budget)
    result = learning_curve(config, fractions, out_dir, threshold=threshold, progress=progress)
    info = {"config": str(config_path), "budget": budget, "machine": machine(), "fractions": list(fractions)}
    (out_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    table = result.table.round(4).to_string(index=False)
    (out_dir / "README.md").write_text(
        f"# Learning curve: {config.name} recipe\n\nConfig `{config_path}` with budget `{json.dumps(budget)}`; "
        f"validation on the {json.loads((out_dir / 'summary.json').read_text())['val_images']} images of the val "
        f"split.\n\n```\n{table}\n```\n\n**{result.message}**\n\n![learning curve](learning_curve.png)\n\n"
        f"Machine: {info['machine']}\n")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--fractions", default="0.1,0.25,0.5,1")
    parser.add_argument("--threshold", type=float, default=0.02)
    args = parser.parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    result = run_benchmark(args.config, args.output, fractions, args.threshold)
    print(result.table.to_string(index=False))


if __name__ == "__main__":
    main()
