"""Tests for cytolens.io.images: round trips, formats, safe writing and clear errors."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from cytolens.errors import ImageReadError, InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.io import atomic_write, label_dtype, list_images, read_image, write_image, write_labels, write_table


def _ramp(shape, dtype) -> np.ndarray:
    """Distinct, in-range values for any dtype: 0, 1, 2, ... modulo 251."""
    return (np.arange(np.prod(shape)).reshape(shape) % 251).astype(dtype)


def _smooth_rgb(shape=(32, 48)) -> np.ndarray:
    """A smooth colour image that survives JPEG compression nearly unchanged."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.stack([yy * 4, xx * 4, (yy + xx) * 2], axis=-1).astype(np.uint8)


# --- TIFF --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_round_trip_keeps_values_and_dtype(tmp_path, dtype):
    image = _ramp((7, 9), dtype) * dtype(3)
    path = write_image(tmp_path / "image.tif", image)
    back = read_image(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("compression", ["lzw", "zlib"])
def test_compressed_tiff_written_by_tifffile(tmp_path, compression):
    image = np.tile(_ramp((1, 64), np.uint16), (64, 1))  # repetitive, so it compresses
    path = tmp_path / "compressed.tiff"
    tifffile.imwrite(path, image, compression=compression)
    expected = {"lzw": tifffile.COMPRESSION.LZW, "zlib": tifffile.COMPRESSION.ADOBE_DEFLATE}[compression]
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == expected
    np.testing.assert_array_equal(read_image(path), image)


def test_write_image_compression_argument(tmp_path):
    path = write_image(tmp_path / "lzw.tif", _ramp((16, 16), np.uint8), compression="lzw")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW


def test_ome_tiff_cyx_comes_back_channels_last(tmp_path):
    image = np.stack([np.full((5, 6), 10, np.uint16), np.full((5, 6), 20, np.uint16), _ramp((5, 6), np.uint16)])
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, image, ome=True, metadata={"axes": "CYX"})
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    back = read_image(path)
    assert back.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(back[..., c], image[c])


def test_ome_tiff_singleton_axes_are_squeezed(tmp_path):
    image = _ramp((1, 1, 2, 5, 6), np.uint16)
    path = tmp_path / "tzcyx.ome.tif"
    tifffile.imwrite(path, image, ome=True, metadata={"axes": "TZCYX"})
    back = read_image(path)
    assert back.shape == (5, 6, 2)
    np.testing.assert_array_equal(back[..., 1], image[0, 0, 1])


def test_rgb_tiff_and_rgba_tiff_with_constant_alpha(tmp_path):
    rgb = _smooth_rgb()
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.tif"), rgb)


@pytest.mark.parametrize("shape", [(5, 6, 2), (5, 6, 3), (5, 6, 4)])
def test_channels_last_round_trip(tmp_path, shape):
    image = _ramp(shape, np.uint16)
    image[..., -1] = 7  # a constant last channel is data, not alpha
    back = read_image(write_image(tmp_path / "channels.tif", image))
    np.testing.assert_array_equal(back, image)


def test_channels_are_stored_as_planes_for_other_readers(tmp_path):
    path = write_image(tmp_path / "two.tif", _ramp((5, 6, 2), np.float32))
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 2
        assert tif.pages[0].shape == (5, 6)


def test_stack_with_four_pixel_width_is_not_taken_for_rgba(tmp_path):
    # regression: a (Z, Y, X=4) stack of zeros used to come back as (Z, Y, 3)
    stack = np.zeros((3, 5, 4), dtype=np.uint8)
    back = read_image(write_image(tmp_path / "stack.tif", stack, axes="ZYX"))
    assert back.shape == (3, 5, 4)


def test_stack_with_channels_round_trip(tmp_path):
    movie = _ramp((3, 5, 6, 2), np.uint16)
    path = write_image(tmp_path / "movie.tif", movie, axes="TYXC")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TCYX"
    np.testing.assert_array_equal(read_image(path), movie)


def test_stack_without_axes_round_trip(tmp_path):
    stack = _ramp((7, 5, 6), np.uint16)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "stack.tif", stack)), stack)


@pytest.mark.parametrize("axes", ["YX", "XYZ", "ZZX", "ZYXW"])
def test_axes_that_do_not_fit_raise(tmp_path, axes):
    with pytest.raises(InvalidParameterError, match="axes"):
        write_image(tmp_path / "x.tif", np.zeros((2, 3, 4), np.uint8), axes=axes)


# --- PNG / JPEG --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image", [_ramp((6, 7), np.uint8), _ramp((6, 7), np.uint16) * np.uint16(200), _smooth_rgb()],
    ids=["gray8", "gray16", "rgb"])
def test_png_round_trip_is_exact(tmp_path, image):
    back = read_image(write_image(tmp_path / "image.png", image))
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("image", [_smooth_rgb()[..., 0], _smooth_rgb()], ids=["gray", "rgb"])
def test_jpeg_round_trip_is_close(tmp_path, image):
    back = read_image(write_image(tmp_path / "image.jpg", image))
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image).mean() < 3  # lossy, but only a little


def test_rgba_png_constant_alpha_is_dropped_varying_alpha_kept(tmp_path):
    rgb = _smooth_rgb()
    opaque = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    iio.imwrite(tmp_path / "opaque.png", opaque)
    np.testing.assert_array_equal(read_image(tmp_path / "opaque.png"), rgb)

    varying = opaque.copy()
    varying[0, 0, 3] = 0
    iio.imwrite(tmp_path / "varying.png", varying)
    np.testing.assert_array_equal(read_image(tmp_path / "varying.png"), varying)


def test_gray_alpha_png_with_constant_alpha_becomes_gray(tmp_path):
    gray = _ramp((6, 7), np.uint8)
    iio.imwrite(tmp_path / "la.png", np.stack([gray, np.full_like(gray, 255)], axis=-1))
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), gray)


@pytest.mark.parametrize(
    ("name", "image"),
    [("float.png", np.zeros((4, 4), np.float32)), ("rgb16.png", np.zeros((4, 4, 3), np.uint16)),
     ("rgba.jpg", np.zeros((4, 4, 4), np.uint8)), ("stack.png", np.zeros((2, 4, 4, 3), np.uint8))])
def test_images_the_format_cannot_hold_raise_and_write_nothing(tmp_path, name, image):
    with pytest.raises(InvalidImageError, match=r"write a \.tif"):
        write_image(tmp_path / name, image)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_output_suffix_raises(tmp_path):
    with pytest.raises(InvalidParameterError, match="use one of"):
        write_image(tmp_path / "image.xyz", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_empty_image_raises(tmp_path):
    with pytest.raises(InvalidImageError, match="shape"):
        write_image(tmp_path / "empty.tif", np.zeros((0, 4), np.uint8))


@pytest.mark.parametrize("name", ["empty.png", "empty.tif", "empty.jpg"])
def test_zero_byte_file_is_named_empty(tmp_path, name):
    (tmp_path / name).touch()
    with pytest.raises(ImageReadError, match=r"empty file \(0 bytes\)"):
        read_image(tmp_path / name)


# --- labels ------------------------------------------------------------------------------


def test_write_labels_uses_uint16_when_it_fits(tmp_path):
    labels = np.array([[0, 1], [5, 65535]], dtype=np.int64)
    back = read_image(write_labels(tmp_path / "labels.tif", labels))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)


def test_write_labels_uses_uint32_above_65535(tmp_path):
    labels = np.array([[0, 1], [2, 70000]], dtype=np.int64)
    assert label_dtype(labels) == np.uint32
    back = read_image(write_labels(tmp_path / "labels.tif", labels))
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)


def test_write_labels_refuses_ids_beyond_uint32_and_writes_nothing(tmp_path):
    labels = np.array([[0, 2**40]], dtype=np.int64)
    with pytest.raises(InvalidImageError, match=r"label ids reach 1099511627776, more than uint32 holds"):
        write_labels(tmp_path / "labels.tif", labels)
    assert not list(tmp_path.iterdir())


def test_write_labels_stack_with_four_pixel_width(tmp_path):
    labels = np.zeros((3, 5, 4), dtype=np.uint16)
    labels[1, 2, 3] = 9
    np.testing.assert_array_equal(read_image(write_labels(tmp_path / "movie.tif", labels)), labels)


@pytest.mark.parametrize(
    "labels", [np.array([[0, -1]]), np.array([[0.0, 1.0]]), np.array([[False, True]])], ids=["negative", "float",
                                                                                             "bool"])
def test_write_labels_rejects_non_labels(tmp_path, labels):
    with pytest.raises(InvalidImageError, match="non-negative integers"):
        write_labels(tmp_path / "labels.tif", labels)


# --- safe writing ------------------------------------------------------------------------


def test_existing_file_is_not_overwritten_unless_asked(tmp_path):
    path = write_image(tmp_path / "image.tif", np.zeros((4, 4), np.uint8))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_image(path, np.ones((4, 4), np.uint8))
    assert path.read_bytes() == before
    write_image(path, np.ones((4, 4), np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(path), np.ones((4, 4), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["image.tif"]


def test_failed_write_leaves_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "result.txt"
    path.write_text("old")

    def failing_writer(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, failing_writer, overwrite=True)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_failed_image_write_leaves_no_file(tmp_path):
    with pytest.raises(Exception):  # tifffile's own error for an unknown codec
        write_image(tmp_path / "image.tif", np.zeros((4, 4), np.uint8), compression="no-such-codec")
    assert list(tmp_path.iterdir()) == []


def test_writing_onto_a_folder_raises(tmp_path):
    (tmp_path / "out.tif").mkdir()
    with pytest.raises(OutputExistsError, match="folder"):
        write_image(tmp_path / "out.tif", np.zeros((4, 4), np.uint8), overwrite=True)


def test_written_files_get_normal_permissions(tmp_path):
    # regression: files used to keep the 0600 mode of their temporary file
    reference = tmp_path / "reference.txt"
    reference.write_text("x")
    path = write_image(tmp_path / "image.tif", np.zeros((4, 4), np.uint8))
    assert path.stat().st_mode == reference.stat().st_mode


def test_missing_parent_folders_are_created(tmp_path):
    path = write_image(tmp_path / "a" / "b" / "image.png", np.zeros((4, 4), np.uint8))
    assert path.is_file()


# --- read errors -------------------------------------------------------------------------


def test_missing_file_raises(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nothing.tif")


def test_folder_raises(tmp_path):
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("name", ["notes.tif", "notes.png", "notes.jpg"])
def test_garbage_bytes_raise(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"these are my notes, not an image\n" * 10)
    with pytest.raises(ImageReadError, match=f"cannot read .*{name}.*valid"):
        read_image(path)


def test_unsupported_suffix_raises(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ImageReadError, match=r"unsupported file type \.txt; use one of \.tif"):
        read_image(path)


# --- tables ------------------------------------------------------------------------------


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"label": [1, 2, 3], "area": [10.0, 12.5, 3.25], "name": ["a", "b", "c"]})


def test_write_table_csv_round_trip(tmp_path, table):
    path = write_table(tmp_path / "cells.csv", table)
    pd.testing.assert_frame_equal(pd.read_csv(path), table)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_write_table_parquet_round_trip(tmp_path, table, suffix):
    path = write_table(tmp_path / f"cells{suffix}", table)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table)


def test_write_table_refuses_overwrite(tmp_path, table):
    path = write_table(tmp_path / "cells.csv", table)
    with pytest.raises(OutputExistsError):
        write_table(path, table.head(1))
    assert len(pd.read_csv(path)) == 3
    write_table(path, table.head(1), overwrite=True)
    assert len(pd.read_csv(path)) == 1


def test_write_table_bad_suffix_or_type_raises(tmp_path, table):
    with pytest.raises(InvalidParameterError, match=r"\.csv"):
        write_table(tmp_path / "cells.xlsx", table)
    with pytest.raises(InvalidParameterError, match="DataFrame"):
        write_table(tmp_path / "cells.csv", {"label": [1]})
    assert list(tmp_path.iterdir()) == []


# --- folders -----------------------------------------------------------------------------


def test_list_images_sorted_skips_hidden_and_other_files(tmp_path):
    for name in ["b.tif", "a.PNG", ".hidden.tif", "notes.txt", "c.jpeg"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.tif", "c.jpeg"]


def test_list_images_missing_folder_raises(tmp_path):
    with pytest.raises(ImageReadError, match="folder not found"):
        list_images(tmp_path / "nowhere")
