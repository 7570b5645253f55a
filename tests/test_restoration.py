"""The restoration task: supervised denoising learns, Noise2Void's blind spot is blind, tiles agree, errors are
one line, and the CLI runs end to end (tiny synthetic images; the real figures are benchmarks/restoration.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from typer.testing import CliRunner

import cytolens
import cytolens.train
from cytolens.cli import app
from cytolens.errors import CytolensError, InvalidImageError
from cytolens.io import read_image, write_image
from cytolens.models import load
from cytolens.tasks.restoration.training import (
    ShapeMismatchError,
    as_cyx,
    blind_spot_inputs,
    blind_spot_loss,
    blind_spot_mask,
)


def blobs(shape, seed: int, noise: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """A clean image of smooth blobs (0..1) and a noisy copy of it."""
    rng = np.random.default_rng(seed)
    points = np.zeros(shape, np.float32)
    points[tuple(rng.integers(0, n, max(6, shape[0] * shape[1] // 200)) for n in shape)] = 1
    clean = ndi.gaussian_filter(points, 2.0)
    clean = clean / clean.max()
    return clean, (clean + rng.normal(0, noise, shape)).astype(np.float32)


def pairs(folder, n: int = 8, shape=(48, 48)) -> None:
    for seed in range(n):
        clean, noisy = blobs(shape, seed)
        write_image(folder / "noisy" / f"img{seed:02d}.tif", noisy)
        write_image(folder / "clean" / f"img{seed:02d}.tif", clean)


def supervised_config(folder) -> dict:
    return {"task": "restoration", "name": "tiny_care",
            "data": {"images": str(folder / "noisy"), "targets": str(folder / "clean"), "val_fraction": 0.25,
                     "test_fraction": 0.0},
            "architecture": {"depth": 2, "base_channels": 8, "residual": True},
            "optimization": {"epochs": 4, "steps_per_epoch": 12, "batch_size": 4, "crop_size": 32,
                             "learning_rate": 0.003},
            "loss": "l2", "tile_size": 32, "license": "CC0-1.0 (synthetic data)", "output": str(folder / "model")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny supervised denoiser trained through ``cytolens.train`` (the generic run) once for this module."""
    folder = tmp_path_factory.mktemp("care")
    pairs(folder)
    return cytolens.train(supervised_config(folder), progress=False)


def test_supervised_restoration_learns_a_tiny_denoising_problem(trained):
    result = trained
    package = load(result.package)
    assert package.meta["task"] == "restoration" and package.meta["restoration"]["output_channels"] == 1
    assert package.network.config.residual  # saved in model.json and rebuilt from it
    clean, noisy = blobs((80, 72), seed=99)
    restored = cytolens.restore(noisy * 1000 + 50, model=result.package)  # any units: back in the input's units
    assert restored.shape == (80, 72) and restored.dtype == np.float32
    restored = (restored - 50) / 1000
    assert np.mean((restored - clean) ** 2) < 0.6 * np.mean((noisy - clean) ** 2)


def test_a_residual_network_needs_as_many_input_as_output_channels():
    from cytolens.nn.unet import UNet

    with pytest.raises(CytolensError, match="residual U-Net adds its input to its output"):
        UNet(13, 3, residual=True)


def test_the_blind_spot_never_sees_itself():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    mask = blind_spot_mask((2, 32, 32), 0.05, generator)
    assert 0 < int(mask.sum()) < 0.1 * mask.numel()
    # the network input is a function of the unmasked pixels only: change every masked pixel, nothing changes
    changed = torch.where(mask, torch.rand_like(x) * 100, x)
    assert torch.equal(blind_spot_inputs(x, mask, 5), blind_spot_inputs(changed, mask, 5))
    assert not torch.equal(blind_spot_inputs(x, mask, 5), x)  # the masked pixels were replaced
    # and through a network (N2V2: blur-pool, no top skip): no output depends on a masked pixel's value, so a
    # masked output never sees itself (all outputs at once: a single output of a tiny random ReLU net can be dead)
    from cytolens.nn.unet import UNet

    torch.manual_seed(0)
    net = UNet(1, 1, depth=2, base_channels=8, pool="blur", top_skip=False).eval()
    x = x.clone().requires_grad_(True)
    out = net(blind_spot_inputs(x, mask, 5))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert bool((grad[mask] == 0).all()) and bool((grad[~mask] != 0).any())
    # the loss reads the masked pixels only
    loss = blind_spot_loss("l2")
    targets = torch.cat([x.detach(), mask.float()], dim=1)
    prediction = torch.where(mask, x.detach(), x.detach() + 5)  # right on the masked pixels, wrong elsewhere
    assert float(loss(prediction, targets)) == 0.0


def test_tiled_restoration_agrees_with_untiled(trained):
    package = load(trained.package)
    _, noisy = blobs((96, 88), seed=5)
    whole = cytolens.restore(noisy, model=package, tile_size=128)
    tiled = cytolens.restore(noisy, model=package, tile_size=48, overlap=12)
    span = float(whole.max() - whole.min())
    assert np.abs(whole - tiled).mean() < 0.01 * span and np.abs(whole - tiled).max() < 0.1 * span


def test_shape_errors_are_one_line_cytolens_errors(tmp_path, trained):
    pairs(tmp_path, n=4)
    write_image(tmp_path / "clean" / "img03.tif", np.zeros((40, 48), np.float32), overwrite=True)
    with pytest.raises(ShapeMismatchError, match=r"source img03.tif is 48x48 px but its target img03.tif is 40x48"):
        cytolens.train(supervised_config(tmp_path), progress=False)
    with pytest.raises(ShapeMismatchError, match=r"has 4 planes/channels .* the model reads 13"):
        as_cyx(np.zeros((4, 32, 32)), channels=13)
    model = trained.package
    with pytest.raises(ShapeMismatchError, match="the model reads 1"):
        cytolens.restore(np.random.rand(3, 40, 40), model=model)
    with pytest.raises(InvalidImageError, match="3x40 px, too small for this network: it needs at least 8"):
        cytolens.restore(np.random.rand(3, 40), model=model)
    with pytest.raises(CytolensError, match="not a restoration model"):
        cytolens.restore(np.random.rand(40, 40), model="nuclei_fast")
    for error in (ShapeMismatchError, InvalidImageError):
        assert issubclass(error, CytolensError)


def test_cli_train_denoiser_then_restore(tmp_path):
    runner = CliRunner()
    for seed in range(2):
        write_image(tmp_path / "in" / f"noisy{seed}.tif", blobs((64, 64), seed)[1])
    model = tmp_path / "denoiser"
    done = runner.invoke(app, ["train-denoiser", str(tmp_path / "in"), "-o", str(model), "--minutes", "0.1", "-q"])
    assert done.exit_code == 0, done.output
    assert load(model).meta["restoration"]["mode"] == "noise2void"
    assert load(model).meta["architecture"]["args"]["pool"] == "blur"
    out = tmp_path / "out"
    done = runner.invoke(app, ["restore", str(tmp_path / "in" / "noisy0.tif"), "--model", str(model), "-o", str(out)])
    assert done.exit_code == 0, done.output
    restored = read_image(out / "noisy0_restored.tif")
    assert restored.dtype == np.float32 and restored.shape == (64, 64) and np.isfinite(restored).all()
    again = runner.invoke(app, ["restore", str(tmp_path / "in" / "noisy0.tif"), "--model", str(model), "-o", str(out)])
    assert again.exit_code == 1 and "exists" in again.output and "Traceback" not in again.output
    assert runner.invoke(app, ["restore", str(tmp_path / "in"), "--model", str(model), "-o", str(out),
                               "--overwrite", "-q"]).exit_code == 0
    small = tmp_path / "small"
    write_image(small / "tiny.tif", np.random.rand(20, 20).astype(np.float32))
    done = runner.invoke(app, ["train-denoiser", str(small), "-o", str(tmp_path / "m2"), "--minutes", "0.1"])
    assert done.exit_code == 1 and "too small for noise2void" in done.output


def test_the_bundled_label_free_model_reads_13_planes_and_predicts_three_channels():
    package = load("label-free-nuclei")
    assert package.meta["restoration"]["output_names"] == ["DAPI", "MAP2", "NFH"]
    assert package.meta["validation"]["per_channel"]["DAPI"]["pearson_r"] > 0.5
    stack = np.random.default_rng(0).random((13, 40, 36)).astype(np.float32)
    predicted = cytolens.restore(stack, model=package)
    assert predicted.shape == (3, 40, 36) and np.isfinite(predicted).all()
    with pytest.raises(ShapeMismatchError, match="has 4 planes/channels .* the model reads 13"):
        cytolens.restore(stack[:4], model=package)
