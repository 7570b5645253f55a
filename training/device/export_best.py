"""Copy a training run's best weights, in float16, to a folder that outlives the run.

A lent machine's command can be stopped at its time limit before the package is
written; run this beside the training (``--every``) so the best epoch so far is
always in ``$OUT`` (float32 weights of the width-32 model are over the 16 MiB a
returned file may have; float16 ones are not).

    python training/device/export_best.py /tmp/pkg/nuclei.work $OUT/best_fp16.safetensors --every 10 &
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from safetensors.torch import load_file, save_file

from cytolens.nn.precision import half_precision_weights


def export(work: Path, destination: Path) -> bool:
    """Write ``work/best.safetensors`` in float16 to ``destination`` if it is newer; True if written."""
    source = work / "best.safetensors"
    if not source.exists() or (destination.exists() and destination.stat().st_mtime >= source.stat().st_mtime):
        return False
    weights = half_precision_weights(load_file(str(source)))
    temporary = destination.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(temporary))
    os.replace(temporary, destination)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the run's work folder (holds best.safetensors)")
    parser.add_argument("destination", type=Path)
    parser.add_argument("--every", type=float, help="keep watching, checking every this many seconds")
    args = parser.parse_args()
    while True:
        try:
            export(args.work, args.destination)
        except Exception as error:  # noqa: BLE001 - a half-written best.safetensors (any reader error): retry next round
            print(f"export_best: {error}", flush=True)
        if not args.every:
            break
        time.sleep(args.every)


if __name__ == "__main__":
    main()
