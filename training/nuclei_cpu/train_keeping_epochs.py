"""Train from a config as ``cytolens train CONFIG`` does, keeping the weights after every epoch.

Usage: python training/nuclei_cpu/train_keeping_epochs.py CONFIG

After each epoch the run's checkpoint (``<output>.work/last.pt``) is copied to
``<output>.work/epoch_<N>.pt`` for weight averaging (training/nuclei_cpu/swa_average.py).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cytolens.train import load_config, run


def main() -> None:
    config = load_config(sys.argv[1])
    work = Path(f"{config.output}.work")

    def keep_epoch(row: dict) -> None:
        shutil.copyfile(work / "last.pt", work / f"epoch_{row['epoch']}.pt")

    run(config, on_epoch_end=keep_epoch)


if __name__ == "__main__":
    main()
