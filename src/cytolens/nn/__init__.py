"""PyTorch building blocks and architectures (registry: :mod:`cytolens.nn.registry`)."""

from cytolens.nn.classifier import Classifier
from cytolens.nn.registry import ARCHITECTURES, build_network, channels_last
from cytolens.nn.unet import NetworkConfig, UNet, UNetConfig, fuse_batchnorm, receptive_field, unet_receptive_field

__all__ = ["ARCHITECTURES", "Classifier", "NetworkConfig", "UNet", "UNetConfig", "build_network", "channels_last",
           "fuse_batchnorm", "receptive_field", "unet_receptive_field"]
