"""Shared test fixtures: where the read-only shared data is (a skip when it is missing), benchmark scripts."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TRAINING = Path(__file__).resolve().parents[1] / "training"
SHARED_DATA = Path(os.environ.get("CYTOLENS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$CYTOLENS_SHARED_DATA``); skips the test when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared annotated data not found at {SHARED_DATA} (set CYTOLENS_SHARED_DATA)")
    return SHARED_DATA


def _import_file(path: Path):
    """Import a script that is not part of a package, as a module named after its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of ``benchmarks/`` by name (they import each other, so the folder joins sys.path meanwhile)."""
    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            return _import_file(BENCHMARKS / f"{name}.py")
        finally:
            sys.path.remove(str(BENCHMARKS))
    return load


@pytest.fixture(scope="session")
def training_script():
    """Import a script of ``training/`` by its path there, e.g. ``training_script("device/export_best.py")``."""
    return lambda relative: _import_file(TRAINING / relative)


@pytest.fixture
def one_torch_thread():
    """Keep the shared CPU light: one torch thread for the test (``pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
