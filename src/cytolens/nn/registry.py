"""Architectures by name, as ``model.json`` and training configs name them.

A package's ``architecture`` entry is ``{"name": ..., "args": {...}}``; :func:`build_network`
turns it back into the network. A new architecture adds one line to :data:`ARCHITECTURES`.

>>> build_network("unet", in_channels=1, out_channels=2, depth=2, base_channels=4).config.dims
2
>>> build_network("transformer")
Traceback (most recent call last):
cytolens.errors.UnknownModelError: unknown architecture 'transformer'; this cytolens knows classifier, resnet, unet
"""

from __future__ import annotations

import torch

from cytolens.errors import UnknownModelError
from cytolens.nn.classifier import Classifier
from cytolens.nn.resnet import ResNetClassifier
from cytolens.nn.unet import UNet

#: name → network class; each class takes keyword arguments and keeps them as ``.config`` (with ``to_dict()``)
ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"unet": UNet, "classifier": Classifier,
                                                   "resnet": ResNetClassifier}


def build_network(name: str, **args) -> torch.nn.Module:
    """The network ``name`` built with ``args`` (``model.json``'s ``architecture.args``)."""
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownModelError(f"unknown architecture {name!r}; this cytolens knows {known}")
    return ARCHITECTURES[name](**args)


def architecture_name(network: torch.nn.Module) -> str:
    """The registry name of a built network (for ``model.json``)."""
    for name, cls in ARCHITECTURES.items():
        if type(network) is cls:
            return name
    raise UnknownModelError(f"{type(network).__name__} is not a registered architecture")


def spatial_dims(network: torch.nn.Module) -> int:
    """How many spatial axes the network's inputs have (2 for images, 3 for volumes)."""
    return getattr(getattr(network, "config", None), "dims", 2)


def channels_last(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` in the channels-last memory format of its dimension (NHWC or NDHWC), in place.

    oneDNN's CPU convolutions run ~1.5x faster that way; a 3D network needs
    ``torch.channels_last_3d`` (``torch.channels_last`` fails on 5D weights).
    """
    three_d = spatial_dims(network) == 3
    return network.to(memory_format=torch.channels_last_3d if three_d else torch.channels_last)


def channels_last_input(batch: torch.Tensor) -> torch.Tensor:
    """A 4D or 5D batch in the matching channels-last memory format; other tensors unchanged."""
    if batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    if batch.dim() == 5:
        return batch.contiguous(memory_format=torch.channels_last_3d)
    return batch
