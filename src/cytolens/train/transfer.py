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


#: architecture settings a run must share with the model it starts from (the weights' shapes depend on them)
SHAPE_SETTINGS = ("name", "depth", "base_channels", "norm", "dims")


def adapt_architecture(config, package):
    """``config`` with the architecture of ``package`` (the parent of a transfer-learning run).

    The parent's task must be the config's; settings the config leaves unset are taken
    from the parent; an explicit architecture that does not match the parent's weights,
    or a parent normalization the config does not set, are handled here for every task.
    """
    from cytolens.errors import InvalidParameterError

    meta = package.meta
    where = f"init_from ({meta.get('name')!r})"
    if meta.get("task") != config.task:
        raise InvalidParameterError(f"{where} is a {meta.get('task')} model; this config trains {config.task}")
    parent = {"name": meta["architecture"].get("name", "unet"), "dims": 2, **meta["architecture"]["args"]}
    arch = config.architecture
    if "architecture" in config.model_fields_set:
        for key in SHAPE_SETTINGS:
            if getattr(arch, key) != parent[key]:
                raise InvalidParameterError(
                    f"architecture.{key} is {getattr(arch, key)!r} but {where} has {parent[key]!r}; remove it from "
                    "the config (the parent's architecture is used) or start from scratch")
    updates: dict = {"architecture": arch.model_copy(update={k: parent[k] for k in SHAPE_SETTINGS})}
    if "normalization" not in config.model_fields_set and "normalization" in meta:
        updates["normalization"] = (float(meta["normalization"]["low"]), float(meta["normalization"]["high"]))
    adapted = config.model_copy(update=updates)
    divisor = 2 ** parent["depth"]
    if adapted.optimization.crop_size % divisor:
        raise InvalidParameterError(f"optimization.crop_size {adapted.optimization.crop_size} must be a multiple "
                                    f"of {divisor} for {where} (depth {parent['depth']})")
    return adapted


def load_parent_weights(network: torch.nn.Module, parent_state: dict[str, torch.Tensor]) -> None:
    """Copy a parent's weights into ``network``, whose head may have more output channels.

    A segmentation schema that ``EXTENDS`` another keeps the parent's channels first, so
    the parent's head fills the first rows of the new head. The added rows start at zero
    weights and a bias of −4 (sigmoid ≈ 0.02: "rarely present"), so at the start they
    neither disturb the shared features with large gradients nor change the parent's
    outputs. Any other mismatch is an error.
    """
    from cytolens.errors import InvalidParameterError

    if hasattr(network, "adapt_parent_state"):  # e.g. a classifier with other classes or input channels
        parent_state = network.adapt_parent_state(parent_state)
    state = network.state_dict()
    for key, value in parent_state.items():
        target = state.get(key)
        if target is None:
            raise InvalidParameterError(f"the parent model has weights {key!r} that this network lacks")
        if target.shape == value.shape:
            state[key] = value
        elif key.startswith("head.") and target.shape[1:] == value.shape[1:] and target.shape[0] > value.shape[0]:
            state[key] = torch.full_like(target, -4.0) if key.endswith("bias") else torch.zeros_like(target)
            state[key][: value.shape[0]] = value
        else:
            raise InvalidParameterError(f"the parent's {key!r} has shape {tuple(value.shape)}, "
                                        f"this network's {tuple(target.shape)}")
    network.load_state_dict(state)
