"""Describe the machine a benchmark ran on (quoted next to every figure)."""

from __future__ import annotations

import os
import platform
import subprocess


def machine() -> dict:
    """CPU model, core count, native bfloat16, Python/torch versions and the git commit of the code measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        from cytolens.nn.precision import bfloat16_is_fast

        torch_version, threads = torch.__version__, torch.get_num_threads()
        bfloat16 = bfloat16_is_fast(torch.device("cpu"))
    except ImportError:
        torch_version, threads, bfloat16 = None, None, None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "python": platform.python_version(),
            "torch": torch_version, "cpu_bfloat16": bfloat16, "commit": commit + ("+dirty" if dirty else ""), "gpu": None}
