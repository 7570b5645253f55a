"""The helper that copies a GPU run's best weights out while it trains (training/device/export_best.py)."""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save_file

def test_export_best_writes_float16_weights_and_float32_statistics_once_per_new_best(tmp_path, training_script):
    export = training_script("device/export_best.py").export
    work, destination = tmp_path / "work", tmp_path / "out" / "best_fp16.safetensors"
    work.mkdir()
    destination.parent.mkdir()
    assert not export(work, destination)  # nothing trained yet
    best = {"conv.weight": torch.full((2, 2), 0.5), "bn.running_var": torch.tensor([1e6, 2.0])}
    save_file(best, str(work / "best.safetensors"))
    assert export(work, destination)
    copied = load_file(str(destination))
    assert copied["conv.weight"].dtype == torch.float16 and torch.equal(copied["conv.weight"].float(), best["conv.weight"])
    assert copied["bn.running_var"].dtype == torch.float32 and copied["bn.running_var"][0] == 1e6
    assert not export(work, destination)  # unchanged best: not rewritten
    later = destination.stat().st_mtime + 5
    save_file({**best, "conv.weight": torch.ones(2, 2)}, str(work / "best.safetensors"))
    os.utime(work / "best.safetensors", (later, later))
    assert export(work, destination)
    assert torch.equal(load_file(str(destination))["conv.weight"].float(), torch.ones(2, 2))
    assert not list(destination.parent.glob("*.tmp"))
