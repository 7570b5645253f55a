"""Restore an image with a restoration model package: normalize, predict in blended tiles, scale back.

The output is float32 ``(Y, X)`` for one predicted channel, ``(K, Y, X)`` (``CYX``) for
several. A model trained with ``target_normalization: source`` (denoising) gives its
output in the input's intensity units; one trained with ``own`` (label-free prediction)
gives the target modality in its normalized units (its percentiles at 0 and 1).
"""

from __future__ import annotations

import numpy as np

from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.models.package import ModelPackage
from cytolens.preprocess import PercentileNormalizer, check_image, predict_tiled
from cytolens.tasks.restoration.training import as_cyx, check_size, source_statistics


def restoration_settings(package: ModelPackage) -> dict:
    """The ``restoration`` entry of a restoration package's ``model.json``."""
    if package.meta.get("task") != "restoration" or "restoration" not in package.meta:
        raise InvalidModelError(f"{package.name} is a {package.meta.get('task')} model, not a restoration model; "
                                "give a model that `cytolens train` (task: restoration) or `train-denoiser` wrote")
    return package.meta["restoration"]


def restore_image(package: ModelPackage, image: np.ndarray, *, tile_size: int | None = None, overlap: int = 32,
                  where: str = "image") -> np.ndarray:
    """``image`` restored by ``package`` (see the module docstring), predicted in tiles with blended seams."""
    settings = restoration_settings(package)
    check_image(np.asarray(image), allow_constant=True)
    cyx = as_cyx(image, package.info.input.channels, where)
    check_size(cyx, settings.get("min_side", 8), where)
    divisor = 2 ** package.info.architecture.args.get("depth", 2)
    tile = tile_size or settings.get("tile_size", 256)
    overlap = min(overlap, tile // 4)
    if tile % divisor or tile < 4 * divisor:
        raise InvalidParameterError(f"tile_size {tile} must be a multiple of {divisor} and at least {4 * divisor}")
    normalizer = PercentileNormalizer.from_meta(package.meta.get("normalization"))
    lo, hi = source_statistics(cyx, (normalizer.low, normalizer.high))
    from cytolens.nn.predictor import network_predictor

    predict = network_predictor(package.inference_network)
    out = predict_tiled(predict, normalizer.apply(cyx, lo, hi), settings["output_channels"], tile_size=tile,
                        overlap=overlap, size_divisor=divisor)
    if settings.get("target_normalization") == "source":
        out = out * max(hi - lo, 1e-6) + lo
    return out[0] if out.shape[0] == 1 else out
