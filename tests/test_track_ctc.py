"""Linking the CTC ground-truth masks (labels shuffled) must reproduce the ground truth tracks (issue 5 targets)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import cytolens.track as tracking
from cytolens.io import read_ctc_masks

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def shuffled(movie: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(movie.shape, np.uint16)
    for t, frame in enumerate(movie):
        ids = np.unique(frame)[1:]
        lookup = np.zeros(int(frame.max()) + 1, np.uint16)
        lookup[ids] = rng.permutation(len(ids)) + 1
        out[t] = lookup[frame]
    return out


@pytest.mark.parametrize("sequence, min_tra, min_division_f1",
                         [("ctc_Fluo-N2DH-SIM+", 0.999, 0.95), ("ctc_Fluo-N2DH-GOWT1", 0.999, None)])
def test_linking_ground_truth_masks_meets_targets(shared_data, tmp_path, sequence, min_tra, min_division_f1):
    ctc_metrics = pytest.importorskip("ctc_metrics")
    gt = shared_data / sequence / "01_GT"
    if not gt.is_dir():
        pytest.skip(f"{gt} missing")
    result = tracking.track(labels=shuffled(read_ctc_masks(gt / "TRA")))
    result.to_ctc(tmp_path / "res")
    with contextlib.redirect_stdout(io.StringIO()):
        scores = ctc_metrics.evaluate_sequence(str(tmp_path / "res"), str(gt), metrics=["TRA", "BC"], threads=1)
    assert scores["TRA"] >= min_tra
    if min_division_f1 is not None:
        assert scores["BC(0)"] >= min_division_f1
