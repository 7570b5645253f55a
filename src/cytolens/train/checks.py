"""Sanity checks before training: is the network able to see a whole object?

A pixel of a U-Net's output depends on a window of the input (its receptive field).
To tell an object's centre from its border — which every instance-segmentation
schema here needs — the network must see the whole object around that pixel. When
the typical object at the model's scale is larger than the receptive field,
training still runs but large objects get split or lose their centres, and no
amount of training fixes it. The check warns and says what to change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import numpy as np


def object_diameters(label_images: Iterable[np.ndarray]) -> np.ndarray:
    """Equivalent-circle diameters (px) of every object in some label images (0 = background)."""
    diameters = []
    for labels in label_images:
        areas = np.bincount(np.asarray(labels, dtype=np.int64).ravel())[1:]
        diameters.append(2 * np.sqrt(areas[areas > 0] / np.pi))
    return np.concatenate(diameters) if diameters else np.zeros(0)


def check_receptive_field(
    diameters: np.ndarray,
    depth: int,
    receptive_field_of: Callable[[int], int] | None = None,
    max_depth: int = 6,
    scale_setting: tuple[str, float] | None = None,
    depth_setting: str = "architecture.depth",
    warn: bool = True,
) -> str | None:
    """Warn when the typical (median) object is larger than the receptive field.

    Parameters
    ----------
    diameters : ndarray
        Object diameters in pixels **at the model's scale** (after rescaling).
    depth : int
        Depth of the network (number of poolings).
    receptive_field_of : callable, optional
        ``depth -> receptive field (px)``; :func:`cytolens.nn.unet.receptive_field` by default.
    max_depth : int
        Deepest network the config allows (for the advice).
    scale_setting : (name, value), optional
        The setting that rescales objects (e.g. ``("target_diameter", 20.0)``), for the advice.
    warn : bool
        Also issue a :class:`UserWarning` with the message.

    Returns
    -------
    str or None
        The message (also warned), or ``None`` when objects fit.

    Examples
    --------
    >>> check_receptive_field(np.array([10.0, 12.0]), depth=2) is None
    True
    """
    if receptive_field_of is None:
        from cytolens.nn.unet import receptive_field as receptive_field_of
    diameters = np.asarray(diameters, dtype=float)
    if diameters.size == 0:
        return None
    field = receptive_field_of(depth)
    typical = float(np.median(diameters))
    if typical <= field:
        return None
    larger = float(np.mean(diameters > field))
    advice = []
    deeper = next((d for d in range(depth + 1, max_depth + 1) if receptive_field_of(d) >= typical), None)
    if deeper is not None:
        advice.append(f"set {depth_setting}: {deeper} (receptive field {receptive_field_of(deeper)} px)")
    if scale_setting is not None:
        name, value = scale_setting
        smaller = math.floor(value * field / typical)
        if smaller >= 3:
            advice.append(f"lower {name} from {value:g} to at most {smaller} (objects are rescaled to it)")
    message = (f"receptive field too small: the typical object at model scale is {typical:.0f} px across "
               f"(median of {diameters.size} object{'s' if diameters.size > 1 else ''}; {larger:.0%} are larger than the receptive field) but the "
               f"network (depth {depth}) sees only {field} px around each pixel, so it cannot see whole objects; "
               + (" or ".join(advice) if advice else "downscale the images") + ".")
    if warn:
        warnings.warn(message, UserWarning, stacklevel=2)
    return message
