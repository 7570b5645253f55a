"""Train the bundled ``label-free-nuclei`` model (phase-contrast z-stack -> DAPI, MAP2, NFH).

    nice -n 10 python training/label_free_nuclei/train.py [--minutes 30] [--work /tmp/label_free_nuclei]

One torch thread; resumable (run it again and it continues from ``<work>/label-free-nuclei.work``).
The single field of ``../shared/data/isl_phase_to_fluor`` (its columns 0-767, 1024 rows) is
cut into blocks (rows, columns): train (0-1023, 0-511) and (0-479, 512-767); val (model
selection) (512-735, 544-767); test (reported) (768-1023, 544-767). 32-px gaps keep one
block's pixels out of the next one's. Writes the package to
``src/cytolens/models/bundled/label-free-nuclei`` with its validation scores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO.parent / "shared" / "data" / "isl_phase_to_fluor"
#: side -> [(name, rows, columns)] of the field
BLOCKS = {"train": [("left", (0, 1024), (0, 512)), ("top_right", (0, 480), (512, 768))],
          "val": [("val", (512, 736), (544, 768))],
          "test": [("test", (768, 1024), (544, 768))]}
CHANNELS = ["DAPI", "MAP2", "NFH"]


def cut_bands(work: Path) -> None:
    from cytolens.io import read_image, write_image

    source = read_image(DATA / "source" / "finkbeiner_KEVAN_0_8_wellA4.tif")  # (13, Y, X)
    target = read_image(DATA / "target" / "finkbeiner_KEVAN_0_8_wellA4.tif")  # (Y, X, 3)
    target = np.moveaxis(target, -1, 0) if target.shape[-1] == 3 else target
    for side, blocks in BLOCKS.items():
        for name, (y0, y1), (x0, x1) in blocks:
            for kind, stack in (("source", source), ("target", target)):
                write_image(work / "crops" / side / kind / f"{name}.tif", stack[:, y0:y1, x0:x1], axes="ZYX",
                            overwrite=True)


def test_scores(package_dir: Path, work: Path) -> dict:
    """Pearson r and CARE-convention PSNR/SSIM per channel on the test block (never seen in training)."""
    import cytolens
    from cytolens.io import read_image
    from cytolens.metrics.restoration import pearson_r, restoration_scores

    source = read_image(work / "crops" / "test" / "source" / "test.tif")
    target = read_image(work / "crops" / "test" / "target" / "test.tif")
    predicted = cytolens.restore(source, model=package_dir)
    scores = {}
    for k, name in enumerate(CHANNELS):
        care = restoration_scores(target[k].astype(np.float32), predicted[k], care=True)
        scores[name] = {"pearson_r": round(pearson_r(target[k].astype(np.float32), predicted[k]), 4),
                        "psnr_care": round(care["psnr"], 3), "ssim_care": round(care["ssim"], 4)}
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/label_free_nuclei"))
    parser.add_argument("--install", action="store_true", help="copy the package into the bundled models")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from cytolens.tasks.restoration.task import TASK
    from cytolens.train.api import as_config
    from cytolens.train.budget import budgeted_epochs
    from cytolens.train.fitting import fit_model

    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "crops" / "test" / "target" / "test.tif").is_file():
        cut_bands(args.work)
    raw = yaml.safe_load((HERE / "config.yaml").read_text())
    raw["optimization"]["max_minutes"] = args.minutes
    chosen = args.work / "epochs.json"
    if chosen.is_file():  # a resumed run keeps its schedule
        raw["optimization"]["epochs"] = json.loads(chosen.read_text())["epochs"]
        config = as_config(raw, base=args.work)
    else:
        config = as_config(raw, base=args.work)
        data = TASK.prepare_data(config, False)
        # 3 s: about the val block's tiled prediction
        epochs, seconds = budgeted_epochs(TASK, config, data, args.minutes, validation_seconds=3.0)
        raw["optimization"]["epochs"] = epochs
        chosen.write_text(json.dumps({"epochs": epochs, "seconds_per_step": seconds}) + "\n")
        config = as_config(raw, base=args.work)
        print(f"{seconds:.2f} s a step: {epochs} epochs", flush=True)
    result = fit_model(TASK, config, progress=True, resume=True)
    scores = test_scores(result.package, args.work)
    print(json.dumps(scores, indent=1), flush=True)
    from cytolens.models import update_meta

    update_meta(result.package, lambda meta: meta["validation"].update(
        {"test_block": {"rows": [768, 1024], "columns": [544, 768]}, "per_channel": scores,
         "note": "a held-out block of the training field (rows 768-1023, columns 544-767); train and "
                 "model-selection blocks are 32 px away (training/label_free_nuclei/train.py)"}))
    (HERE / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    if args.install:
        bundled = REPO / "src" / "cytolens" / "models" / "bundled" / "label-free-nuclei"
        shutil.rmtree(bundled, ignore_errors=True)
        bundled.mkdir(parents=True)
        for name in ("model.json", "weights.safetensors", "history.csv", "curves.png"):
            shutil.copyfile(result.package / name, bundled / name)
        shutil.copyfile(HERE / "config.yaml", bundled / "train_config.yaml")
        print(f"installed {bundled}", file=sys.stderr)


if __name__ == "__main__":
    main()
