#!/bin/sh
# Keep a copy of a running training's weights after every epoch (for weight averaging).
# Usage: sh training/nuclei_cpu/snapshot_epochs.sh WORK_DIR   (WORK_DIR = <output>.work)
# Polls WORK_DIR/history.csv; when it gains a row, copies WORK_DIR/last.pt to
# WORK_DIR/epoch_<rows>.pt. Stops when the training process writes WORK_DIR/../<name>/model.json.
work=$1
seen=0
while :; do
    rows=$(($( (wc -l < "$work/history.csv") 2>/dev/null || echo 1) - 1))
    if [ "$rows" -gt "$seen" ]; then
        sleep 5   # last.pt is written after the history row
        cp "$work/last.pt" "$work/epoch_$rows.pt" && seen=$rows && echo "kept epoch $rows"
    fi
    [ -f "${work%.work}/model.json" ] && [ "$(find "${work%.work}/model.json" -newer "$work/history.csv")" ] && break
    sleep 20
done
