"""A compact residual CNN classifier (He et al. 2016 basic blocks) for whole images or single-cell crops.

A 3×3 stem, then ``depth`` stages of one residual block each (two 3×3 convolutions and
a shortcut; every stage after the first halves the size with a stride of 2 and doubles
the width), global average pooling and a linear head. :meth:`ResNetClassifier.features`
are the pooled penultimate features that embeddings and clustering use.

Its encoder (everything but the head) can start another classifier with other classes
and another number of input channels (transfer learning): :meth:`adapt_parent_state`
keeps a parent's head only when the classes match and spreads a parent's first
convolution over the new input channels.

>>> import torch
>>> net = ResNetClassifier(in_channels=2, out_channels=7, depth=3, base_channels=8)
>>> net(torch.zeros(4, 2, 40, 40)).shape, net.features(torch.zeros(1, 2, 40, 40)).shape
(torch.Size([4, 7]), torch.Size([1, 32]))
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.nn.unet import NetworkConfig, check_classifier_args, layers_for


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (a strided 1×1 convolution when the shape changes), then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str, dropout: float, dims: int) -> None:
        super().__init__()
        layer = layers_for(dims)
        bias = norm != "batch"

        def normed(channels: int) -> nn.Module:
            return layer["norm"](channels) if norm == "batch" else nn.Identity()

        self.body = nn.Sequential(
            layer["conv"](in_ch, out_ch, 3, stride=stride, padding=1, bias=bias), normed(out_ch), nn.ReLU(inplace=True),
            *([layer["dropout"](dropout)] if dropout > 0 else []),
            layer["conv"](out_ch, out_ch, 3, padding=1, bias=bias), normed(out_ch))
        self.shortcut = (nn.Identity() if stride == 1 and in_ch == out_ch else
                         nn.Sequential(layer["conv"](in_ch, out_ch, 1, stride=stride, bias=bias), normed(out_ch)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNetClassifier(nn.Module):
    """``(N, in_channels, *spatial)`` → ``(N, out_channels)`` class logits; any input size."""

    def __init__(self, in_channels: int = 3, out_channels: int = 2, depth: int = 4, base_channels: int = 16,
                 norm: str = "batch", dropout: float = 0.0, dims: int = 2) -> None:
        super().__init__()
        layer = layers_for(dims)
        check_classifier_args(in_channels, out_channels, depth, base_channels, norm)
        self.config = NetworkConfig(in_channels, out_channels, depth, base_channels, norm, dropout, dims)
        widths = [base_channels * 2**level for level in range(depth)]
        self.stem = nn.Sequential(layer["conv"](in_channels, base_channels, 3, padding=1, bias=norm != "batch"),
                                  layer["norm"](base_channels) if norm == "batch" else nn.Identity(),
                                  nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(ResidualBlock(previous, width, 1 if level == 0 else 2, norm, dropout, dims)
                                    for level, (previous, width) in enumerate(zip([base_channels, *widths[:-1]],
                                                                                  widths)))
        self.head = nn.Linear(widths[-1], out_channels)

    @property
    def size_divisor(self) -> int:
        """Each stage after the first halves the size; sides that are multiples of this lose no pixels."""
        return 2 ** (self.config.depth - 1)

    def encoder_modules(self) -> list[nn.Module]:
        """Everything but the head (what transfer learning keeps and freezes)."""
        return [self.stem, *self.stages]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled penultimate features ``(N, C)``: what the head classifies, what clustering uses."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=tuple(range(2, x.dim())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def adapt_parent_state(self, parent_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A parent classifier's weights made to fit this network (transfer learning).

        The head is kept only when its shape matches (same number of classes), else this
        network's fresh head stays; a first convolution made for another number of input
        channels is replaced by its mean over the parent's channels, repeated for each of
        this network's (scaled so the activations keep their size).
        """
        own = self.state_dict()
        state = {}
        for key, value in parent_state.items():
            if key.startswith("head.") and key in own and own[key].shape != value.shape:
                state[key] = own[key]
            elif key == "stem.0.weight" and own[key].shape[1] != value.shape[1]:
                mean = value.mean(dim=1, keepdim=True)
                state[key] = mean.repeat(1, own[key].shape[1], *([1] * (value.dim() - 2))) * (
                    value.shape[1] / own[key].shape[1])
            else:
                state[key] = value
        return state
