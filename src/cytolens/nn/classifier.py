"""A small convolutional classifier: U-Net-style encoder blocks, global average pooling, a linear head.

For classifying whole images or single-cell crops (e.g. cell state). The encoder is
built from the same blocks as :class:`~cytolens.nn.UNet`'s, so a segmentation
model's encoder weights can start a classifier (transfer learning).

>>> import torch
>>> net = Classifier(in_channels=1, out_channels=3, depth=2, base_channels=4)
>>> net(torch.zeros(2, 1, 32, 32)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

import torch
from torch import nn

from cytolens.nn.unet import NetworkConfig, check_classifier_args, conv_block, layers_for


class Classifier(nn.Module):
    """``(N, in_channels, *spatial)`` → ``(N, out_channels)`` logits, one per class; any input size."""

    def __init__(self, in_channels: int = 3, out_channels: int = 2, depth: int = 4, base_channels: int = 16,
                 norm: str = "batch", dropout: float = 0.0, dims: int = 2) -> None:
        super().__init__()
        layer = layers_for(dims)
        check_classifier_args(in_channels, out_channels, depth, base_channels, norm)
        self.config = NetworkConfig(in_channels, out_channels, depth, base_channels, norm, dropout, dims)
        widths = [base_channels * 2**level for level in range(depth)]
        self.encoders = nn.ModuleList(conv_block(previous, width, norm, dropout, dims)
                                      for previous, width in zip([in_channels, *widths[:-1]], widths))
        self.pool = layer["pool"](2)
        self.head = nn.Linear(widths[-1], out_channels)

    @property
    def size_divisor(self) -> int:
        """Inputs are pooled ``depth - 1`` times; sides that are multiples of this lose no pixels."""
        return 2 ** (self.config.depth - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features ``(N, C)``: what the head classifies, and what clustering uses."""
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
        return x.mean(dim=tuple(range(2, x.dim())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
