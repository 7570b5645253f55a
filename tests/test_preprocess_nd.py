"""Dimension-aware preprocessing (issue 25): 3D tiling, rescaling, channels and the shared normalizer.

2D results must stay bit-for-bit what they were (benchmark figures depend on them),
so the 2D tiling is compared with a frozen copy of the implementation it replaced.
"""

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import ndimage as ndi

from cytolens.errors import InvalidImageError, InvalidModelError, InvalidParameterError
from cytolens.preprocess import (
    PercentileNormalizer,
    _ramp,
    _tile_starts,
    fitted_tile,
    predict_tiled,
    rescale,
    resize_to,
    to_channels,
    to_rgb,
)

# ---- frozen reference: predict_tiled as it was before volumes (verbatim but for its name; do not edit) ----
# (_ramp, _tile_starts and fitted_tile it calls were left unchanged by the 3D work)


def legacy_predict_tiled(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    out_channels: int,
    tile_size: int = 512,
    overlap: int = 64,
    size_divisor: int = 16,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The 2D tiling of cytolens before issue 25 (its docstring left out)."""
    if tile_size % size_divisor or tile_size <= 2 * overlap:
        raise InvalidParameterError(
            f"tile_size ({tile_size}) must be a multiple of {size_divisor} and > 2*overlap ({overlap})"
        )
    channels_first = prepare is None
    height, width = image.shape[-2:] if channels_first else image.shape[:2]
    if prepare is None:
        def prepare(tile):
            return np.asarray(tile, dtype=np.float32)

    tile_y, tile_x = (fitted_tile(n, tile_size, overlap, size_divisor) for n in (height, width))
    output = np.zeros((out_channels, height, width), dtype=np.float32)
    weights = np.zeros((height, width), dtype=np.float32)
    for y0 in _tile_starts(height, tile_y, tile_y - overlap):
        for x0 in _tile_starts(width, tile_x, tile_x - overlap):
            y1, x1 = min(y0 + tile_y, height), min(x0 + tile_x, width)
            region = image[..., y0:y1, x0:x1] if channels_first else image[y0:y1, x0:x1]
            tile = prepare(region)
            pad_y, pad_x = tile_y - (y1 - y0), tile_x - (x1 - x0)
            if pad_y or pad_x:
                mode = "reflect" if min(tile.shape[1:]) > max(pad_y, pad_x) else "symmetric"
                tile = np.pad(tile, ((0, 0), (0, pad_y), (0, pad_x)), mode=mode)
            result = predict(tile)[:, : y1 - y0, : x1 - x0]
            # ramps only where a neighbouring tile overlaps, so image borders keep full weight
            wy = _ramp(tile_y, overlap)[: y1 - y0] if height > tile_y else np.ones(y1 - y0, np.float32)
            wx = _ramp(tile_x, overlap)[: x1 - x0] if width > tile_x else np.ones(x1 - x0, np.float32)
            window = np.outer(wy, wx)
            output[:, y0:y1, x0:x1] += result * window
            weights[y0:y1, x0:x1] += window
    output /= np.maximum(weights, 1e-8)
    return output


# ---- 2D: bit-identical to the reference ----

def _nonlinear(tile):
    """Depends on the whole tile (its mean), so every tile and every blend weight shows in the result."""
    return np.concatenate([np.tanh(3 * tile) + tile.mean(), tile**2 - tile[:1]])


def _prepare_yxc(tile):
    tile = (tile.astype(np.float32) - 3.0) * 0.25
    return np.moveaxis(tile, -1, 0) if tile.ndim == 3 else tile[None]


SHAPES_2D = [(1, 30, 20), (3, 100, 130), (2, 33, 17), (1, 64, 64), (1, 520, 696), (2, 129, 47), (1, 1, 5)]


@pytest.mark.parametrize("tile, overlap", [(48, 0), (48, 16), (64, 0), (64, 16), (512, 0), (512, 16), (512, 64)])
@pytest.mark.parametrize("with_prepare", [False, True])
def test_2d_tiling_is_bit_identical_to_the_implementation_it_replaced(tile, overlap, with_prepare):
    rng = np.random.default_rng(tile + overlap + with_prepare)
    for shape in SHAPES_2D:
        if with_prepare:  # (Y, X, C) and (Y, X) arrays, tiles prepared on the fly
            image = rng.integers(0, 255, shape[1:] + shape[:1], dtype=np.uint8)
            image = image[..., 0] if shape[0] == 1 else image
            kwargs = dict(prepare=_prepare_yxc)
        else:
            image = rng.random(shape).astype(np.float32)
            kwargs = {}
        out_channels = 2 * shape[0]
        expected = legacy_predict_tiled(_nonlinear, image, out_channels, tile, overlap, **kwargs)
        got = predict_tiled(_nonlinear, image, out_channels, tile, overlap, **kwargs)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), (shape, tile, overlap)
        # per-axis values that are all the same are the same thing
        got = predict_tiled(_nonlinear, image, out_channels, (tile, tile), (overlap, overlap), **kwargs)
        assert np.array_equal(got, expected), (shape, tile, overlap)


def test_2d_tiling_with_another_divisor_is_bit_identical():
    image = np.random.default_rng(3).random((1, 300, 170)).astype(np.float32)
    expected = legacy_predict_tiled(_nonlinear, image, 2, tile_size=128, overlap=32, size_divisor=32)
    assert np.array_equal(predict_tiled(_nonlinear, image, 2, tile_size=128, overlap=32, size_divisor=32), expected)


def test_2d_tiling_takes_a_tile_size_per_axis():
    seen = []

    def record(tile):
        seen.append(tile.shape[1:])
        return tile

    image = np.random.default_rng(4).random((1, 100, 200)).astype(np.float32)
    out = predict_tiled(record, image, 1, tile_size=(32, 128), overlap=(8, 16))
    assert set(seen) == {(32, 112)} and len(seen) == 4 * 2
    np.testing.assert_allclose(out, image, atol=1e-6)


# ---- 3D tiling ----

def test_3d_tiling_of_a_pointwise_function_equals_direct_prediction():
    vol = np.random.default_rng(5).random((1, 40, 70, 90)).astype(np.float32)
    out = predict_tiled(lambda t: t * 2, vol, 1, tile_size=32, overlap=8, spatial_ndim=3)
    assert out.shape == vol.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, vol * 2, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 20, 24, 2), (5, 7, 9), (3, 50, 17, 1)])
def test_3d_tiling_with_prepare_is_the_identity_for_the_identity(shape):
    vol = np.random.default_rng(6).integers(0, 200, shape, dtype=np.uint8)

    def prepare(tile):  # (z, y, x[, c]) -> (c, z, y, x)
        tile = tile.astype(np.float32)
        return np.moveaxis(tile, -1, 0) if tile.ndim == 4 else tile[None]

    out = predict_tiled(lambda t: t, vol, 1 if len(shape) == 3 else shape[3], tile_size=16, overlap=4,
                        prepare=prepare, spatial_ndim=3)
    expected = prepare(vol)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_3d_tiles_are_fitted_per_axis_and_seams_are_blended():
    seen = []

    def record(tile):
        seen.append(tile.shape[1:])
        return np.full((1,) + tile.shape[1:], float(len(seen)), np.float32)

    out = predict_tiled(record, np.zeros((1, 20, 100, 100), np.float32), 1, tile_size=(32, 64, 64),
                        overlap=(0, 16, 16), spatial_ndim=3)
    assert seen == [(32, 64, 64)] * 4  # Z fits in one tile; Y and X in two each
    assert seen[0] == tuple(fitted_tile(n, t, o, 16) for n, t, o in [(20, 32, 0), (100, 64, 16), (100, 64, 16)])
    assert out.min() >= 1 and out.max() <= 4
    assert 1 < out[0, 10, 50, 10] < 3  # both tiles of the Y overlap contribute
    assert out[0, 0, 0, 0] == 1 and out[0, -1, -1, -1] == 4  # borders keep their tile's value


def test_3d_blend_weights_are_the_product_of_the_axis_ramps():
    tile, overlap, size = 32, 8, (40, 40, 20)
    values = iter(range(1, 100))

    def constant(t):  # tile k predicts k everywhere
        return np.full((1,) + t.shape[1:], float(next(values)), np.float32)

    out = predict_tiled(constant, np.zeros((1, *size), np.float32), 1, tile, overlap, spatial_ndim=3)
    total, weight = np.zeros(size), np.zeros(size)
    starts = [_tile_starts(n, tile, tile - overlap) for n in size]
    assert starts == [[0, 8], [0, 8], [0]]
    for k, (z, y) in enumerate([(z, y) for z in starts[0] for y in starts[1]], start=1):
        w = _ramp(tile, overlap)[:, None, None] * _ramp(tile, overlap)[None, :, None] * np.ones(20)
        weight[z:z + tile, y:y + tile] += w
        total[z:z + tile, y:y + tile] += k * w
    np.testing.assert_allclose(out[0], total / weight, rtol=1e-5)


def test_tiling_rejects_bad_tiles_and_dimensions():
    vol = np.zeros((1, 10, 10, 10), np.float32)
    with pytest.raises(InvalidParameterError):
        predict_tiled(lambda t: t, vol, 1, tile_size=(32, 32), overlap=8, spatial_ndim=3)
    with pytest.raises(InvalidParameterError):
        predict_tiled(lambda t: t, vol, 1, tile_size=(32, 48, 40), overlap=8, spatial_ndim=3)
    with pytest.raises(InvalidParameterError):
        predict_tiled(lambda t: t, vol, 1, tile_size=32, overlap=(8, 8, 16), spatial_ndim=3)
    with pytest.raises(InvalidParameterError):
        predict_tiled(lambda t: t, vol, 1, tile_size=32, overlap=8, spatial_ndim=4)
    with pytest.raises(InvalidImageError):
        predict_tiled(lambda t: t, np.zeros((10, 10)), 1, tile_size=32, overlap=8, spatial_ndim=3)


# ---- rescaling ----

@pytest.mark.parametrize("shape", [(20, 30), (21, 17, 3)])
@pytest.mark.parametrize("scale, order", [(2.0, 0), (0.37, 1), (1.5, 1), (1.0 + 1e-8, 1)])
def test_2d_rescale_is_unchanged(shape, scale, order):
    image = np.random.default_rng(7).random(shape).astype(np.float32)
    got = rescale(image, scale, order)
    if abs(scale - 1) < 1e-6:
        assert got is image
        return
    zoom = (scale, scale) + (1,) * (image.ndim - 2)
    expected = ndi.zoom(image, zoom, order=order, mode="reflect" if order else "nearest", grid_mode=True)
    assert np.array_equal(got, expected)
    assert np.array_equal(rescale(image, (scale, scale), order), expected)


def test_rescale_volumes_per_axis():
    vol = np.random.default_rng(8).random((10, 20, 30, 2)).astype(np.float32)
    assert rescale(vol, 0.5, spatial_ndim=3).shape == (5, 10, 15, 2)
    assert rescale(vol, (2, 1, 0.5), spatial_ndim=3).shape == (20, 20, 15, 2)
    assert rescale(vol, (1, 1, 1), spatial_ndim=3) is vol
    labels = np.zeros((8, 8, 8), np.int32)
    labels[2:6, 2:6, 2:6] = 5
    up = rescale(labels, 2, order=0, spatial_ndim=3)
    assert set(np.unique(up)) == {0, 5} and (up == 5).sum() == 8**3
    for bad in [(1, 2), (1, 0, 1), (1, float("nan"), 1), 0]:
        with pytest.raises(InvalidParameterError):
            rescale(vol, bad, spatial_ndim=3)


@pytest.mark.parametrize("shape, target", [((3, 20, 30), (41, 15)), ((20, 30), (7, 30)), ((2, 9, 9), (9, 9))])
def test_2d_resize_to_is_unchanged(shape, target):
    image = np.random.default_rng(9).random(shape).astype(np.float32)
    spatial = image.shape[-2:]
    if spatial == target:
        assert resize_to(image, target) is image
        return
    zoom = (1,) * (image.ndim - 2) + (target[0] / spatial[0], target[1] / spatial[1])
    expected = ndi.zoom(image, zoom, order=1, mode="nearest", grid_mode=True)[..., : target[0], : target[1]]
    assert np.array_equal(resize_to(image, target), expected)


def test_resize_to_resizes_the_trailing_axes_of_volumes():
    out = np.random.default_rng(10).random((4, 6, 20, 30)).astype(np.float32)
    back = resize_to(out, (12, 40, 15))
    assert back.shape == (4, 12, 40, 15)
    assert resize_to(back, (6, 20, 30)).shape == out.shape
    assert resize_to(np.zeros((6, 20, 30)), (3, 10, 10), order=0).shape == (3, 10, 10)


# ---- channels ----

def _legacy_to_rgb(image):
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        if image.shape[2] == 1:
            return np.repeat(image, 3, axis=2)
        return image[..., :3]
    raise InvalidImageError("unsupported")


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 1), (5, 6, 3), (5, 6, 4)])
def test_to_rgb_is_unchanged(shape):
    image = np.random.default_rng(11).integers(0, 9, shape)
    got, expected = to_rgb(image), _legacy_to_rgb(image)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("shape", [(5, 6, 2), (5, 6, 5), (5,), (2, 5, 6, 3)])
def test_to_rgb_rejects_what_it_rejected(shape):
    with pytest.raises(InvalidImageError, match=r"expected a 2D image \(Y, X\) or \(Y, X, C\) with C in 1, 3, 4"):
        to_rgb(np.zeros(shape))


def test_to_channels():
    gray = np.arange(24).reshape(2, 3, 4)
    assert to_channels(gray, 2, spatial_ndim=3).shape == (2, 3, 4, 2)
    assert np.array_equal(to_channels(gray, 2, spatial_ndim=3)[..., 1], gray)
    assert to_channels(gray, 3).shape == (2, 3, 3)  # 2D: the last axis is channels
    assert to_channels(gray[..., None], 3, spatial_ndim=3).shape == (2, 3, 4, 3)
    two = np.zeros((4, 5, 2))
    assert to_channels(two, 2) is not None and np.shares_memory(to_channels(two, 2), two)
    assert to_channels(np.zeros((2, 4, 5, 4)), 3, spatial_ndim=3).shape == (2, 4, 5, 3)
    assert to_channels(np.zeros((4, 5, 4)), 4).shape == (4, 5, 4)
    with pytest.raises(InvalidImageError, match=r"3D image \(Z, Y, X\) or \(Z, Y, X, C\) with C in 1, 2"):
        to_channels(np.zeros((2, 4, 5, 3)), 2, spatial_ndim=3)
    with pytest.raises(InvalidImageError):
        to_channels(np.zeros((4, 5, 4)), 2)  # alpha is dropped only to make RGB
    with pytest.raises(InvalidImageError):
        to_channels(np.zeros(5), 3)
    for bad in (0, 2.0, True):
        with pytest.raises(InvalidParameterError):
            to_channels(two, bad)
    with pytest.raises(InvalidParameterError):
        to_channels(two, 2, spatial_ndim=1)


# ---- normalization: exactly what inference computes ----

def _inference_reference(image, low, high):
    """Inference's _sample, _percentiles and _TilePreparer arithmetic, spelled out (2D)."""
    step = max(1, int(math.sqrt(image.shape[0] * image.shape[1] / 4e6)))
    sample = image[::step, ::step].astype(np.float32)
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    lo, hi = float(lo), float(hi)
    return (lo, hi), (image.astype(np.float32) - lo) * (1.0 / max(hi - lo, 1e-6))


@pytest.mark.parametrize("shape, dtype", [((300, 200), np.uint16), ((64, 80, 3), np.uint8), ((4100, 4000), np.uint8),
                                          ((50, 60), np.float64), ((2100, 2000, 3), np.uint8)])
@pytest.mark.parametrize("low, high", [(1.0, 99.8), (0, 100), (3, 97.5)])
def test_2d_normalizer_matches_inference_bit_for_bit(shape, dtype, low, high):
    rng = np.random.default_rng(12)
    image = (rng.gamma(2.0, 300, shape) if dtype == np.float64 else rng.integers(0, 1000, shape)).astype(dtype)
    norm = PercentileNormalizer(low, high)
    (lo, hi), expected = _inference_reference(image, low, high)
    assert norm.statistics(image) == (lo, hi) and all(type(v) is float for v in norm.statistics(image))
    got = norm(image)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    tile = image[10:40, 5:50]
    assert np.array_equal(norm.apply(tile, lo, hi), expected[10:40, 5:50])


def test_normalizer_falls_back_to_min_and_max():
    image = np.zeros((20, 30), np.uint8)
    image[3, 4] = 200
    assert PercentileNormalizer().statistics(image) == (0.0, 200.0)
    vol = np.full((4, 20, 30), 7, np.uint8)
    assert PercentileNormalizer().statistics(vol, spatial_ndim=3) == (7.0, 7.0)
    assert np.all(PercentileNormalizer()(vol, spatial_ndim=3) == 0)  # constant: no division by zero


def test_3d_normalizer_strides_every_spatial_axis():
    rng = np.random.default_rng(13)
    small = rng.integers(0, 1000, (10, 40, 50, 2)).astype(np.uint16)
    norm = PercentileNormalizer()
    lo, hi = np.percentile(small.astype(np.float32), [1.0, 99.8])
    assert norm.statistics(small, spatial_ndim=3) == (float(lo), float(hi))
    big = rng.integers(0, 60000, (100, 400, 400)).astype(np.uint16)  # 16 M voxels: round(4 ** (1/3)) = 2
    lo, hi = np.percentile(big[::2, ::2, ::2].astype(np.float32), [1.0, 99.8])
    assert norm.statistics(big, spatial_ndim=3) == (float(lo), float(hi))
    out = norm(big[:5], spatial_ndim=3)
    assert out.dtype == np.float32 and out.shape == (5, 400, 400)


def test_normalizer_validates_and_round_trips_its_metadata():
    assert PercentileNormalizer() == PercentileNormalizer(1.0, 99.8)
    for low, high in [(-1, 50), (50, 50), (60, 40), (1, 101), (float("nan"), 99), ("1", 99), (True, 99)]:
        with pytest.raises(InvalidParameterError):
            PercentileNormalizer(low, high)
    norm = PercentileNormalizer(2, 98)
    assert norm.to_meta() == {"method": "percentile", "low": 2.0, "high": 98.0}
    assert PercentileNormalizer.from_meta(norm.to_meta()) == norm
    assert PercentileNormalizer.from_meta(None) == PercentileNormalizer()
    assert PercentileNormalizer.from_meta({}) == PercentileNormalizer()
    assert PercentileNormalizer.from_meta({"low": 0.5}) == PercentileNormalizer(0.5, 99.8)
    with pytest.raises(InvalidModelError, match="unknown normalization method 'zscore'"):
        PercentileNormalizer.from_meta({"method": "zscore"})
    for bad in [{"low": 99, "high": 1}, {"low": None}, "percentile"]:
        with pytest.raises(InvalidModelError):
            PercentileNormalizer.from_meta(bad)
    with pytest.raises(AttributeError):
        norm.low = 5  # frozen
    with pytest.raises(InvalidParameterError):
        norm.statistics(np.zeros((4, 4)), spatial_ndim=1)
    with pytest.raises(InvalidImageError):
        norm.statistics(np.zeros((4, 4)), spatial_ndim=3)
