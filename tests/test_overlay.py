"""cytolens.overlay: what the overlay pictures show, for each kind of image."""

import numpy as np
import pytest

from cytolens.errors import CytolensError
from cytolens.overlay import display_rgb, outline_overlay, write_overlay


def square_labels(shape=(30, 30)):
    labels = np.zeros(shape, np.uint16)
    labels[5:15, 5:15] = 1
    labels[15:25, 15:25] = 2
    return labels


def test_colour_images_keep_their_colours_and_alpha_is_dropped():
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere
    rgba[10:20, 10:20, 2] = 200  # a purple patch
    rgba[..., 3] = 255
    shown = display_rgb(rgba)
    assert shown.shape == (30, 30, 3)
    assert shown[0, 0, 0] == 255 and shown[0, 0, 2] == 0  # red stays red
    assert shown[15, 15, 0] == 255 and shown[15, 15, 2] == 255  # purple stays purple


def test_gray_and_multichannel_images():
    gray = np.arange(900, dtype=np.float32).reshape(30, 30)
    shown = display_rgb(gray)
    assert (shown[..., 0] == shown[..., 2]).all() and shown.min() == 0 and shown.max() == 255
    two = np.stack([gray, np.zeros_like(gray)], axis=-1)
    assert np.array_equal(display_rgb(two, channel=0), shown)  # the channel asked for
    assert np.array_equal(display_rgb(two), display_rgb(gray / 2))  # else the channels' mean
    with pytest.raises(CytolensError, match="channel 2 does not exist"):
        display_rgb(two, channel=2)


def test_constant_and_nan_images_still_give_a_picture():
    assert not display_rgb(np.full((8, 8), 7.0)).any()
    image = np.ones((8, 8)); image[2, 2] = np.nan
    assert display_rgb(image).dtype == np.uint8


def test_outlines_have_one_colour_per_object_and_labels_must_fit():
    labels = square_labels()
    picture = outline_overlay(np.zeros((30, 30)), labels)
    assert not picture[10, 10].any() and not picture[0, 0].any()  # inside and outside stay as the image
    first, second = picture[5, 5:15], picture[15, 15:25]
    assert (first == first[0]).all() and (second == second[0]).all() and (first[0] != second[0]).any()
    with pytest.raises(CytolensError, match="do not fit"):
        outline_overlay(np.zeros((20, 30)), labels)
    with pytest.raises(CytolensError, match="2D image"):
        outline_overlay(np.zeros((2, 30, 30, 3)), labels)


def test_write_overlay_never_replaces_a_file_unasked(tmp_path):
    from cytolens.io import read_image

    path = write_overlay(tmp_path / "o.png", np.zeros((30, 30)), square_labels())
    assert read_image(path).shape == (30, 30, 3)
    path.write_bytes(b"keep me")
    with pytest.raises(CytolensError, match="exists"):
        write_overlay(path, np.zeros((30, 30)), square_labels())
    assert path.read_bytes() == b"keep me"
    write_overlay(path, np.zeros((30, 30)), square_labels(), overwrite=True)
    assert read_image(path).shape == (30, 30, 3)
