"""U-Net shapes and receptive field; normalization, channel handling and tiled prediction."""

import numpy as np
import pytest
import torch

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.nn import UNet, fuse_batchnorm, receptive_field
from cytolens.preprocess import normalize_percentile, predict_tiled, rescale, resize_to, to_rgb


@pytest.mark.parametrize("depth, width, norm, dropout", [(1, 4, "batch", 0.0), (3, 8, "none", 0.2)])
def test_unet_keeps_spatial_size(depth, width, norm, dropout):
    net = UNet(in_channels=3, out_channels=5, depth=depth, base_channels=width, norm=norm, dropout=dropout).eval()
    size = 2**depth * 4
    assert net(torch.zeros(2, 3, size, size)).shape == (2, 5, size, size)
    assert net.style(torch.zeros(1, 3, size, size)).shape == (1, width * 2**depth)


def test_unet_rejects_bad_arguments():
    with pytest.raises(ValueError):
        UNet(norm="group")
    with pytest.raises(ValueError):
        UNet(depth=0)


def test_fused_batchnorm_network_computes_the_same_and_leaves_the_original_alone():
    torch.manual_seed(0)
    net = UNet(in_channels=3, out_channels=2, depth=2, base_channels=4)
    net(torch.rand(4, 3, 32, 32) * 3)  # a training-mode pass gives the batch-norms non-trivial statistics
    net.eval()
    keys = set(net.state_dict())
    fused = fuse_batchnorm(net)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fused(x), net(x), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert set(net.state_dict()) == keys  # the original keeps its batch-norms (parents' weights load by name)
    plain = UNet(depth=2, base_channels=4, norm="none").eval()
    assert fuse_batchnorm(plain) is plain  # nothing to fold
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(net.train())


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_bounds_the_measured_one(depth):
    """The gradient of one output pixel reaches exactly the pixels it can see."""
    net = UNet(1, 1, depth, 2, norm="none")
    for p in net.parameters():
        torch.nn.init.constant_(p, 0.01)
    x = torch.ones(1, 1, 256, 256, requires_grad=True)
    net(x)[0, 0, 128, 128].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1))
    measured = int(rows.max() - rows.min() + 1)
    assert measured <= receptive_field(depth) <= 1.2 * measured  # theoretical size is an upper bound


def test_normalize_percentile_maps_percentiles_to_0_and_1():
    x = np.linspace(0, 1000, 1001)
    y = normalize_percentile(x, 1, 99)
    assert y.dtype == np.float32
    assert y[10] == pytest.approx(0, abs=1e-6) and y[990] == pytest.approx(1, abs=1e-6)
    with pytest.raises(InvalidParameterError):
        normalize_percentile(x, 99, 1)


def test_to_rgb_handles_gray_single_channel_and_alpha():
    gray = np.arange(12).reshape(3, 4)
    assert to_rgb(gray).shape == (3, 4, 3) and np.all(to_rgb(gray)[..., 2] == gray)
    assert to_rgb(np.zeros((3, 4, 4))).shape == (3, 4, 3)
    with pytest.raises(InvalidImageError):
        to_rgb(np.zeros((3, 4, 5)))


def test_rescale_and_resize_back():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:15] = 3
    up = rescale(labels, 2.0, order=0)
    assert up.shape == (40, 40) and set(np.unique(up)) == {0, 3} and (up == 3).sum() == 400
    assert resize_to(up, (20, 20), order=0).shape == (20, 20)
    with pytest.raises(InvalidParameterError):
        rescale(labels, 0)


@pytest.mark.parametrize("shape, tile, overlap", [((1, 100, 130), 48, 16), ((2, 33, 17), 32, 8), ((1, 64, 64), 64, 0)])
def test_tiled_prediction_equals_direct_prediction_for_pointwise_functions(shape, tile, overlap):
    image = np.random.default_rng(1).random(shape).astype(np.float32)
    out = predict_tiled(lambda t: np.concatenate([t, -t]), image, 2 * shape[0], tile_size=tile, overlap=overlap)
    assert out.shape == (2 * shape[0],) + shape[1:]
    np.testing.assert_allclose(out, np.concatenate([image, -image]), atol=1e-5)


def test_tiled_prediction_sees_only_size_divisor_multiples_and_blends_seams():
    seen = []

    def record(tile):
        seen.append(tile.shape)
        return np.full((1,) + tile.shape[1:], float(len(seen)), np.float32)

    out = predict_tiled(record, np.zeros((1, 100, 100), np.float32), 1, tile_size=64, overlap=16, size_divisor=16)
    assert all(s[1] % 16 == 0 and s[2] % 16 == 0 for s in seen)
    assert len(seen) == 4
    assert out.min() >= 1 and out.max() <= 4  # a weighted average of the tiles' constants
    assert 1 < out[0, 50, 10] < 3  # inside the vertical overlap both tiles contribute


def test_tiles_shrink_to_the_smallest_side_that_needs_no_more_of_them():
    seen = []

    def record(tile):
        seen.append(tile.shape[1:])
        return tile[:1]

    # a 520 x 696 camera frame needed four 512 x 512 tiles (2.9x its pixels); four smaller ones cover it
    predict_tiled(record, np.zeros((1, 520, 696), np.float32), 1, tile_size=512, overlap=64)
    assert seen == [(304, 384)] * 4
    assert sum(y * x for y, x in seen) < 1.3 * 520 * 696


def test_tiled_prediction_rejects_bad_tiles():
    with pytest.raises(InvalidParameterError):
        predict_tiled(lambda t: t, np.zeros((1, 10, 10)), 1, tile_size=50, size_divisor=16)
    with pytest.raises(InvalidParameterError):
        predict_tiled(lambda t: t, np.zeros((1, 10, 10)), 1, tile_size=64, overlap=32)
