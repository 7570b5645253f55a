"""Checks ``cytolens segment --axes ZYX`` runs (and runs of a model that declares its channels) before it reads
a volume or writes a file."""

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
                     extras: tuple[str, ...], channels: list[int] | None = None) -> None:
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
        if channels is not None:
            shape = _picked_shape(path, shape, channels, 3)
        check_volume_shape(package, shape, anisotropy, method, where=f"{path}: ")


def _picked_shape(path: Path, shape: tuple[int, ...], channels: list[int], spatial_ndim: int) -> tuple[int, ...]:
    """The shape once ``channels`` are picked (``--channels``); an error naming the file when one is missing."""
    count = shape[spatial_ndim] if len(shape) == spatial_ndim + 1 else 1
    if len(shape) > spatial_ndim + 1 or max(channels) >= count:
        raise InvalidImageError(f"{path}: --channels {','.join(map(str, channels))} needs those channels; the image "
                                f"has shape {shape} ({count} channel{'s' * (count != 1)}, channels last)")
    return shape[:spatial_ndim] + (len(channels),)


def check_channel_run(package, images: list[Path], channels_first: bool, channel: int | None,
                      channels: list[int] | None) -> None:
    """For a model that declares its channels (or ``--channels``/``--axes CYX``): each file's channel count,
    from its header, before anything is written (a gray/RGB model's images are checked one by one as before)."""
    from cytolens.tasks.segmentation.channels import check_channel_count, declared_channels

    if declared_channels(package.meta) is None and channels is None and not channels_first:
        return
    for path in images:
        shape = file_shape(path)
        if channels_first:
            if len(shape) != 3:
                raise InvalidImageError(f"{path}: --axes CYX needs a (C, Y, X) image, got shape {shape}")
            shape = shape[1:] + shape[:1]
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] > 16):
            raise InvalidImageError(f"{path}: expected a 2D image (Y, X[, C]) with its channels last, got shape "
                                    f"{shape} (channels first: --axes CYX; a volume: --axes ZYX)")
        if channel is not None:
            shape = shape[:2]
        if channels is not None:
            shape = _picked_shape(path, shape, channels, 2)
        check_channel_count(package.meta, shape[2] if len(shape) == 3 else 1, str(path))
