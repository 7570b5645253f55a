"""Tests for cytolens.measure on tiny hand-made label images."""

from __future__ import annotations

import numpy as np
import pytest

from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError
from cytolens.measure import INTENSITY_STATISTICS, MORPHOLOGY_COLUMNS, PIECES_WINDOW, measure


@pytest.fixture
def square_and_disk() -> np.ndarray:
    """A 4x4 square (label 2) and a radius-3 disk (label 5) on a 20x20 background."""
    labels = np.zeros((20, 20), dtype=np.uint16)
    labels[2:6, 3:7] = 2
    yy, xx = np.mgrid[:20, :20]
    labels[(yy - 13) ** 2 + (xx - 12) ** 2 <= 9] = 5
    return labels


def test_square_and_disk_morphology(square_and_disk):
    table = measure(square_and_disk)
    assert list(table.columns) == list(MORPHOLOGY_COLUMNS)
    assert table["label"].tolist() == [2, 5]

    square, disk = table.iloc[0], table.iloc[1]
    assert square["area"] == 16
    assert (square["centroid_y"], square["centroid_x"]) == (3.5, 4.5)
    assert (square["bbox_min_y"], square["bbox_min_x"], square["bbox_max_y"], square["bbox_max_x"]) == (2, 3, 6, 7)
    assert square["eccentricity"] == pytest.approx(0.0)
    assert square["solidity"] == pytest.approx(1.0)
    assert square["perimeter"] > 0

    # a digital disk of radius 3 has 29 pixels, is symmetric about its centre
    assert disk["area"] == 29
    assert (disk["centroid_y"], disk["centroid_x"]) == (13.0, 12.0)
    assert (disk["bbox_min_y"], disk["bbox_min_x"], disk["bbox_max_y"], disk["bbox_max_x"]) == (10, 9, 17, 16)
    assert disk["eccentricity"] == pytest.approx(0.0, abs=1e-6)


def test_integer_columns_are_integers(square_and_disk):
    table = measure(square_and_disk)
    for column in ("label", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x"):
        assert table[column].dtype == np.int64


def test_elongated_object_is_eccentric_and_concave_object_not_solid():
    labels = np.zeros((10, 12), dtype=np.uint8)
    labels[4, 1:11] = 1  # a 1x10 line
    labels[7:10, 0:3] = 2  # an L: 3x3 square minus a 2x2 corner
    labels[7:9, 1:3] = 0
    table = measure(labels).set_index("label")
    assert table.loc[1, "eccentricity"] > 0.99
    assert table.loc[2, "area"] == 5
    assert table.loc[2, "solidity"] < 1.0


def test_single_channel_intensity(square_and_disk):
    image = np.zeros((20, 20), dtype=np.uint16)
    image[2:6, 3:7] = np.arange(16, dtype=np.uint16).reshape(4, 4)  # 0..15 inside the square
    image[square_and_disk == 5] = 1000
    table = measure(square_and_disk, image)
    assert list(table.columns) == list(MORPHOLOGY_COLUMNS) + list(INTENSITY_STATISTICS)
    square, disk = table.iloc[0], table.iloc[1]
    assert square["total_intensity"] == sum(range(16)) == 120
    assert square["mean_intensity"] == 7.5
    assert (square["min_intensity"], square["max_intensity"]) == (0, 15)
    assert disk["total_intensity"] == 29 * 1000
    assert disk["mean_intensity"] == 1000


def test_total_intensity_has_no_uint16_overflow():
    labels = np.ones((300, 300), dtype=np.uint16)
    image = np.full((300, 300), 65535, dtype=np.uint16)
    assert measure(labels, image)["total_intensity"].item() == 65535 * 90000


def test_multichannel_intensity(square_and_disk):
    image = np.zeros((20, 20, 2), dtype=np.float32)
    image[..., 0] = 1.0
    image[..., 1][square_and_disk == 5] = 3.0
    table = measure(square_and_disk, image)
    expected = [f"{name}_c{c}" for c in (0, 1) for name in INTENSITY_STATISTICS]
    assert list(table.columns) == list(MORPHOLOGY_COLUMNS) + expected
    assert "mean_intensity" not in table.columns
    assert table["total_intensity_c0"].tolist() == [16.0, 29.0]
    assert table["total_intensity_c1"].tolist() == [0.0, 87.0]
    assert table["max_intensity_c1"].tolist() == [0.0, 3.0]


def test_single_channel_yxc_gets_suffix(square_and_disk):
    table = measure(square_and_disk, np.ones((20, 20, 1)))
    assert "mean_intensity_c0" in table.columns and "mean_intensity" not in table.columns


def test_spacing_scales_centroid_and_area_not_bbox(square_and_disk):
    table = measure(square_and_disk, spacing=0.5)
    square = table.iloc[0]
    assert square["area"] == 16 * 0.25
    assert (square["centroid_y"], square["centroid_x"]) == (1.75, 2.25)
    assert (square["bbox_min_y"], square["bbox_max_x"]) == (2, 7)
    plain = measure(square_and_disk)
    assert square["perimeter"] == pytest.approx(plain.iloc[0]["perimeter"] * 0.5)


def test_anisotropic_spacing_gives_nan_perimeter(square_and_disk):
    table = measure(square_and_disk, spacing=(2.0, 1.0))
    assert table["area"].tolist() == [32.0, 58.0]
    assert table["centroid_y"].tolist() == [7.0, 26.0]
    assert table["perimeter"].isna().all()


def test_empty_label_image_gives_empty_table_with_same_columns():
    labels = np.zeros((6, 6), dtype=np.uint16)
    for image, n_intensity in ((None, 0), (np.ones((6, 6)), 4), (np.ones((6, 6, 3)), 12)):
        table = measure(labels, image)
        assert len(table) == 0
        assert len(table.columns) == len(MORPHOLOGY_COLUMNS) + n_intensity
    assert list(measure(labels, np.ones((6, 6))).columns) == list(
        measure(np.ones((6, 6), dtype=np.uint16), np.ones((6, 6))).columns)


def test_labels_need_not_be_consecutive():
    labels = np.zeros((4, 4), dtype=np.int32)
    labels[0, 0] = 100
    labels[3, 3] = 7
    assert measure(labels)["label"].tolist() == [7, 100]


def test_huge_label_ids_are_measured_and_kept():
    # regionprops allocates per id up to the largest one: 2**40 ran out of memory before
    labels = np.zeros((8, 8), dtype=np.uint64)
    labels[0:2, 0:3] = 2**40
    labels[5:8, 5:8] = 9
    image = np.arange(64, dtype=float).reshape(8, 8)
    table = measure(labels, image)
    assert table["label"].tolist() == [9, 2**40] and table["area"].tolist() == [9.0, 6.0]
    assert table["total_intensity"].tolist() == [image[5:8, 5:8].sum(), image[0:2, 0:3].sum()]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((2, 3, 4, 5), dtype=np.uint16), "2D"),
        (np.zeros(5, dtype=np.uint16), "2D"),
        (np.zeros((0, 5), dtype=np.uint16), "empty"),
        (np.array([[0, 1.5], [2, 2]], dtype=np.float32), "fractional values .* intensity image"),
        (np.array([[0, np.nan], [2, 2]]), "NaN"),
        (np.zeros((3, 3), dtype=bool), "skimage.measure.label"),
        (np.array([[0, -1], [1, 1]]), "non-negative"),
    ],
)
def test_invalid_labels_raise(labels, match):
    with pytest.raises(InvalidImageError, match=match):
        measure(labels)


@pytest.mark.parametrize("shape", [(5, 4), (4, 4, 2), (5, 4, 2), (4, 5, 2, 1), (2, 4, 5)])
def test_image_shape_mismatch_names_both_shapes(shape):
    labels = np.zeros((4, 5), dtype=np.uint16)
    with pytest.raises(InvalidImageError, match=r"does not match labels shape \(4, 5\)"):
        measure(labels, np.zeros(shape))


def test_non_numeric_image_raises():
    with pytest.raises(InvalidImageError, match="real numbers"):
        measure(np.zeros((2, 2), dtype=np.uint8), np.full((2, 2), "a"))


@pytest.mark.parametrize("spacing", [0, -1.0, (1.0, 2.0, 3.0), ("a", 1), float("nan")])
def test_invalid_spacing_raises(spacing):
    with pytest.raises(InvalidParameterError, match="spacing"):
        measure(np.zeros((2, 2), dtype=np.uint8), spacing=spacing)


def test_errors_are_cytolens_errors():
    with pytest.raises(CytolensError):
        measure(np.zeros((2, 2, 2, 2), dtype=np.uint8))


# --------------------------------------------------------------------------- an intensity image given as labels


def _grid_of_squares(n_side: int = 12, side: int = 6) -> np.ndarray:
    """``n_side`` x ``n_side`` squares, each its own id: a label image with 144 objects."""
    labels = np.zeros((n_side * (side + 2), n_side * (side + 2)), np.uint16)
    for k in range(n_side * n_side):
        y, x = divmod(k, n_side)
        labels[y * (side + 2) + 1 : y * (side + 2) + 1 + side, x * (side + 2) + 1 : x * (side + 2) + 1 + side] = k + 1
    return labels


def test_float_labels_of_whole_numbers_are_measured_as_integers(square_and_disk):
    as_float = measure(square_and_disk.astype(np.float32))
    assert as_float.equals(measure(square_and_disk)) and as_float["label"].tolist() == [2, 5]


def test_an_intensity_image_given_as_labels_is_refused_unless_forced():
    from cytolens.data.synthetic import synthetic_nuclei

    image, truth = synthetic_nuclei(shape=(128, 128), n_nuclei=10, seed=3)
    intensity = np.round(image).astype(np.uint16)
    with pytest.raises(InvalidImageError, match=r"does not look like a label image: its \d+ ids lie in \d+ separate "
                                                r"pieces .*force=True \(CLI: --force\)"):
        measure(intensity)
    with pytest.raises(InvalidImageError, match="does not look like a label image"):  # the same as floats
        measure(intensity.astype(np.float64))
    forced = measure(intensity, force=True)
    assert len(forced) == len(np.unique(intensity[intensity > 0]))  # one row per grey value, as asked
    assert len(measure(truth, image)) == truth.max() == 10  # its true labels are fine


def test_a_mask_of_many_objects_is_refused_and_label_images_of_every_size_are_not():
    grid = _grid_of_squares()
    assert len(measure(grid)) == 144
    mask = (grid > 0).astype(np.uint8)  # one id for 144 separate objects
    with pytest.raises(InvalidImageError, match="144 separate pieces .*skimage.measure.label"):
        measure(mask)
    assert len(measure(mask, force=True)) == 1
    few = np.zeros((8, 8), np.uint8)
    few[::2, ::2] = 1  # 16 pieces of one id: too few to judge, measured as given
    assert len(measure(few)) == 1
    # an object split in two by a line of background (a cut, a crop) is still a label image
    grid[:, 5] = 0
    assert len(measure(grid)) == 144


def test_a_large_label_image_is_judged_on_a_window():
    noise = np.random.default_rng(0).integers(1, 200, (3000, 2500), dtype=np.uint16)
    with pytest.raises(InvalidImageError, match=f"in a {PIECES_WINDOW}x{PIECES_WINDOW} window"):
        measure(noise)


def test_a_movie_frame_given_as_labels_is_refused(shared_data):
    from cytolens.io import read_image

    frame = shared_data / "ctc_Fluo-N2DH-SIM+" / "01" / "t000.tif"
    if not frame.is_file():
        pytest.skip(f"{frame} not found")
    with pytest.raises(InvalidImageError, match="does not look like a label image"):
        measure(read_image(frame))  # the 233 "objects"
