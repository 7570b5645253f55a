"""Top-level functions: one call does the whole job with good defaults.

>>> import cytolens
>>> from cytolens.data.synthetic import synthetic_nuclei
>>> image, truth = synthetic_nuclei(shape=(256, 256), n_nuclei=20, seed=1)
>>> labels = cytolens.segment(image)          # bundled "nuclei" model, diameter estimated
>>> table = cytolens.measure(labels, image)  # one row per nucleus
"""

from __future__ import annotations

import os

import numpy as np

from cytolens import models
from cytolens.measure import measure  # re-exported: cytolens.measure(labels, image)
from cytolens.models.package import ModelPackage

__all__ = ["measure", "segment"]


def _load(model: str | os.PathLike | ModelPackage) -> ModelPackage:
    return model if isinstance(model, ModelPackage) else models.load(model)


def segment(
    image: np.ndarray,
    model: str | os.PathLike | ModelPackage = "nuclei",
    diameter: float | None = None,
    tile_size: int = 512,
    overlap: int = 64,
    augment: bool = False,
    gamma: float = 1.0,
    filter_objects: bool = True,
    precision: str = "float32",
    channel: int | None = None,
    **postprocess,
) -> np.ndarray:
    """Segment every object of a 2D image into a label image.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` grayscale or ``(Y, X, C)`` with C = 1, 3 (RGB) or 4 (alpha dropped);
        any integer or float dtype.
    model : str, path or ModelPackage
        Bundled model name (``cytolens models list``), a package folder or ``.zip``.
    diameter : float, optional
        Typical object diameter in pixels; estimated from the image when None.
    tile_size, overlap : int
        Tiled inference: memory is bounded by the tile, seams are blended.
    augment : bool
        Test-time augmentation: average the network over the four flips (4× slower).
    gamma : float
        Gamma applied to the normalized intensities before the network; below 1
        (e.g. 0.67) keeps textured nuclei (bright chromatin foci over a dim
        nucleoplasm) whole instead of cutting them along their dim parts.
    filter_objects : bool
        Drop objects the model's object classifier judges spurious (faint blobs on
        background, fragments), when the model has one (``object_filter`` in
        ``cytolens models info``); False keeps every object the watershed finds.
    precision : {"float32", "bfloat16"}
        "bfloat16" runs the network in mixed precision: ~2x faster on CPUs with
        AVX-512 BF16 or AMX, with slightly different results (``benchmarks/``);
        elsewhere it warns and runs in float32.
    channel : int, optional
        Segment only this channel of a ``(Y, X, C)`` image (0 = the first), e.g. the
        nuclear stain (DAPI, Hoechst) of a multichannel image; None uses the image as
        it is (grayscale or RGB).
    **postprocess
        Override the model's post-processing defaults (e.g. ``min_size=20``,
        ``foreground_threshold=0.4``, ``marker_threshold=0.6``).

    Returns
    -------
    labels : ndarray of uint32, shape (Y, X)
        0 = background, objects numbered 1..N.
    """
    from cytolens.preprocess import select_channel
    from cytolens.tasks.segmentation.inference import segment_image

    if channel is not None:
        image = select_channel(image, channel)
    return segment_image(_load(model), image, diameter, tile_size, overlap, augment, gamma, filter_objects,
                         precision, **postprocess)
