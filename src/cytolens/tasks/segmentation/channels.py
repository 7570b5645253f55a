"""Segmentation models that declare their input channels (e.g. cytoplasm + nucleus).

What a package's network reads is in ``model.json`` → ``input``. The bundled models take
gray or RGB images: gray is repeated to 3 channels and the percentiles are taken over all
channels together (``input.channels`` 3, no ``file_channels``). A model trained with the
config's ``channels`` (e.g. ``channels: [0, 1]``, a cytoplasm and a nucleus stain) declares
them: ``input.channels`` is their count and ``input.file_channels`` the channels of its
training files it took, in order. Such a model takes an image with exactly that many
channels, channels last (``(Y, X, C)``; ``axes="CYX"`` / ``--axes CYX`` for channels
first), each normalized on its own; ``channels=`` / ``--channels`` pick them, in the
model's order, from an image that has more (Cellpose's channel selection). Any other
count is a one-line :class:`~cytolens.errors.InvalidImageError`.

>>> meta = {"name": "two", "input": {"channels": 2, "axes": "YXC", "file_channels": [0, 1]}}
>>> declared_channels(meta), declared_channels({"input": {"channels": 3}})
(2, None)
>>> check_channel_count(meta, 3)
Traceback (most recent call last):
cytolens.errors.InvalidImageError: the image has 3 channels but model 'two' takes 2 (channels 0, 1 of the files it was trained on): pick them with channels=[...] in Python, --channels in the CLI (0 = first)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError

#: what ``model.json`` → ``input.conversion`` says of a model that declares its channels
CONVERSION = "the image's channels as they are (channels last), each normalized on its own"


def declared_channels(meta: dict) -> int | None:
    """The channel count a package declares (``input.file_channels`` present), None for a gray/RGB model."""
    entry = meta.get("input") or {}
    if "file_channels" not in entry:
        return None
    return int(entry.get("channels", len(entry["file_channels"])))


def input_meta(channels: Sequence[int] | None) -> dict:
    """The ``input`` entry of ``model.json`` for a model trained on these file channels (None: gray/RGB)."""
    if channels is None:
        return {"channels": 3, "axes": "YXC", "conversion": "grayscale repeated to RGB, alpha dropped"}
    return {"channels": len(channels), "axes": "YXC", "file_channels": [int(c) for c in channels],
            "conversion": CONVERSION}


def check_channel_list(channels, name: str = "channels") -> list[int]:
    """``channels`` as a list of distinct whole numbers >= 0; InvalidParameterError otherwise.

    >>> check_channel_list((1, 0))
    [1, 0]
    >>> check_channel_list([0, 0])
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: channels must be distinct whole numbers >= 0 (0 = the first channel), e.g. [0, 1]; got [0, 0]
    """
    values = list(channels) if isinstance(channels, Sequence) and not isinstance(channels, str) else None
    if not values or len(set(values)) != len(values) or any(
            isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0 for c in values):
        raise InvalidParameterError(f"{name} must be distinct whole numbers >= 0 (0 = the first channel), e.g. "
                                    f"[0, 1]; got {channels!r}")
    return [int(c) for c in values]


def pick_channels(image: np.ndarray, channels, where: str = "the image", spatial_ndim: int = 2) -> np.ndarray:
    """``image[..., channels]``: the channels a model takes, in its order, from a channels-last image.

    >>> pick_channels(np.zeros((4, 5, 3)), [2, 0]).shape
    (4, 5, 2)
    >>> pick_channels(np.zeros((4, 5)), [1])
    Traceback (most recent call last):
    cytolens.errors.InvalidImageError: the image has 1 channel, so it has no channel 1 (0 = first)
    """
    channels = check_channel_list(channels)
    image = np.asarray(image)
    count = image.shape[spatial_ndim] if image.ndim == spatial_ndim + 1 else 1
    if image.ndim == spatial_ndim:
        image = image[..., None]
    missing = [c for c in channels if c >= count]
    if missing or image.ndim != spatial_ndim + 1:
        raise InvalidImageError(f"{where} has {count} channel{'s' * (count != 1)}, so it has no channel "
                                f"{', '.join(map(str, missing))} (0 = first)")
    return image[..., channels]


def check_channel_count(meta: dict, count: int, where: str = "the image") -> None:
    """One-line InvalidImageError unless a model that declares its channels takes ``count`` (a gray/RGB model:
    no check here)."""
    wanted = declared_channels(meta)
    if wanted is None or count == wanted:
        return
    trained_on = ", ".join(map(str, (meta.get("input") or {}).get("file_channels", [])))
    hint = ("pick them with channels=[...] in Python, --channels in the CLI (0 = first)" if count > wanted else
            "give it an image with all of them, channels last (Y, X, C) (channels first: axes='CYX', --axes CYX)")
    raise InvalidImageError(f"{where} has {count} channel{'s' * (count != 1)} but model {meta.get('name')!r} takes "
                            f"{wanted} (channels {trained_on} of the files it was trained on): {hint}")


def declared_yxc(meta: dict, image: np.ndarray) -> np.ndarray:
    """A checked 2D image as ``(Y, X, C)`` for a model that declares C channels."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == declared_channels(meta) and image.shape[2] > 16:
        raise InvalidImageError(f"the image of shape {image.shape} has its channels first; give axes='CYX' "
                                "(--axes CYX in the CLI) or channels last (numpy.moveaxis(image, 0, -1))")
    if image.ndim not in (2, 3):
        raise InvalidImageError(f"expected a 2D image (Y, X, C) with the model's channels; got shape {image.shape}")
    check_channel_count(meta, 1 if image.ndim == 2 else image.shape[2])
    return image[..., None] if image.ndim == 2 else image


def channels_first_to_last(image: np.ndarray) -> np.ndarray:
    """A ``(C, Y, X)`` image as ``(Y, X, C)``; an error for any other number of axes.

    >>> channels_first_to_last(np.zeros((2, 4, 5))).shape
    (4, 5, 2)
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InvalidImageError(f"axes CYX needs a (C, Y, X) image, got shape {image.shape}")
    return np.moveaxis(image, 0, -1)
