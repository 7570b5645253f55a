"""Transfer learning helpers: freeze a pretrained encoder, record where weights came from.

Starting from a model trained on related images (a bundled model or any model
package) needs fewer annotations. Freezing the encoder for the first epochs keeps
the randomly initialised parts (a new head, a decoder) from wrecking the pretrained
features with their large early gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def encoder_modules(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The feature-extracting part of ``network``.

    A network may define ``encoder_modules()``; for a :class:`~cytolens.nn.UNet` it is
    the encoder blocks and the bottleneck.
    """
    if hasattr(network, "encoder_modules"):
        return list(network.encoder_modules())
    if hasattr(network, "encoders"):
        return [*network.encoders, *([network.bottleneck] if hasattr(network, "bottleneck") else [])]
    raise TypeError(f"don't know the encoder of a {type(network).__name__}; give it an encoder_modules() method")


def freeze_encoder_hook(epochs: int) -> Callable[[torch.nn.Module, int], None] | None:
    """An ``on_epoch_start`` hook for :func:`~cytolens.train.loop.fit` that freezes the encoder.

    During the first ``epochs`` epochs the encoder's parameters get no gradient and its
    batch-norm statistics stay fixed (eval mode); afterwards everything trains.
    Returns ``None`` when ``epochs`` is 0.
    """
    if epochs <= 0:
        return None

    def hook(model: torch.nn.Module, epoch: int) -> None:
        frozen = epoch < epochs
        for module in encoder_modules(model):
            module.requires_grad_(not frozen)
            if frozen:
                module.eval()

    return hook


def parent_record(package, source: str) -> dict:
    """What ``model.json`` stores about the model a training run started from."""
    meta = package.meta
    return {"name": meta.get("name"), "version": meta.get("version"), "source": str(source),
            "task": meta.get("task"), "schema": meta.get("schema"),
            "validation": meta.get("validation") or meta.get("training", {}).get("best_val")}
