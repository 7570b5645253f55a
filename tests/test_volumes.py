"""3D: synthetic volumes, native and slice-stitched segmentation, tiling, 3D measurements, bad input, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

import cytolens
from cytolens.data.synthetic3d import synthetic_nuclei_3d
from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError
from cytolens.io import write_image
from cytolens.measure3d import measure_volume
from cytolens.metrics.segmentation import match
from cytolens.models import load
from cytolens.models.package import ModelPackage, save
from cytolens.nn.unet import UNet
from cytolens.tasks.segmentation.volume import segment_volume, split_at_necks, stitch_planes

torch.set_num_threads(1)


def ap50(truth: np.ndarray, pred: np.ndarray) -> float:
    m = match(truth.astype(np.int64), pred.astype(np.int64), 0.5)
    return m.tp / max(m.n_true + m.n_pred - m.tp, 1)


@pytest.fixture(scope="module")
def volume():
    return synthetic_nuclei_3d((12, 80, 80), n_nuclei=8, diameter_range=(16, 22), anisotropy=2, seed=3)


# --- synthetic volumes -------------------------------------------------------------------------


def test_synthetic_volumes_have_exact_connected_instances_some_touching(volume):
    image, labels = volume
    assert image.shape == labels.shape == (12, 80, 80) and image.dtype == labels.dtype == np.uint16
    assert labels.max() == 8
    assert all(ndi.label(labels == i)[1] == 1 for i in range(1, 9))  # each nucleus one region
    touching = labels[:, :, 1:] * (labels[:, :, :-1] != labels[:, :, 1:]) * (labels[:, :, :-1] > 0)
    assert touching.any()  # at least one pair shares a face
    inside, outside = image[labels > 0].mean(), image[labels == 0].mean()
    assert inside > outside + 200
    again = synthetic_nuclei_3d((12, 80, 80), n_nuclei=8, diameter_range=(16, 22), anisotropy=2, seed=3)
    assert np.array_equal(again[1], labels) and np.array_equal(again[0], image)


# --- slices stitched through Z -------------------------------------------------------------------


def test_stitching_links_objects_through_planes_one_to_one():
    planes = np.zeros((5, 4, 12), np.int32)
    planes[0, :, 0:4] = 3            # object A starts
    planes[1, :, 0:4] = 1            # A again (another 2D id)
    planes[1, :, 6:10] = 2           # B starts in plane 1
    planes[2, :, 0:2] = 5            # A splits in two: the larger overlap keeps A ...
    planes[2, :, 2:4] = 6            # ... and the equal other half: IoU 0.5 each, one of them keeps A
    planes[2, :, 6:10] = 9           # B
    planes[4, :, 6:10] = 4           # after an empty plane: a new object, not B
    out = stitch_planes(planes)
    assert out.dtype == np.uint32 and out.max() == 4
    a, b = out[0, 0, 0], out[1, 0, 6]
    assert a != b and out[1, 0, 0] == a
    assert {out[2, 0, 0], out[2, 0, 2]} == {a, out[2, 0, 2] if out[2, 0, 0] == a else out[2, 0, 0]}
    assert (out[2, 0, 0] == a) != (out[2, 0, 2] == a)  # one to one: never both halves
    assert out[2, 0, 6] == b and out[4, 0, 6] not in (0, b)


def test_stitching_needs_enough_overlap():
    planes = np.zeros((2, 1, 10), np.int32)
    planes[0, 0, 0:5] = 1
    planes[1, 0, 4:9] = 1  # IoU 1/9
    assert stitch_planes(planes, threshold=0.25).max() == 2
    assert stitch_planes(planes, threshold=0.1).max() == 1


def test_a_volume_segmented_by_slices_end_to_end(volume):
    image, truth = volume
    labels = cytolens.segment(image, "nuclei_fast", axes="ZYX", anisotropy=2, diameter=19)
    assert labels.shape == truth.shape and labels.dtype == np.uint32
    assert ap50(truth, labels) >= 0.9


# --- native 3D: a fixed 3D "network" so tiling is tested on its own ----------------------------


class _BlurNet(torch.nn.Module):
    """Foreground and a centre-peaked distance from Gaussian blurs of the input: a deterministic 3D model."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.config = type("Config", (), {"dims": 3})()

    @staticmethod
    def _blur(x, sigma):
        radius = int(3 * sigma)
        kernel = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        for axis in range(3):
            shape = [1, 1, 1, 1, 1]
            shape[2 + axis] = -1
            x = torch.nn.functional.conv3d(torch.nn.functional.pad(x, [radius] * 6, mode="replicate"),
                                           kernel.view(shape))
            x = x[(slice(None), slice(None), *(slice(radius, -radius) if a != axis else slice(None)
                                               for a in range(3)))]
        return x

    def forward(self, x):
        x = x[:, :1]
        foreground = self._blur(x, 1.0)
        distance = self._blur((foreground > 0.35).float(), 2.5)
        return torch.cat([12 * (foreground - 0.35), 12 * (distance - 0.55)], dim=1) * self.scale


def blur_package() -> ModelPackage:
    meta = {"name": "blur3d", "task": "segmentation", "schema": "deep_watershed",
            "architecture": {"name": "blur", "args": {"in_channels": 1, "depth": 2, "dims": 3}},
            "scale": {"target_diameter": 19.0}, "normalization": {"low": 1.0, "high": 99.8},
            "postprocess": {"foreground_threshold": 0.5, "marker_threshold": 0.5, "min_size": 20,
                            "marker_dynamic": 0.1}}
    package = ModelPackage(meta=meta, network=_BlurNet().eval())
    package.__dict__["inference_network"] = package.network  # no batch-norm to fold
    return package


def test_native_3d_tiled_agrees_with_untiled_and_finds_the_nuclei(volume):
    image, truth = volume
    package = blur_package()
    whole = segment_volume(package, image, anisotropy=2, tile_size=(32, 96, 96), overlap=(0, 0, 0))
    tiled = segment_volume(package, image, anisotropy=2, tile_size=(12, 32, 32), overlap=(4, 12, 12))
    assert whole.shape == tiled.shape == truth.shape
    assert ap50(whole, tiled) >= 0.99
    # a blur cannot split touching nuclei, but its foreground must land on theirs (resizing there and back)
    assert np.count_nonzero((truth > 0) & (whole > 0)) / np.count_nonzero((truth > 0) | (whole > 0)) >= 0.65


def tiny_unet_package(folder) -> str:
    torch.manual_seed(0)
    network = UNet(in_channels=1, out_channels=2, depth=2, base_channels=4, dims=3)
    meta = {"name": "tiny3d", "task": "segmentation", "schema": "deep_watershed",
            "architecture": {"name": "unet", "args": network.config.to_dict()},
            "input": {"channels": 1, "axes": "ZYXC"}, "scale": {"target_diameter": 19.0},
            "postprocess": {"min_size": 4}}
    return str(save(folder / "tiny3d", meta, network.state_dict()))


def test_a_saved_3d_unet_package_segments_natively(tmp_path, volume):
    package = load(tiny_unet_package(tmp_path))
    labels = cytolens.segment(volume[0][:8, :40, :40], package, axes="ZYX", anisotropy=2)
    assert labels.shape == (8, 40, 40) and labels.dtype == np.uint32  # untrained: any labels, right shape


# --- measurements --------------------------------------------------------------------------------


def test_measurements_of_a_ball_sampled_anisotropically():
    radius, anisotropy = 12.0, 2.0
    z, y, x = np.mgrid[0:16, 0:40, 0:40].astype(float)
    ball = ((z * anisotropy - 15) ** 2 + (y - 19.5) ** 2 + (x - 20) ** 2) <= radius**2
    labels = ball.astype(np.uint16) * 5
    row = measure_volume(labels, image=ball * 10.0, spacing=(anisotropy, 1, 1)).iloc[0]
    exact_volume = 4 / 3 * math.pi * radius**3
    assert row["label"] == 5
    assert row["volume"] == pytest.approx(exact_volume, rel=0.03)
    assert row["surface_area"] == pytest.approx(4 * math.pi * radius**2, rel=0.05)
    assert row["equivalent_diameter"] == pytest.approx(2 * radius, rel=0.02)
    assert (row["centroid_z"], row["centroid_y"], row["centroid_x"]) == pytest.approx((15, 19.5, 20), abs=1e-6)
    assert row["mean_intensity"] == 10 and row["total_intensity"] == 10 * ball.sum()
    # cytolens.measure dispatches to the 3D table for a label volume
    assert "surface_area" in cytolens.measure(labels, spacing=(anisotropy, 1, 1)).columns


# --- bad input: one-line errors, nothing written ---------------------------------------------------


@pytest.mark.parametrize(("kind", "error", "message"), [
    ("2d image", InvalidImageError, "is 2D"),
    ("anisotropy 0", InvalidParameterError, "anisotropy"),
    ("anisotropy -1", InvalidParameterError, "anisotropy"),
    ("2 channels", InvalidImageError, "2 channels"),
    ("single plane for slices", InvalidImageError, "is 2D"),
])
def test_bad_volumes_get_clear_errors(kind, error, message):
    rng = np.random.default_rng(0)
    volume, anisotropy = rng.random((6, 64, 64)), 1.0
    if kind == "2d image":
        volume = rng.random((64, 64))
    elif kind.startswith("anisotropy"):
        anisotropy = float(kind.split()[1])
    elif kind == "2 channels":
        volume = rng.random((6, 64, 64, 2))
    elif kind == "single plane for slices":
        volume = rng.random((64, 64, 1))[..., 0]
    with pytest.raises(error, match=message):
        cytolens.segment(volume, "nuclei_fast", axes="ZYX", anisotropy=anisotropy, diameter=19)


def test_too_few_planes_for_a_3d_model(tmp_path):
    package = load(tiny_unet_package(tmp_path))  # depth 2: 4 planes at anisotropy 1, 2 at anisotropy 2
    with pytest.raises(InvalidImageError, match="3 Z plane.*needs at least 4"):
        cytolens.segment(np.random.default_rng(0).random((3, 32, 32)), package, axes="ZYX", anisotropy=1)
    assert cytolens.segment(np.random.default_rng(0).random((3, 32, 32)), package, axes="ZYX",
                            anisotropy=2).shape == (3, 32, 32)


# --- the CLI --------------------------------------------------------------------------------------


def cli(*args: str):
    from typer.testing import CliRunner

    from cytolens.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_segments_a_volume_into_a_zyx_tiff_and_a_3d_table(volume, tmp_path):
    image, truth = volume
    stack = write_image(tmp_path / "stack.tif", image, axes="ZYX")
    out = tmp_path / "out"
    result = cli("segment", str(stack), "-o", str(out), "--model", "nuclei_fast", "--axes", "ZYX",
                 "--anisotropy", "2", "--diameter", "19", "--quiet")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out / "stack_labels.tif") as tif:  # what Fiji and napari read
        assert tif.series[0].axes == "ZYX" and len(tif.pages) == 12
        labels = tif.asarray()
    assert labels.shape == truth.shape and ap50(truth, labels) >= 0.9
    table = pd.read_csv(out / "stack_cells.csv")
    assert len(table) == labels.max() and {"volume", "surface_area", "centroid_z"} <= set(table.columns)
    # volumes in XY pixels cubed: the anisotropy doubles each voxel
    assert table["volume"].sum() == pytest.approx(2 * np.count_nonzero(labels))


@pytest.mark.parametrize(("shape", "args", "message"), [
    ((64, 64), (), "is 2D"),
    ((6, 64, 64), ("--anisotropy", "0"), "anisotropy"),
    ((6, 64, 64, 2), (), "2 channels"),
    ((6, 64, 64), ("--overlay",), "not written for volumes"),
])
def test_cli_bad_volume_input_is_one_line_and_writes_nothing(tmp_path, shape, args, message):
    path = write_image(tmp_path / "in.tif", np.random.default_rng(0).random(shape).astype(np.float32),
                       axes={2: "YX", 3: "ZYX", 4: "ZYXC"}[len(shape)])
    out = tmp_path / "out"
    result = cli("segment", str(path), "-o", str(out), "--model", "nuclei_fast", "--axes", "ZYX",
                 "--diameter", "19", *args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not out.exists() or not any(out.iterdir())


def test_errors_are_cytolens_errors():
    with pytest.raises(CytolensError):
        cytolens.segment(np.zeros((4, 4)), "nuclei_fast", axes="TZYX")


def test_stacked_touching_nuclei_are_cut_at_their_neck_and_a_ball_is_not():
    z, y, x = np.mgrid[0:19, 0:20, 0:20]  # balls cut by the volume's faces: no one-pixel caps
    upper = (z - 4) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 <= 36
    lower = ((z - 14) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 <= 36) & ~upper
    planes = np.where(upper | lower, 7, 0).astype(np.int32)  # each plane one 2D object: stitched into one
    stitched = stitch_planes(planes)
    assert stitched.max() == 1
    cut = split_at_necks(stitched)
    assert cut.max() == 2 and ap50((upper + 2 * lower).astype(np.int32), cut) == 1.0
    assert split_at_necks(stitch_planes(upper[:10].astype(np.int32))).max() == 1
