"""Checks ``cytolens segment --axes ZYX`` runs before it reads a volume or writes a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.io.images import TIFF_SUFFIXES, _to_channels_last, read_image


def file_shape(path: Path) -> tuple[int, ...]:
    """The shape :func:`cytolens.io.read_image` would return, from a TIFF's header (no pixels read)."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return read_image(path).shape  # PNG/JPEG hold one plane: small, and the error says 2D
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, axes = series.shape, series.axes
    except (OSError, ValueError, tifffile.TiffFileError):  # unreadable: read_image words the error
        return read_image(path).shape
    return _to_channels_last(np.broadcast_to(np.zeros(1, np.uint8), shape), axes).shape


def check_volume_run(package, images: list[Path], anisotropy: float, method: str, channel: int | None,
                     extras: tuple[str, ...]) -> None:
    """One-line errors, before anything is written: 2D outputs asked for, a bad anisotropy or method, and each
    file that is 2D, has too few planes or a channel count the model does not take."""
    from cytolens.tasks.segmentation.volume import check_anisotropy, check_volume_shape, resolve_method

    if extras:
        raise InvalidParameterError(f"--{', --'.join(extras)} draw 2D outlines; they are not written for volumes "
                                    "(open the ZYX label TIFF in napari or Fiji instead)")
    check_anisotropy(anisotropy)
    resolve_method(package, method)
    for path in images:
        shape = file_shape(path)
        if channel is not None:
            if len(shape) != 4 or not -shape[3] <= channel < shape[3]:
                raise InvalidImageError(f"{path}: --channel {channel} needs a (Z, Y, X, C) volume with that channel, "
                                        f"got shape {shape}")
            shape = shape[:3]
        check_volume_shape(package, shape, anisotropy, method, where=f"{path}: ")
