"""Average the weights of two packages of one architecture (a two-model "soup").

Usage: python training/nuclei_cpu/average_weights.py PACKAGE_A PACKAGE_B OUT_PACKAGE
OUT_PACKAGE must already be a copy of PACKAGE_B (its model.json, config and split are kept);
its weights.safetensors is replaced by the mean of A's and B's (float tensors; counters from B).
Then tune its thresholds and refit its size model as for any new weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def main() -> None:
    first, second, out = (Path(p) / "weights.safetensors" for p in sys.argv[1:4])
    a, b = load_file(first), load_file(second)
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        sys.exit("the two packages do not share one architecture")
    mean = {k: ((a[k].astype(np.float32) + b[k].astype(np.float32)) / 2).astype(b[k].dtype)
            if b[k].dtype.kind == "f" else b[k] for k in b}
    save_file(mean, out)
    print(f"wrote {out} ({len(mean)} tensors)")


if __name__ == "__main__":
    main()
