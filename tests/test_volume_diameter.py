"""The diameter of a volume for the slices method, estimated on several planes; bad volume input in the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_volumes import cli, tiny_unet_package

import cytolens
from cytolens.data.synthetic3d import synthetic_nuclei_3d
from cytolens.io import write_image
from cytolens.models import load
from cytolens.tasks.segmentation.inference import estimate_diameter
from cytolens.tasks.segmentation.volume import estimate_planes, estimate_volume_diameter

torch.set_num_threads(1)


def cross_section_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the objects' cross-sections, plane by plane (what slices see)."""
    areas = np.concatenate([np.bincount(plane.ravel())[1:] for plane in labels])
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi)))


@pytest.fixture(scope="module")
def volume():
    return synthetic_nuclei_3d((16, 96, 96), n_nuclei=8, diameter_range=(16, 22), anisotropy=2, seed=5)


def test_the_estimate_uses_the_planes_with_the_most_content_and_skips_empty_ones():
    volume = np.zeros((20, 8, 8))
    rng = np.random.default_rng(0)
    weight = 1 / (1 + np.abs(np.arange(4, 17) - 10))  # the most contrast in the middle, none in planes 0-3, 17-19
    volume[4:17] = rng.random((13, 8, 8)) * weight[:, None, None]
    assert estimate_planes(volume, 5) == [8, 9, 10, 11, 12]
    assert estimate_planes(volume[:6], 5) == [4, 5]


def test_the_volume_diameter_is_near_the_nuclei_cross_sections(volume):
    image, truth = volume
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate = estimate_volume_diameter(load("nuclei_fast"), image)
    assert estimate == pytest.approx(cross_section_diameter(truth), rel=0.2)


def test_one_plane_of_noise_with_the_most_contrast_does_not_derail_the_estimate(volume):
    image, truth = volume
    noisy = image.copy()
    rng = np.random.default_rng(0)
    noisy[0] = np.where(rng.random(noisy.shape[1:]) < 0.3, image.max(), image.min())  # speckle: the largest std
    assert np.argmax([plane.std() for plane in noisy]) == 0
    package = load("nuclei_fast")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_plane = estimate_diameter(package, noisy[0])  # what the single most-contrasted plane gave
        estimate = estimate_volume_diameter(package, noisy)
    assert one_plane != pytest.approx(cross_section_diameter(truth), rel=0.2)
    assert estimate == pytest.approx(cross_section_diameter(truth), rel=0.2)


def test_a_constant_volume_has_no_diameter_and_no_objects():
    flat = np.full((4, 64, 64), 7.0)
    assert estimate_volume_diameter(load("nuclei_fast"), flat) == 0.0
    assert not cytolens.segment(flat, "nuclei_fast", axes="ZYX").any()


@pytest.mark.parametrize(("args", "message"), [
    (("--anisotropy", "-1"), "anisotropy"),
    (("--anisotropy", "nan"), "anisotropy"),
    (("--anisotropy", "1"), "needs at least 4"),  # a depth-2 3D U-Net needs 4 planes at anisotropy 1
])
def test_cli_too_few_planes_and_bad_anisotropy_are_one_line_and_write_nothing(tmp_path, args, message):
    path = write_image(tmp_path / "in.tif", np.random.default_rng(0).random((3, 32, 32)).astype(np.float32),
                       axes="ZYX")
    out = tmp_path / "out"
    result = cli("segment", str(path), "-o", str(out), "--model", tiny_unet_package(tmp_path), "--axes", "ZYX", *args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not out.exists() or not any(out.iterdir())


def test_an_estimate_below_the_models_range_enlarges_the_planes_no_more_than_a_2d_estimate(volume, monkeypatch):
    import cytolens.tasks.segmentation.volume as volumes
    from cytolens.tasks.segmentation.inference import MAX_ESTIMATED_SCALE

    used = []
    monkeypatch.setattr(volumes, "estimate_volume_diameter", lambda *args, **kwargs: 1.2)  # specks taken for nuclei
    monkeypatch.setattr(volumes, "segment_image", lambda package, plane, diameter, **kwargs: (
        used.append(diameter), np.zeros(plane.shape[:2], np.uint32))[1])
    with pytest.warns(UserWarning, match="the estimated diameter 1.2 px is below"):
        cytolens.segment(volume[0][:4], "nuclei_fast", axes="ZYX", anisotropy=2)
    target = load("nuclei_fast").meta["scale"]["target_diameter"]
    assert used == [pytest.approx(target / MAX_ESTIMATED_SCALE)] * 4
