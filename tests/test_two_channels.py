"""Segmentation models that declare two input channels (cytoplasm + nucleus): training, API, CLI, bad counts."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels
from typer.testing import CliRunner

import cytolens
from cytolens.cli import app
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.io import read_image, write_labels
from cytolens.metrics.segmentation import match
from cytolens.models import load
from cytolens.preprocess import PercentileNormalizer
from cytolens.tasks.segmentation.inference import tile_preparer

torch.set_num_threads(1)


def cells_image(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Y, X, 2)`` float32 — a dim cytoplasm stain, a bright nucleus stain — and its whole-cell labels."""
    nuclei, nucleus_labels = synthetic_nuclei((64, 64), n_nuclei=5, diameter_range=(10, 14), touching_fraction=0,
                                              seed=seed)
    cells = expand_labels(nucleus_labels, 5)
    rng = np.random.default_rng(seed)
    cytoplasm = 5 + 40 * ndi.gaussian_filter((cells > 0).astype(np.float32), 1.5) + rng.normal(0, 2, cells.shape)
    return np.stack([cytoplasm, nuclei], axis=-1).astype(np.float32), cells.astype(np.int64)


@pytest.fixture(scope="module")
def two_channel_model(tmp_path_factory):
    """A small deep-watershed model trained for 40 steps through the generic loop on 2-channel files, half of
    them written channels first (``(2, Y, X)`` TIFFs without axes metadata)."""
    from cytolens.train import run

    root = tmp_path_factory.mktemp("two_channels")
    (root / "images").mkdir()
    for k in range(8):
        image, cells = cells_image(k)
        tifffile.imwrite(root / "images" / f"im{k}.tif", np.moveaxis(image, -1, 0) if k % 2 else image)
        write_labels(root / "labels" / f"im{k}.tif", cells.astype(np.uint16))
    assert read_image(root / "images" / "im1.tif").shape == (2, 64, 64)  # really channels first on disk
    config = {"name": "cyto_nucleus", "schema": "deep_watershed", "channels": [0, 1],
              "data": {"images": str(root / "images"), "labels": str(root / "labels"), "val_fraction": 0.25},
              "architecture": {"depth": 2, "base_channels": 8},
              "optimization": {"epochs": 1, "steps_per_epoch": 40, "batch_size": 4, "crop_size": 48, "patience": 0,
                               "learning_rate": 0.01},
              "target_diameter": 20, "output": str(root / "model")}
    return run(config, progress=False).package


def test_the_package_declares_its_two_channels(two_channel_model):
    meta = json.loads((two_channel_model / "model.json").read_text())
    assert meta["input"]["channels"] == 2 and meta["input"]["file_channels"] == [0, 1]
    assert meta["architecture"]["args"]["in_channels"] == 2
    first_conv = next(m for m in load(two_channel_model).network.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2


def test_a_two_channel_model_segments_held_out_cells(two_channel_model):
    package = load(two_channel_model)
    for seed in (100, 101):  # images no training step saw
        image, cells = cells_image(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = cytolens.segment(image, package, diameter=22)
            channels_first = cytolens.segment(np.moveaxis(image, -1, 0), package, diameter=22, axes="CYX")
            picked = cytolens.segment(np.dstack([image[..., 1:], image]), package, diameter=22, channels=[1, 2])
        assert labels.shape == (64, 64) and labels.dtype == np.uint32
        assert match(cells, labels.astype(np.int64), 0.5).average_precision >= 0.8
        np.testing.assert_array_equal(channels_first, labels)
        np.testing.assert_array_equal(picked, labels)


def test_each_declared_channel_is_normalized_on_its_own(two_channel_model):
    image, _ = cells_image(3)
    image[..., 1] *= 1000  # a far brighter nucleus stain leaves the cytoplasm channel's numbers as they were
    x = tile_preparer(load(two_channel_model), image)(image)
    assert x.shape == (2, 64, 64)
    lo, hi = PercentileNormalizer().statistics(image[..., 0])
    np.testing.assert_allclose(x[0], (image[..., 0] - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    assert 0.9 < np.percentile(x[1], 99.8) < 1.1


@pytest.mark.parametrize("image, message", [
    (np.zeros((64, 64)), "has 1 channel but model 'cyto_nucleus' takes 2"),
    (np.zeros((64, 64, 3)), "has 3 channels but model 'cyto_nucleus' takes 2 .*channels="),
    (np.zeros((2, 64, 64)), "has its channels first; give axes='CYX'"),
])
def test_a_channel_count_the_model_does_not_take_is_one_clear_error(two_channel_model, image, message):
    image = image + np.random.default_rng(0).random(image.shape)
    with pytest.raises(InvalidImageError, match=message):
        cytolens.segment(image, load(two_channel_model))


def test_a_gray_model_refuses_two_channels_and_channel_lists_are_checked(two_channel_model):
    image, _ = cells_image(4)
    with pytest.raises(InvalidImageError, match="1, 3 or 4 channels"):
        cytolens.segment(image, "nuclei_fast", diameter=12)
    with pytest.raises(InvalidImageError, match="has 2 channels, so it has no channel 2"):
        cytolens.segment(image, load(two_channel_model), channels=[0, 2])
    with pytest.raises(InvalidParameterError, match="distinct"):
        cytolens.segment(image, load(two_channel_model), channels=[0, 0])
    with pytest.raises(InvalidParameterError, match="not both"):
        cytolens.segment(image, load(two_channel_model), channel=0, channels=[0, 1])
    with pytest.raises(InvalidParameterError, match="each of its declared channels on its own"):
        cytolens.segment(image, load(two_channel_model), intensity_range=(0, 1))


def test_volumes_of_a_two_channel_model_need_both_channels(two_channel_model):
    volume = np.random.default_rng(0).random((3, 32, 32))
    with pytest.raises(InvalidImageError, match="the volume has 1 channel but model 'cyto_nucleus' takes 2"):
        cytolens.segment(volume, load(two_channel_model), axes="ZYX", diameter=20)


@pytest.mark.filterwarnings("ignore:model 'cyto_nucleus' is unsure")
def test_the_cli_segments_two_channel_files_and_refuses_wrong_counts(two_channel_model, tmp_path):
    image, cells = cells_image(102)
    tifffile.imwrite(tmp_path / "cyx.tif", np.moveaxis(image, -1, 0))  # channels first, no axes metadata
    tifffile.imwrite(tmp_path / "three.tif", np.dstack([image[..., 1:], image]))
    runner = CliRunner()
    common = ["--model", str(two_channel_model), "--diameter", "22", "-q"]
    result = runner.invoke(app, ["segment", str(tmp_path / "cyx.tif"), "-o", str(tmp_path / "out"), "--axes", "CYX",
                                 *common])
    assert result.exit_code == 0, result.output
    labels = read_image(tmp_path / "out" / "cyx_labels.tif")
    assert labels.shape == (64, 64) and match(cells, labels.astype(np.int64), 0.5).average_precision >= 0.8
    table = (tmp_path / "out" / "cyx_cells.csv").read_text().splitlines()
    assert len(table) == labels.max() + 1 and "mean_intensity_c1" in table[0]  # both channels measured
    result = runner.invoke(app, ["segment", str(tmp_path / "three.tif"), "-o", str(tmp_path / "picked"),
                                 "--channels", "1,2", *common])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_image(tmp_path / "picked" / "three_labels.tif"), labels)
    for args, message in [(["three.tif"], "has 3 channels but model 'cyto_nucleus' takes 2"),
                          (["cyx.tif"], "has its channels first|channels last"),
                          (["three.tif", "--channel", "0"], "has 1 channel but"),
                          (["three.tif", "--channels", "0,x"], "--channels takes channel numbers")]:
        out = tmp_path / f"bad_{len(message)}"
        result = runner.invoke(app, ["segment", str(tmp_path / args[0]), "-o", str(out), *args[1:], *common])
        assert result.exit_code != 0
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
        assert re.search(message, result.output), result.output
        assert not out.exists() or not any(out.iterdir())  # nothing written


def test_a_bioimageio_export_normalizes_declared_channels_each_on_its_own(two_channel_model):
    pytest.importorskip("bioimageio.spec")
    from bioimageio.spec.model import v0_5

    from cytolens.models.bioimageio import _preprocessing

    meta = json.loads((two_channel_model / "model.json").read_text())
    assert [str(a) for a in _preprocessing(meta, v0_5)[0].kwargs.axes] == ["y", "x"]
    assert [str(a) for a in _preprocessing(load("nuclei_fast").meta, v0_5)[0].kwargs.axes] == ["channel", "y", "x"]


def test_training_settings_and_files_with_too_few_channels_are_clear_errors():
    from cytolens.errors import CytolensError
    from cytolens.tasks.segmentation.training import model_input
    from cytolens.train.config import validate_config

    raw = {"name": "n", "schema": "deep_watershed", "data": {"images": "i", "labels": "l"}, "output": "o"}
    assert validate_config(raw | {"channels": [1, 0]}).channels == [1, 0]
    with pytest.raises(CytolensError, match="channels must be distinct"):
        validate_config(raw | {"channels": [0, 0]})
    with pytest.raises(InvalidImageError, match="a.tif has 1 channel, so it has no channel 1"):
        model_input(np.random.default_rng(0).random((8, 8)), channels=[0, 1], where="a.tif")
    x = model_input(np.random.default_rng(0).random((8, 8, 3)), channels=[2, 0])
    assert x.shape == (2, 8, 8)
