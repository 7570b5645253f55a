#!/bin/sh
# Train a bundled classifier on the shared CPU: nice -n 10, one torch thread, resumable.
# Usage (from the repo root or anywhere): training/train_classifier.sh NAME [CONFIG]
set -e
here=$(cd "$(dirname "$0")" && pwd)
name=$1
config=${2:-$here/$name/config.yaml}
cd "$here/.."
PYTHONPATH=src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 "${PYTHON:-python}" -c "
import sys, torch
torch.set_num_threads(1)
from cytolens.train import run
result = run(sys.argv[1], overwrite=True, progress=False)
print('best', result.best, flush=True)
" "$config"
