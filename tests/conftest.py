"""Shared test fixtures: where the read-only shared data is, and a skip when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("CYTOLENS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$CYTOLENS_SHARED_DATA``); skips the test when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared annotated data not found at {SHARED_DATA} (set CYTOLENS_SHARED_DATA)")
    return SHARED_DATA
