"""Synthetic 3D volumes of touching nuclei with exact instance truth.

Each nucleus is an ellipsoid (three random semi-axes, a random rotation) placed in
physical space where the Z step is ``anisotropy`` times the XY pixel size, so the
volume ``(Z, Y, X)`` is sampled as a confocal stack is. A ``touching_fraction`` of the
nuclei is pushed against an existing one (the overlap stays with the older nucleus,
which flattens the shared face). The image is a dome profile with texture, blurred by
an anisotropic point spread function (longer along Z), with Poisson and read noise;
everything is drawn from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cytolens.errors import InvalidParameterError

__all__ = ["synthetic_nuclei_3d"]

_BACKGROUND, _BRIGHTNESS, _OFFSET, _READ_NOISE = 120.0, 900.0, 100.0, 4.0


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def synthetic_nuclei_3d(shape: tuple[int, int, int] = (32, 128, 128), n_nuclei: int = 20,
                        diameter_range: tuple[float, float] = (14, 24), anisotropy: float = 2.0,
                        touching_fraction: float = 0.4, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescence volume of nuclei and its exact label volume.

    Parameters
    ----------
    shape : (int, int, int)
        Volume size ``(Z, Y, X)`` in voxels; Z at least 4, Y and X at least 16.
    n_nuclei : int
        Nuclei asked for; fewer are returned when the volume is too crowded.
    diameter_range : (float, float)
        Smallest and largest ellipsoid diameter, in XY pixels (physical units).
    anisotropy : float
        Z step divided by the XY pixel size (> 0): a nucleus of diameter d spans
        about ``d / anisotropy`` planes.
    touching_fraction : float
        Fraction in [0, 1] of nuclei placed against an existing one.
    seed : int or None
        Seed; the same arguments give the same arrays.

    Returns
    -------
    image : ndarray of uint16, shape (Z, Y, X)
    labels : ndarray of uint16, shape (Z, Y, X)
        0 = background, nuclei numbered 1..n, each one connected region.

    Examples
    --------
    >>> image, labels = synthetic_nuclei_3d((12, 48, 48), n_nuclei=3, seed=1)
    >>> image.shape, labels.dtype, int(labels.max())
    ((12, 48, 48), dtype('uint16'), 3)
    """
    if len(shape) != 3 or shape[0] < 4 or min(shape[1:]) < 16:
        raise InvalidParameterError(f"shape must be (Z, Y, X) with Z >= 4 and Y, X >= 16, got {shape!r}")
    if not (isinstance(anisotropy, (int, float)) and math.isfinite(anisotropy) and anisotropy > 0):
        raise InvalidParameterError(f"anisotropy must be a positive number, got {anisotropy!r}")
    low, high = (float(d) for d in diameter_range)
    if not 2 <= low <= high:
        raise InvalidParameterError(f"diameter_range must be (low, high) with 2 <= low <= high, got {diameter_range!r}")
    if not 0 <= touching_fraction <= 1:
        raise InvalidParameterError(f"touching_fraction must be in [0, 1], got {touching_fraction!r}")
    rng = np.random.default_rng(seed)
    spacing = np.array([anisotropy, 1.0, 1.0])
    extent = np.array(shape) * spacing
    grid = np.stack(np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij"), axis=-1)
    labels = np.zeros(shape, np.uint16)
    profile = np.zeros(shape, np.float64)
    centres: list[tuple[np.ndarray, float]] = []
    for _ in range(50 * n_nuclei):
        if len(centres) == n_nuclei:
            break
        radii = rng.uniform(low, high, 3) / 2
        rotation = _rotation(rng)
        touching = bool(centres) and rng.random() < touching_fraction
        if touching:
            centre0, radius0 = centres[rng.integers(len(centres))]
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            centre = centre0 + direction * 0.85 * (radius0 + radii.mean())
        else:
            centre = rng.uniform(0, 1, 3) * extent
        if np.any(centre - radii.max() < -radii.min() / 2) or np.any(centre + radii.max() > extent + radii.min() / 2):
            continue
        reach = radii.max() + 1
        box = tuple(slice(max(int((c - reach) / s), 0), min(int((c + reach) / s) + 2, n))
                    for c, s, n in zip(centre, spacing, shape))
        local = (grid[box] - centre) @ rotation / radii
        r2 = np.einsum("...i,...i->...", local, local)
        inside = r2 <= 1
        free = inside & (labels[box] == 0)
        if not free.any() or free.sum() < 0.75 * inside.sum():
            continue
        if not touching and np.any(ndimage.binary_dilation(inside, iterations=2) & (labels[box] > 0)):
            continue  # a nucleus not meant to touch keeps a gap of 2 voxels
        pieces, count = ndimage.label(free)
        if count > 1:  # keep the largest piece: each nucleus stays one connected region
            free = pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1
        label = len(centres) + 1
        labels[box][free] = label
        profile[box][free] = rng.uniform(0.6, 1.4) * (0.55 + 0.45 * (1 - r2[free]))
        centres.append((centre, float(radii.mean())))
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    texture /= texture.std() or 1.0
    signal = _BRIGHTNESS * profile * np.clip(1 + 0.15 * texture, 0.5, 1.5)
    blurred = ndimage.gaussian_filter(signal, (1.2 * 2 / anisotropy, 1.0, 1.0))
    counts = rng.poisson(_BACKGROUND + blurred) + _OFFSET + rng.normal(0, _READ_NOISE, shape)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), labels
