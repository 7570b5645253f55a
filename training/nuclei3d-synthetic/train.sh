#!/bin/sh
# Train both models of the recipe one after the other, 1 thread each, and log CPU time (GNU time).
# Usage: cd training/nuclei3d-synthetic && sh train.sh   (logs in ../../trained/nuclei3d-*.log)
set -e
PY=${PYTHON:-python}
[ -d ../../trained/nuclei3d-data ] || $PY make_data.py
for recipe in native slices; do
  OMP_NUM_THREADS=1 nice -n 10 /usr/bin/time -v $PY -m cytolens train config_$recipe.yaml \
    > ../../trained/nuclei3d-$recipe.log 2>&1
done
