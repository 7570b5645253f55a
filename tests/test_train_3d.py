"""3D segmentation training through the generic loop: a dims-3 config trains, its package segments natively,
and bad 3D configs or data give one-line errors (issue 27)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import cytolens
from cytolens.data.synthetic3d import synthetic_nuclei_3d
from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError
from cytolens.io import write_image, write_labels
from cytolens.metrics.segmentation import match
from cytolens.models import load
from cytolens.train.config import validate_config
from cytolens.train.sampler import CropSampler

torch.set_num_threads(1)

SHAPE, ANISOTROPY = (16, 48, 48), 2.0


def tiny_volume(seed: int):
    return synthetic_nuclei_3d(SHAPE, n_nuclei=5, diameter_range=(11, 14), anisotropy=ANISOTROPY,
                               touching_fraction=0.3, seed=seed)


def write_volumes(root, seeds):
    for seed in seeds:
        image, labels = tiny_volume(seed)
        write_image(root / "images" / f"v{seed}.tif", image, axes="ZYX")
        write_labels(root / "labels" / f"v{seed}.tif", labels, axes="ZYX")


def config_3d(root, **optimization) -> dict:
    return {"name": "tiny3d", "schema": "deep_watershed", "anisotropy": ANISOTROPY, "target_diameter": 12,
            "data": {"images": str(root / "images"), "labels": str(root / "labels"), "val_fraction": 0.25},
            "architecture": {"dims": 3, "depth": 2, "base_channels": 8},
            "augmentation": {"scale_range": [0.9, 1.1], "intensity": 0.1},
            "optimization": {"epochs": 4, "steps_per_epoch": 30, "batch_size": 2, "crop_size": [16, 32, 32],
                             "patience": 0, "learning_rate": 0.01, "schedule": "constant", "warmup_epochs": 0,
                             "precision": "bfloat16", **optimization},
            "output": str(root / "model")}


@pytest.fixture(scope="module")
def trained_3d(tmp_path_factory):
    """A tiny 3D U-Net trained for 120 steps on 6 synthetic volumes (seeds 0-5) through ``cytolens.train.run``."""
    from cytolens.train import run

    root = tmp_path_factory.mktemp("train3d")
    write_volumes(root, range(8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(config_3d(root), progress=False)


def test_a_volume_model_trains_through_the_generic_loop(trained_3d):
    history = trained_3d.history
    assert len(history) == 4
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    meta = json.loads((trained_3d.package / "model.json").read_text())
    assert meta["architecture"]["args"]["dims"] == 3 and meta["architecture"]["args"]["in_channels"] == 1
    assert meta["scale"] == {"target_diameter": 12.0, "training_anisotropy": ANISOTROPY}
    assert meta["input"]["axes"] == "ZYX" and 0 <= meta["training"]["best_val"]["val_ap50"] <= 1
    assert any(isinstance(m, torch.nn.Conv3d) for m in load(trained_3d.package).network.modules())


def test_its_package_segments_a_held_out_volume_natively(trained_3d):
    volume, truth = tiny_volume(100)  # a seed no training step saw
    labels = cytolens.segment(volume, model=trained_3d.package, axes="ZYX", anisotropy=ANISOTROPY,
                              volume_method="native")
    assert labels.shape == SHAPE and labels.dtype == np.uint32
    assert match(truth.astype(np.int64), labels.astype(np.int64), 0.5).average_precision >= 0.5
    auto = cytolens.segment(volume, model=trained_3d.package, axes="ZYX", anisotropy=ANISOTROPY)
    assert np.array_equal(auto, labels)  # a 3D package runs natively by default


def test_volume_crops_have_the_configured_shape_and_turn_only_when_square():
    sample = type("S", (), {})()
    sample.image = np.random.default_rng(0).random((1, 20, 40, 40)).astype(np.float32)
    sample.targets = np.zeros((2, 20, 40, 40), np.float32)
    sample.stratum = "all"
    for crop in ((8, 16, 24), (16, 32, 32)):
        inputs, targets = CropSampler([sample], crop_size=crop, batch_size=4, steps_per_epoch=1).batch_at(0, 0)
        assert inputs.shape == (4, 1, *crop) and targets.shape == (4, 2, *crop)


def test_bad_3d_configs_are_one_line_errors():
    base = {"name": "n", "schema": "deep_watershed", "data": {"images": "i", "labels": "l"}, "output": "o"}
    cases = [
        ({"optimization": {"crop_size": [16, 64, 64]}}, "only a volume model"),
        ({"anisotropy": 2.0}, "set architecture.dims: 3"),
        ({"schema": "flow_field", "architecture": {"dims": 3}}, "needs schema deep_watershed or contact_watershed"),
        ({"architecture": {"dims": 3, "depth": 3}, "optimization": {"crop_size": [12, 64, 64]}}, "multiple of"),
        ({"architecture": {"dims": 3}, "channels": [0, 1]}, "one-channel"),
        ({"architecture": {"dims": 3}, "optimization": {"crop_size": [16, 64]}}, "three whole numbers >= 8"),
        ({"optimization": {"crop_size": 16}}, "whole number >= 32"),
    ]
    for update, words in cases:
        with pytest.raises(InvalidParameterError) as caught:
            validate_config({**base, **update})
        assert words in str(caught.value) and "\n" not in str(caught.value)


def test_2d_images_for_a_volume_model_are_one_line_errors(tmp_path):
    from cytolens.train import run

    image, labels = tiny_volume(1)
    for k in range(4):
        write_image(tmp_path / "images" / f"im{k}.tif", image[8])
        write_labels(tmp_path / "labels" / f"im{k}.tif", labels[8])
    with pytest.raises(InvalidImageError) as caught:
        run(config_3d(tmp_path), progress=False)
    message = str(caught.value)
    assert "trains on (Z, Y, X) label volumes" in message and "\n" not in message
    assert not (tmp_path / "model").exists()


def test_a_crop_deeper_than_the_volumes_is_a_one_line_error(tmp_path):
    from cytolens.train import run

    write_volumes(tmp_path, range(4))  # 16 planes x anisotropy 2 x scale ~1 = ~32 planes at the model's scale
    with pytest.raises(CytolensError) as caught:
        run(config_3d(tmp_path, crop_size=[64, 32, 32]), progress=False)
    message = str(caught.value)
    assert "larger than training volume" in message and "\n" not in message
    assert not (tmp_path / "model").exists()


def test_without_a_diameter_a_volume_is_segmented_again_at_its_objects_size(trained_3d):
    """Nuclei 1.5x the model's size: the first pass (at the model's scale) measures them, a second pass runs at
    that size, exactly as if that diameter had been given, and does no worse than the first pass."""
    from cytolens.tasks.segmentation.training import median_sphere_diameter

    volume, truth = synthetic_nuclei_3d((24, 72, 72), n_nuclei=5, diameter_range=(17, 21), anisotropy=ANISOTROPY,
                                        touching_fraction=0.3, seed=100)
    options = {"model": trained_3d.package, "axes": "ZYX", "anisotropy": ANISOTROPY}
    first_pass = cytolens.segment(volume, diameter=12, **options)  # the model's own scale
    estimate = median_sphere_diameter(first_pass, ANISOTROPY)
    assert estimate > 12 * 1.1  # off by more than the tolerance: a second pass is due
    labels = cytolens.segment(volume, **options)
    assert np.array_equal(labels, cytolens.segment(volume, diameter=estimate, **options))
    truth = truth.astype(np.int64)
    assert (match(truth, labels.astype(np.int64), 0.5).average_precision
            >= match(truth, first_pass.astype(np.int64), 0.5).average_precision)
