"""Restoration scores: hand-worked values, and equality with scikit-image / scipy on random images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from skimage import metrics as skim

from cytolens.errors import CytolensError, InvalidParameterError
from cytolens.metrics.restoration import (
    care_normalize,
    nrmse,
    pearson_r,
    percentile_normalize,
    psnr,
    restoration_scores,
    ssim,
)


def test_psnr_by_hand():
    target = np.array([[0.0, 1.0], [0.0, 1.0]])
    pred = target + np.array([[0.1, 0.0], [-0.1, 0.0]])  # MSE 0.005
    assert psnr(target, pred) == pytest.approx(10 * np.log10(1 / 0.005))
    assert psnr(target, pred, data_range=2.0) == pytest.approx(10 * np.log10(4 / 0.005))
    assert psnr(target, target) == float("inf")


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_scikit_image_and_scipy(seed):
    rng = np.random.default_rng(seed)
    shape = [(32, 40), (9, 16, 20)][seed % 2]
    target = rng.gamma(2.0, 50.0, shape)
    pred = target + rng.normal(0, 20, shape)
    rng_ = float(target.max() - target.min())
    assert psnr(target, pred) == pytest.approx(skim.peak_signal_noise_ratio(target, pred, data_range=rng_), abs=1e-6)
    assert ssim(target, pred) == pytest.approx(skim.structural_similarity(target, pred, data_range=rng_), abs=1e-6)
    for norm in ("euclidean", "min-max", "mean"):
        assert nrmse(target, pred, norm) == pytest.approx(
            skim.normalized_root_mse(target, pred, normalization=norm), abs=1e-6)
    assert pearson_r(target, pred) == pytest.approx(pearsonr(target.ravel(), pred.ravel())[0], abs=1e-6)
    u8t, u8p = target.clip(0, 255).astype(np.uint8), pred.clip(0, 255).astype(np.uint8)
    assert psnr(u8t, u8p, data_range=255) == pytest.approx(skim.peak_signal_noise_ratio(u8t, u8p), abs=1e-6)


def test_ssim_with_channels_equals_scikit_image():
    rng = np.random.default_rng(3)
    target = rng.random((24, 24, 3))
    pred = target + rng.normal(0, 0.1, target.shape)
    assert ssim(target, pred, channel_axis=-1) == pytest.approx(
        skim.structural_similarity(target, pred, data_range=float(target.max() - target.min()), channel_axis=-1),
        abs=1e-6)


def test_care_normalization_makes_scores_scale_invariant():
    rng = np.random.default_rng(1)
    target = rng.gamma(2.0, 100.0, (48, 48))
    pred = target + rng.normal(0, 30, target.shape)
    a = restoration_scores(target, pred, care=True)
    b = restoration_scores(target * 3 + 7, pred * 0.01 - 4, care=True)
    for key in ("psnr", "ssim", "nrmse", "pearson_r"):
        assert a[key] == pytest.approx(b[key], rel=1e-9)
    raw = restoration_scores(target, pred * 0.5)
    assert raw["psnr"] < a["psnr"]
    assert a["data_range"] == 1.0


def test_care_normalize_is_the_least_squares_fit():
    rng = np.random.default_rng(2)
    target = rng.random(500) * 100
    pred = 0.3 * target + rng.normal(0, 2, 500)
    t_n, p_n = care_normalize(target, pred)
    np.testing.assert_allclose(t_n, percentile_normalize(target))
    # the affine fit by numpy's least squares
    a, b = np.polyfit(pred, t_n, 1)
    np.testing.assert_allclose(p_n, a * pred + b, atol=1e-9)
    # percentiles by hand
    np.testing.assert_allclose(percentile_normalize(np.arange(101.0), 10, 90)[[10, 90]], [0, 1], atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match="shapes differ"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(CytolensError, match="constant"):
        psnr(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(CytolensError, match="NaN"):
        psnr(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(InvalidParameterError, match="at least 7"):
        ssim(np.random.default_rng(0).random((5, 5)), np.zeros((5, 5)))
    with pytest.raises(InvalidParameterError, match="pmin"):
        percentile_normalize(np.arange(4.0), 50, 10)
    small = restoration_scores(np.arange(16.0).reshape(4, 4), np.arange(16.0).reshape(4, 4))
    assert np.isnan(small["ssim"]) and small["psnr"] == float("inf")
