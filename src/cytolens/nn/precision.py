"""Numeric precision of network computations: float32, or bfloat16 mixed precision.

Mixed precision (``torch.autocast``) runs convolutions in bfloat16 and keeps
weights, optimizer state and the outputs handed back to numpy in float32. On CPUs
with AVX-512 BF16 or AMX (recent Xeon and EPYC) and on GPUs from Ampere on it
makes the nuclei U-Net ~2x faster to run and ~3x faster to train
(``benchmarks/segmentation_speed.py``, ``benchmarks/training_step_speed.py``).
Where the hardware has no native bfloat16 it would be *slower* than float32, so
the request falls back to float32 with a warning.

Example
-------
>>> import torch
>>> with autocast_for("float32", torch.device("cpu"))():
...     torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype
torch.float32
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import ContextManager

import torch

from cytolens.errors import InvalidParameterError

PRECISIONS = ("float32", "bfloat16")


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (CUDA from Ampere on; CPUs with AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str) -> None:
    """Raise :class:`InvalidParameterError` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise InvalidParameterError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")


def effective_precision(precision: str, device: torch.device, *, stacklevel: int = 2) -> str:
    """``precision`` as it will run on ``device``: "bfloat16" falls back to "float32", with a warning, where the
    hardware has no native bfloat16 (a caller that works through many images resolves it once, up front).

    >>> effective_precision("float32", torch.device("cpu"))
    'float32'
    """
    check_precision(precision)
    if precision == "bfloat16" and not bfloat16_is_fast(device):
        warnings.warn(f"this {device.type.upper()} has no native bfloat16 support; computing in float32 instead",
                      stacklevel=stacklevel + 1)
        return "float32"
    return precision


def autocast_for(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A factory of contexts for forward passes at ``precision`` ("float32" or "bfloat16") on ``device``."""
    if effective_precision(precision, device, stacklevel=3) == "bfloat16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def half_precision_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Learned weights in float16, running statistics (e.g. batchnorm variances) kept in float32.

    Batchnorm variances can exceed float16's range (65504) and would become ``inf``.

    >>> state = {"conv.weight": torch.ones(2), "bn.running_var": torch.tensor([1e6])}
    >>> {k: v.dtype for k, v in half_precision_weights(state).items()}
    {'conv.weight': torch.float16, 'bn.running_var': torch.float32}
    """
    halved = {}
    for key, value in state.items():
        learned = key.endswith(("weight", "bias")) and value.is_floating_point()
        if learned and torch.isfinite(value.half()).all():
            value = value.half()
        halved[key] = value
    return halved
