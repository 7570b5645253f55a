"""A U-Net (Ronneberger et al. 2015) for 2D images or 3D volumes, with configurable depth, width and regularization.

The network reads like the paper's figure: an encoder of ``depth`` levels, each two
3×3 convolutions then a 2×2 max-pool; a bottleneck; a decoder that upsamples,
concatenates the skip connection and applies two 3×3 convolutions; a 1×1 head.
Padding keeps the output the same size as the input when the input size is a
multiple of ``2 ** depth``. ``dims=3`` builds the same network from 3D layers
(Çiçek et al. 2016) for ``(N, C, Z, Y, X)`` volumes.

Example
-------
>>> import torch
>>> net = UNet(in_channels=3, out_channels=2, depth=3, base_channels=8)
>>> net(torch.zeros(1, 3, 64, 64)).shape
torch.Size([1, 2, 64, 64])
>>> UNet(in_channels=1, out_channels=1, depth=2, base_channels=4, dims=3)(torch.zeros(1, 1, 8, 16, 16)).shape
torch.Size([1, 1, 8, 16, 16])
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from cytolens.errors import InvalidParameterError


@dataclass(frozen=True)
class NetworkConfig:
    """Arguments of a :class:`UNet` (or a :class:`~cytolens.nn.classifier.Classifier`), stored in ``model.json``."""

    in_channels: int = 3
    out_channels: int = 2
    depth: int = 4
    base_channels: int = 16
    norm: str = "batch"  # "batch" or "none"
    dropout: float = 0.0
    dims: int = 2  # 2: images (N, C, Y, X); 3: volumes (N, C, Z, Y, X)
    pool: str = "max"  # "max", or "blur": max-blur-pool (N2V2, Höck et al. 2022), no checkerboard artefacts
    top_skip: bool = True  # False: the top level's skip connection is left out (N2V2)
    residual: bool = False  # True: the output is the input plus the network's correction (CARE's default)

    def to_dict(self) -> dict:
        """The arguments as ``model.json`` stores them; ``pool``, ``top_skip`` and ``residual`` only when not their
        defaults (packages written before they existed, and classifiers, which lack them, read the same)."""
        args = asdict(self)
        for name, default in (("pool", "max"), ("top_skip", True), ("residual", False)):
            if args[name] == default:
                del args[name]
        return args


UNetConfig = NetworkConfig


#: the layer classes of a network of 2 or 3 spatial dimensions
LAYERS = {2: {"conv": nn.Conv2d, "norm": nn.BatchNorm2d, "dropout": nn.Dropout2d, "pool": nn.MaxPool2d,
              "up": nn.ConvTranspose2d},
          3: {"conv": nn.Conv3d, "norm": nn.BatchNorm3d, "dropout": nn.Dropout3d, "pool": nn.MaxPool3d,
              "up": nn.ConvTranspose3d}}


def layers_for(dims: int) -> dict:
    """The convolution, batch-norm, dropout, pooling and up-convolution classes for ``dims`` spatial axes."""
    if dims not in LAYERS:
        raise InvalidParameterError(f"dims must be 2 (images) or 3 (volumes), got {dims!r}")
    return LAYERS[dims]


def check_classifier_args(in_channels: int, out_channels: int, depth: int, base_channels: int, norm: str) -> None:
    """The argument checks every image classifier network shares (one message per mistake).

    >>> check_classifier_args(1, 1, 4, 16, "batch")
    Traceback (most recent call last):
    ...
    cytolens.errors.InvalidParameterError: depth, base_channels and in_channels must be positive, and there must \
be at least 2 classes
    """
    if norm not in ("batch", "none"):
        raise InvalidParameterError(f"norm must be 'batch' or 'none', got {norm!r}")
    if depth < 1 or base_channels < 1 or in_channels < 1 or out_channels < 2:
        raise InvalidParameterError("depth, base_channels and in_channels must be positive, and there must be at "
                                    "least 2 classes")


class BlurPool(nn.Module):
    """Max-blur-pool (Zhang 2019; N2V2, Höck et al. 2022): a 2x2 max at stride 1, then a [1, 2, 1] blur at stride 2.

    Halves each spatial side like a 2x2 max-pool, without the aliasing that gives
    Noise2Void its checkerboard artefacts.

    >>> BlurPool(2)(torch.rand(1, 3, 8, 6)).shape
    torch.Size([1, 3, 4, 3])
    """

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.dims = dims
        line = torch.tensor([1.0, 2.0, 1.0])
        kernel = line
        for _ in range(dims - 1):
            kernel = kernel[..., None] * line
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        conv = F.conv2d if self.dims == 2 else F.conv3d
        x = pool(F.pad(x, (0, 1) * self.dims, mode="replicate"), 2, stride=1)
        x = F.pad(x, (1, 1) * self.dims, mode="replicate")
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(channels, 1, *self.kernel.shape[2:])
        return conv(x, kernel, stride=2, groups=channels)


def conv_block(in_ch: int, out_ch: int, norm: str, dropout: float, dims: int = 2) -> nn.Sequential:
    """Two 3×3 (3×3×3) convolutions, each with optional batch-norm and a ReLU, then optional dropout."""
    layer = layers_for(dims)
    layers: list[nn.Module] = []
    for i in range(2):
        layers.append(layer["conv"](in_ch if i == 0 else out_ch, out_ch, 3, padding=1, bias=norm != "batch"))
        if norm == "batch":
            layers.append(layer["norm"](out_ch))
        layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(layer["dropout"](dropout))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net mapping ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input image and of the raw output (logits/regressions).
    depth : int
        Number of pooling steps; the input size must be divisible by ``2 ** depth``.
    base_channels : int
        Feature maps at the first level; doubled at every level down.
    norm : {"batch", "none"}
        Batch normalization after each convolution, or none.
    dropout : float
        Spatial dropout after each block (0 disables it).
    dims : {2, 3}
        Spatial axes: 2 for images, 3 for volumes.
    pool : {"max", "blur"}
        Downsampling: 2x2 max-pool, or max-blur-pool (:class:`BlurPool`, N2V2).
    top_skip : bool
        Keep the skip connection of the top level (N2V2 leaves it out, so a
        self-supervised denoiser cannot copy its input's noise through it).
    residual : bool
        Add the input to the output (input and output channels must match): the network
        learns only the correction, as CARE's restoration U-Net does. Its head starts at
        zero, so an untrained residual network returns its input.

    >>> net = UNet(1, 1, depth=1, base_channels=2, residual=True)
    >>> x = torch.rand(1, 1, 4, 4); bool(torch.equal(net(x), x))
    True
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 2,
        depth: int = 4,
        base_channels: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
        dims: int = 2,
        pool: str = "max",
        top_skip: bool = True,
        residual: bool = False,
    ) -> None:
        super().__init__()
        layer = layers_for(dims)
        if norm not in ("batch", "none"):
            raise InvalidParameterError(f"norm must be 'batch' or 'none', got {norm!r}")
        if pool not in ("max", "blur"):
            raise InvalidParameterError(f"pool must be 'max' or 'blur', got {pool!r}")
        if depth < 1 or base_channels < 1:
            raise InvalidParameterError("depth and base_channels must be positive")
        if residual and in_channels != out_channels:
            raise InvalidParameterError(f"a residual U-Net adds its input to its output, so it needs as many input as "
                                        f"output channels (got {in_channels} and {out_channels}): set residual off")
        self.config = UNetConfig(in_channels, out_channels, depth, base_channels, norm, dropout, dims, pool, top_skip,
                                 residual)
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths[:-1]:
            self.encoders.append(conv_block(previous, width, norm, dropout, dims))
            previous = width
        self.pool = layer["pool"](2) if pool == "max" else BlurPool(dims)
        self.bottleneck = conv_block(widths[-2], widths[-1], norm, dropout, dims)
        self.upsamples = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.upsamples.append(layer["up"](widths[level + 1], widths[level], 2, stride=2))
            joined = widths[level] if level == 0 and not top_skip else 2 * widths[level]
            self.decoders.append(conv_block(joined, widths[level], norm, dropout, dims))
        self.head = layer["conv"](widths[0], out_channels, 1)
        if residual:  # start as the identity: the input itself is the best first guess of its restored self
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @property
    def size_divisor(self) -> int:
        """Every spatial side of the input must be a multiple of this number."""
        return 2**self.config.depth

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features averaged over space, ``(N, C_bottleneck)``.

        A summary of the image's content at the coarsest level, used e.g. to
        regress the typical object size (Cellpose's "style" vector idea).
        """
        for encoder in self.encoders:
            x = self.pool(encoder(x))
        x = self.bottleneck(x)
        return x.mean(dim=tuple(range(2, x.dim())))

    def forward_with_style(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward(x), style(x))`` from one pass: what an exported segmentation network returns."""
        image, skips = x, []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        style = x.mean(dim=tuple(range(2, x.dim())))
        if not self.config.top_skip:
            skips[0] = None
        for upsample, decoder, skip in zip(self.upsamples, self.decoders, reversed(skips)):
            x = decoder(upsample(x) if skip is None else torch.cat([upsample(x), skip], dim=1))
        return (self.head(x) + image if self.config.residual else self.head(x)), style

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_style(x)[0]


def receptive_field(depth: int, convs_per_block: int = 2, kernel_size: int = 3) -> int:
    """Receptive field, in input pixels, of the centre output pixel of a :class:`UNet`.

    Counts the encoder path (convolutions and 2×2 pools), the bottleneck and the
    decoder path (convolutions; a 2×2 stride-2 transposed convolution adds none).
    This is the theoretical size, an upper bound: the pools' alignment makes the
    measured extent of a given pixel a little smaller (173 px for depth 4).

    Examples
    --------
    >>> receptive_field(depth=1)
    18
    >>> receptive_field(depth=4)
    200
    """
    rf, jump = 1, 1
    grow = convs_per_block * (kernel_size - 1)
    for _ in range(depth):  # encoder block then pool
        rf += grow * jump
        rf += jump  # 2x2 pool, stride 2
        jump *= 2
    rf += grow * jump  # bottleneck
    for _ in range(depth):  # up-convolution (2x2, stride 2) then decoder block
        jump //= 2
        rf += grow * jump
    return rf


def unet_receptive_field(net: UNet) -> int:
    """Receptive field of a built :class:`UNet` (see :func:`receptive_field`)."""
    return receptive_field(net.config.depth)


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference with each batch-norm folded into the convolution before it.

    In eval mode a batch-norm is a fixed per-channel scale and shift, so it can be
    folded into the preceding convolution's weights and bias
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``): the same outputs (to float
    rounding) with one pass over each feature map less, ~10-15 % faster on a CPU.
    The copy is for inference only (its batch-norms are gone); ``net`` is not
    changed. A network without batch-norms is returned as is.

    >>> net = UNet(depth=2, base_channels=4).eval()
    >>> x = torch.rand(1, 3, 16, 16)
    >>> bool(torch.allclose(fuse_batchnorm(net)(x), net(x), atol=1e-5))
    True
    >>> sum(isinstance(m, nn.BatchNorm2d) for m in fuse_batchnorm(net).modules())
    0
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not any(_conv_batchnorm_pairs(net)):  # (block, i) pairs are never falsy
        return net
    if net.training:
        raise ValueError("fuse_batchnorm needs a network in eval mode (it folds the running statistics)")
    fused = copy.deepcopy(net)
    for block, i in list(_conv_batchnorm_pairs(fused)):
        block[i] = fuse_conv_bn_eval(block[i], block[i + 1])
        block[i + 1] = nn.Identity()
    return fused


def _conv_batchnorm_pairs(net: nn.Module):
    """``(block, i)`` for each convolution at ``block[i]`` followed by a batch-norm in a ``Sequential``."""
    for block in net.modules():
        if isinstance(block, nn.Sequential):
            for i in range(len(block) - 1):
                if (isinstance(block[i], nn.Conv2d | nn.Conv3d)
                        and isinstance(block[i + 1], nn.BatchNorm2d | nn.BatchNorm3d)):
                    yield block, i
