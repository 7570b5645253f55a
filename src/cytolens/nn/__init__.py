"""PyTorch building blocks and architectures."""

from cytolens.nn.unet import UNet, UNetConfig, fuse_batchnorm, receptive_field, unet_receptive_field

__all__ = ["UNet", "UNetConfig", "fuse_batchnorm", "receptive_field", "unet_receptive_field"]
