"""Shared test fixtures: where the read-only shared data is (a skip when it is missing), benchmark scripts."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SHARED_DATA = Path(os.environ.get("CYTOLENS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$CYTOLENS_SHARED_DATA``); skips the test when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared annotated data not found at {SHARED_DATA} (set CYTOLENS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of ``benchmarks/`` by name (they import each other, so the folder joins sys.path meanwhile)."""
    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(BENCHMARKS))
        return module
    return load
