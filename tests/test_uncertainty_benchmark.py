"""The bootstrap of benchmarks/uncertainty_dsb.py on tables with known answers."""

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def uncertainty(benchmark_script):
    return benchmark_script("uncertainty_dsb")


def test_resamples_keep_each_modality_s_share(uncertainty):
    # 3 images of one modality all at 0, 1 of another at 1: a plain bootstrap would spread the mean
    # from 0 to 1; resampling within modalities keeps it at exactly 1/4
    means = uncertainty.bootstrap_means(np.array([0.0, 0.0, 0.0, 1.0]), np.array(["f", "f", "f", "h"]), resamples=500)
    assert np.allclose(means, 0.25)


def test_the_interval_holds_the_mean_and_narrows_with_more_images(uncertainty):
    rng = np.random.default_rng(1)
    few, many = rng.uniform(0.6, 1.0, 20), rng.uniform(0.6, 1.0, 320)
    small = uncertainty.summary(few, np.zeros(20), resamples=4000, seed=0)
    large = uncertainty.summary(many, np.zeros(320), resamples=4000, seed=0)
    for row in (small, large):
        assert row["ci95"][0] < row["mean"] < row["ci95"][1]
    assert large["ci95"][1] - large["ci95"][0] < 0.5 * (small["ci95"][1] - small["ci95"][0])
    assert 0.5 * small["se"] / np.sqrt(16) < large["se"] < 2 * small["se"] / np.sqrt(16)  # ~1/sqrt(n)


def test_paired_differences_are_per_image_and_refuse_other_images(uncertainty):
    a = pd.DataFrame({"id": ["x", "y", "z"], "modality": ["f", "f", "h"], "ap50": [0.9, 0.8, 0.5],
                      "ap75": [0.7, 0.6, 0.3], "kaggle": [0.6, 0.5, 0.2]})
    b = a.copy()
    b[["ap50", "ap75", "kaggle"]] -= 0.1  # b is 0.1 behind on every image: no spread in the difference
    diff = uncertainty.paired(a, b.iloc[::-1], resamples=200, seed=0)  # row order must not matter
    for metric in ("ap50", "ap75", "kaggle"):
        assert diff[metric]["mean"] == pytest.approx(0.1)
        assert diff[metric]["ci95"] == pytest.approx([0.1, 0.1])
        assert diff[metric]["share_of_resamples_above_zero"] == 1.0
    with pytest.raises(ValueError, match="different images"):
        uncertainty.paired(a, b.iloc[:2], resamples=10, seed=0)
