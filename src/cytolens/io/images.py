"""Reading and writing images, label images and tables.

``read_image`` returns ``(Y, X)`` or ``(Y, X, C)`` arrays (channels last) for 2D
images, and ``(T|Z, Y, X[, C])`` for stacks, in the file's dtype; a constant alpha
channel is dropped. Writers never overwrite an existing file unless asked, and
write to a temporary name in the same folder before renaming.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cytolens.errors import ImageReadError, InvalidImageError, OutputExistsError

TIFF_SUFFIXES = (".tif", ".tiff")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_SUFFIXES = TIFF_SUFFIXES + OTHER_SUFFIXES


def _drop_constant_alpha(image: np.ndarray) -> np.ndarray:
    if image.ndim >= 3 and image.shape[-1] == 4 and np.all(image[..., 3] == image[..., 3].flat[0]):
        return image[..., :3]
    return image


def _read_tiff(path: Path) -> tuple[np.ndarray, str | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        image = series.asarray()
        axes = series.axes
    return image, axes


def _to_channels_last(image: np.ndarray, axes: str | None) -> np.ndarray:
    """Use OME/ImageJ axes when present: squeeze singleton axes, move C last."""
    if not axes or len(axes) != image.ndim:
        return image
    axes = axes.upper().replace("S", "C")
    keep = [i for i, a in enumerate(axes) if image.shape[i] > 1 or a in "YX"]
    image = image.reshape([image.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "C" in axes and axes.index("C") != len(axes) - 1:
        image = np.moveaxis(image, axes.index("C"), -1)
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF/OME-TIFF, PNG or JPEG image as a numpy array, channels last.

    Raises :class:`~cytolens.errors.ImageReadError` for a missing or undecodable file.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "x.tif"
    >>> _ = write_image(path, np.arange(12, dtype=np.uint16).reshape(3, 4))
    >>> read_image(path).shape
    (3, 4)
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            image, axes = _read_tiff(path)
            image = _to_channels_last(image, axes)
        elif suffix in OTHER_SUFFIXES:
            import imageio.v3 as iio

            image = np.asarray(iio.imread(path))
        else:
            raise ImageReadError(
                f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(IMAGE_SUFFIXES)}")
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types; the user needs one message
        raise ImageReadError(f"cannot read {path} as an image: {exc}") from None
    if image.size == 0:
        raise InvalidImageError(f"{path} holds an empty image (shape {image.shape})")
    return _drop_constant_alpha(image)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``writer(tmp_path)`` and rename the result to ``path``.

    Refuses (``OutputExistsError``) when ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False, compression: str = "zlib") -> Path:
    """Write an image (TIFF for ``.tif``/``.tiff``, otherwise by extension)."""
    path = Path(path)
    image = np.asarray(image)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        def writer(tmp: Path) -> None:
            tifffile.imwrite(tmp, image, compression=compression)
    else:
        import imageio.v3 as iio

        def writer(tmp: Path) -> None:
            iio.imwrite(tmp, image, extension=path.suffix)

    return atomic_write(path, writer, overwrite)


def label_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 when the largest label fits, else uint32."""
    top = int(labels.max()) if labels.size else 0
    if top > np.iinfo(np.uint32).max:
        raise InvalidImageError(f"label image has {top} objects: more than uint32 can hold")
    return np.dtype(np.uint16) if top <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def write_labels(path: str | os.PathLike, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write a label image as TIFF (uint16, or uint32 when > 65535 objects)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InvalidImageError("labels must be non-negative integers (0 = background)")
    return write_image(path, labels.astype(label_dtype(labels)), overwrite=overwrite)


def write_table(path: str | os.PathLike, table, overwrite: bool = False) -> Path:
    """Write a pandas DataFrame as CSV (``.csv``) or Parquet (``.parquet``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False), overwrite)
    if suffix in (".parquet", ".pq"):
        return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False), overwrite)
    raise InvalidImageError(f"{path}: tables are written as .csv or .parquet, not {suffix or '(none)'}")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in a folder (sorted, hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
