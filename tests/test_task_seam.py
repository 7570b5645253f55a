"""The task seam works for a task that is not segmentation.

A toy image-to-image regression (denoising; ``tests/toy_task/``: its task module and a
config, nothing else) is trained through the generic run in 2D and 3D, saved and
loaded as a model package, and run tiled on images larger than a tile.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi

import cytolens
from cytolens.errors import InvalidParameterError
from cytolens.io import write_image
from cytolens.models import load
from cytolens.nn.predictor import network_predictor
from cytolens.preprocess import PercentileNormalizer, predict_tiled
from cytolens.train.task import TASKS, register_task, task_for

TOY = Path(__file__).parent / "toy_task"


def toy_module():
    spec = importlib.util.spec_from_file_location("toy_regression", TOY / "toy_regression.py")
    module = sys.modules["toy_regression"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy_task():
    task = register_task(toy_module().TASK)
    yield task
    TASKS.pop(task.name, None)


def blobs(shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A clean image of smooth blobs and a noisy copy of it."""
    rng = np.random.default_rng(seed)
    points = np.zeros(shape, np.float32)
    points[tuple(rng.integers(0, n, 12 if len(shape) == 2 else 20) for n in shape)] = 1
    clean = ndi.gaussian_filter(points, 2.0)
    clean = clean / clean.max()
    return clean, (clean + rng.normal(0, 0.25, shape)).astype(np.float32)


def toy_config(folder: Path, dims: int) -> dict:
    shape = (48, 48) if dims == 2 else (16, 32, 32)
    for seed in range(10):
        clean, noisy = blobs(shape, seed)
        axes = "YX" if dims == 2 else "ZYX"
        write_image(folder / "clean" / f"img{seed:02d}.tif", clean, axes=axes)
        write_image(folder / "noisy" / f"img{seed:02d}.tif", noisy, axes=axes)
    config = yaml.safe_load((TOY / "config.yaml").read_text())
    config["architecture"]["dims"] = dims
    config["data"]["images"], config["data"]["targets"] = str(folder / "noisy"), str(folder / "clean")
    config["output"] = str(folder / f"toy_denoiser_{dims}d")
    return config


def tiled(network, image: np.ndarray, dims: int) -> np.ndarray:
    """``network``'s output for a whole image, predicted in tiles of 16 with an overlap of 4."""
    return predict_tiled(network_predictor(network), image[None], 1, tile_size=16, overlap=4, size_divisor=4,
                         spatial_ndim=dims)[0]


@pytest.mark.parametrize("dims", [2, 3])
def test_a_toy_task_trains_through_the_generic_run_and_its_package_runs_tiled(toy_task, tmp_path, dims):
    import torch

    from cytolens.models.package import build_network

    config = toy_config(tmp_path, dims)
    epochs = config["optimization"]["epochs"] = 4 if dims == 2 else 12  # volumes have fewer crops to learn from
    result = cytolens.train(config, progress=False)
    package = load(result.package)
    assert package.meta["task"] == "toy_regression" and package.meta["license"] == "CC0-1.0 (synthetic data)"
    assert package.info.architecture.args["dims"] == dims and package.info.normalization.high == 99.8
    assert (result.package / "history.csv").is_file() and (result.package / "train_config.yaml").is_file()
    assert len(result.history) == epochs and result.n_train_units == 8  # 10 images, val 0.2
    assert result.history[-1]["val_loss"] < 0.6 * result.history[0]["val_loss"]

    # a larger, unseen image than any tile, predicted tile by tile
    shape = (80, 72) if dims == 2 else (24, 40, 36)
    clean, noisy = blobs(shape, seed=99)
    normalizer = PercentileNormalizer.from_meta(package.meta["normalization"])
    lo, hi = normalizer.statistics(noisy, spatial_ndim=dims)
    noisy, target = normalizer.apply(noisy, lo, hi), normalizer.apply(clean, lo, hi)
    restored = tiled(package.inference_network, noisy, dims)
    assert restored.shape == shape and np.isfinite(restored).all()
    # the batch-norm-folded inference network computes what the trained one does
    np.testing.assert_allclose(restored, tiled(package.network, noisy, dims), atol=1e-4)
    error = np.mean((restored - target) ** 2)
    torch.manual_seed(0)
    untrained = build_network(package.meta["architecture"]).eval()
    assert error < 0.5 * np.mean((tiled(untrained, noisy, dims) - target) ** 2)
    if dims == 2:  # four short epochs are enough to denoise in 2D: closer to the clean image than the input
        assert error < 0.7 * np.mean((noisy - target) ** 2)


def test_tuning_and_learning_curves_work_on_the_toy_task(toy_task, tmp_path):
    curve = cytolens.train.learning_curve(toy_config(tmp_path, 2), fractions=(0.5, 1.0), out_dir=tmp_path / "curve",
                                          progress=False)
    assert curve.table["images"].tolist() == [4, 8] and "val_psnr" in curve.table.columns


def test_an_unregistered_task_is_named_in_the_error(tmp_path):
    with pytest.raises(InvalidParameterError, match="unknown task 'toy_regression'"):
        cytolens.train(toy_config(tmp_path, 2), progress=False)
    with pytest.raises(InvalidParameterError, match="is not a task: it lacks"):
        register_task(object())
    assert task_for("segmentation").name == "segmentation"


@pytest.mark.parametrize("kind", ["gray uint16", "gray (Y, X, 1)", "rgb uint8", "rgba uint8", "float, over 4 Mpx"])
def test_training_and_inference_feed_the_network_the_same_numbers(kind):
    """The normalization recorded in a package is the one training used: same network input, to the bit."""
    from cytolens.tasks.segmentation.inference import as_yxc, tile_preparer
    from cytolens.tasks.segmentation.training import model_input

    rng = np.random.default_rng(0)
    shape = (2100, 2050) if "4 Mpx" in kind else (96, 80)
    image = {"gray uint16": lambda: rng.integers(0, 4000, shape, dtype=np.uint16),
             "gray (Y, X, 1)": lambda: rng.integers(0, 255, (*shape, 1), dtype=np.uint8),
             "rgb uint8": lambda: rng.integers(0, 255, (*shape, 3), dtype=np.uint8),
             "rgba uint8": lambda: rng.integers(0, 255, (*shape, 4), dtype=np.uint8),
             "float, over 4 Mpx": lambda: rng.gamma(2.0, 50.0, shape)}[kind]()
    package = load("nuclei")
    low, high = package.info.normalization.low, package.info.normalization.high
    trained_on = model_input(image, (low, high))
    yxc = as_yxc(image)
    segmented_with = tile_preparer(package, yxc)(yxc)
    assert trained_on.shape == segmented_with.shape == (3, *shape)
    assert np.array_equal(trained_on, segmented_with)
