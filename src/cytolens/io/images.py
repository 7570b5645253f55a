"""Reading and writing images, label images and tables.

``read_image`` returns ``(Y, X)`` or ``(Y, X, C)`` arrays (channels last) for 2D
images, and ``(T|Z, Y, X[, C])`` for stacks, in the file's dtype; an alpha channel
that is constant (fully opaque, say) is dropped. Writers never overwrite an
existing file unless asked, and write to a temporary name in the same folder
before renaming, so a failed write leaves neither a partial file nor a temporary one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cytolens.errors import ImageReadError, InvalidImageError, InvalidParameterError, OutputExistsError

TIFF_SUFFIXES = (".tif", ".tiff")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_SUFFIXES = TIFF_SUFFIXES + OTHER_SUFFIXES
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


# --- reading ---------------------------------------------------------------------------


def _drop_constant_alpha(image: np.ndarray) -> np.ndarray:
    """Drop the last channel (alpha) when it holds one value; gray + alpha becomes (Y, X)."""
    alpha = image[..., -1]
    if np.all(alpha == alpha.flat[0]):
        image = image[..., :-1]
        if image.shape[-1] == 1:
            image = image[..., 0]
    return image


def _read_tiff(path: Path) -> tuple[np.ndarray, str | None, bool]:
    """The first series, its axes, and whether its last sample is an alpha channel."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        image = series.asarray()
        axes = series.axes
        page = series.keyframe
        has_alpha = (page.photometric == tifffile.PHOTOMETRIC.RGB and page.samplesperpixel == 4) or any(
            sample in (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
            for sample in page.extrasamples)
    return image, axes, has_alpha


def _to_channels_last(image: np.ndarray, axes: str | None) -> np.ndarray:
    """Use OME/ImageJ/tifffile axes when present: squeeze singleton axes, move C last.

    Samples (``S``, as in RGB) count as channels; when a file has both ``C`` and ``S``
    they are merged into one channel axis (C-major).
    """
    if not axes or len(axes) != image.ndim:
        return image
    axes = axes.upper()
    if "S" in axes and "C" in axes:
        image = np.moveaxis(image, [axes.index("C"), axes.index("S")], [-2, -1])
        image = image.reshape(image.shape[:-2] + (-1,))
        axes = axes.replace("C", "").replace("S", "") + "C"
    axes = axes.replace("S", "C")
    keep = [i for i, a in enumerate(axes) if image.shape[i] > 1 or a in "YX"]
    image = image.reshape([image.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "C" in axes and axes.index("C") != len(axes) - 1:
        image = np.moveaxis(image, axes.index("C"), -1)
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF/OME-TIFF, PNG or JPEG image as a numpy array, channels last.

    Parameters
    ----------
    path : str or path-like
        A ``.tif``/``.tiff`` (OME-TIFF and ImageJ TIFF included), ``.png``,
        ``.jpg``/``.jpeg``, ``.bmp`` or ``.gif`` file.

    Returns
    -------
    ndarray
        ``(Y, X)`` or ``(Y, X, C)`` for a 2D image, ``(T|Z, Y, X[, C])`` for a
        stack, in the file's dtype. Axes of length 1 (other than Y and X) are
        squeezed; an alpha channel that is constant is dropped, one that varies is
        kept as the last channel.

    Raises
    ------
    ImageReadError
        The file is missing, is a folder, has an unsupported suffix or cannot be decoded.
    InvalidImageError
        The file holds an empty image.

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
        raise ImageReadError(f"file not found: {path}; check the path and the current folder")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file; pass one image file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(
            f"{path}: unsupported file type {suffix or '(no suffix)'}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if path.stat().st_size == 0:  # decoders word this obscurely (pillow: "can not handle the given uri")
        raise ImageReadError(f"{path} is an empty file (0 bytes); was it copied or saved completely?")
    try:
        if suffix in TIFF_SUFFIXES:
            image, axes, has_alpha = _read_tiff(path)
            image = _to_channels_last(image, axes)
        else:
            import imageio.v3 as iio

            image = np.asarray(iio.imread(path, plugin="pillow"))
            if image.ndim == 4 and image.shape[0] == 1:  # a single-frame GIF
                image = image[0]
            # imageio returns 2 channels for gray + alpha, 4 for RGB + alpha
            has_alpha = image.ndim >= 3 and image.shape[-1] in (2, 4)
    except Exception as exc:  # decoders raise many types; the user needs one message
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageReadError(
            f"cannot read {path} as an image ({reason}); check that it is a valid {suffix} file, "
            "not a damaged or renamed one") from None
    if image.size == 0:
        raise InvalidImageError(f"{path} holds an empty image (shape {image.shape})")
    return _drop_constant_alpha(image) if has_alpha else image


# --- writing ---------------------------------------------------------------------------


def make_folder(folder: str | os.PathLike) -> Path:
    """Create an output folder and its parents; OutputExistsError when a file stands in the way.

    >>> import tempfile
    >>> blocker = Path(tempfile.mkdtemp()) / "results"
    >>> _ = blocker.write_text("a file, not a folder")
    >>> make_folder(blocker / "run1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cytolens.errors.OutputExistsError: cannot make the folder .../results/run1: .../results is a file, not a folder; choose another output
    """
    folder = check_output_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Raise OutputExistsError when a file stands where ``folder`` or one of its parents would be.

    For commands that check their output before long work; :func:`make_folder` creates it.
    """
    folder = Path(folder)
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise OutputExistsError(f"cannot make the folder {folder}: {blocking} is a file, not a folder; "
                                "choose another output")
    return folder


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``writer(tmp_path)`` and rename the result to ``path``.

    The temporary file is a hidden file in the same folder with the same suffix;
    it is removed when ``writer`` fails, and ``path`` is then left as it was.

    Parameters
    ----------
    path : str or path-like
        The file to write; missing parent folders are created.
    writer : callable
        Writes the content to the path it is given.
    overwrite : bool
        Replace ``path`` when it exists.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, ``path`` is a folder, or a file
        stands where one of its parent folders would be.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "note.txt"
    >>> _ = atomic_write(path, lambda tmp: tmp.write_text("hello"))
    >>> path.read_text()
    'hello'
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; pass a file name to write to")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    make_folder(path.parent)
    # the writer creates the temporary file itself, so it gets the usual permissions
    tmp = path.with_name(f".{path.stem}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_axes(image: np.ndarray, axes: str | None) -> str | None:
    """Validated axes, or the default: ``YX`` for 2D, ``YXC`` for 3D with at most 4
    channels last, None (unknown) otherwise."""
    if axes is None:
        if image.ndim == 2:
            return "YX"
        if image.ndim == 3 and image.shape[-1] <= 4:
            return "YXC"
        return None
    axes = axes.upper()
    if len(axes) != image.ndim or len(set(axes)) != len(axes) or not set(axes) <= set("TZCYXQ") \
            or axes.replace("C", "")[-2:] != "YX":
        raise InvalidParameterError(
            f"axes {axes!r} do not fit an image of shape {image.shape}: give one letter per dimension "
            "from T, Z, C, Y, X (each once), ending in YX or YXC, e.g. 'ZYX' or 'TYXC'")
    return axes


def _write_tiff(tmp: Path, image: np.ndarray, axes: str | None, compression: str | None) -> None:
    """uint8 (Y, X, 3) as RGB; other channel images with channels as planes (``...CYX``),
    so other readers (Fiji, napari) see channels; axes are stored in the description."""
    import tifffile

    if axes == "YXC" and image.shape[-1] == 3 and image.dtype == np.uint8:
        tifffile.imwrite(tmp, image, photometric="rgb", compression=compression)
        return
    if axes is not None and "C" in axes:
        planar = axes.replace("C", "").replace("YX", "CYX")
        image = np.moveaxis(image, axes.index("C"), planar.index("C"))
        axes = planar
    metadata = {"axes": axes} if axes else {}
    tifffile.imwrite(tmp, image, photometric="minisblack", compression=compression, metadata=metadata)


def _check_flat_image(path: Path, image: np.ndarray) -> None:
    """PNG/JPEG/BMP/GIF hold 8-bit gray, gray + alpha, RGB or RGBA (PNG also 16-bit gray)."""
    suffix = path.suffix.lower()
    channels = (2, 3, 4) if suffix in (".png", ".gif") else (3,) if suffix in (".jpg", ".jpeg") else (3, 4)
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in channels)
    dtype_ok = image.dtype == np.uint8 or (suffix == ".png" and image.dtype == np.uint16 and image.ndim == 2)
    if not (shape_ok and dtype_ok):
        raise InvalidImageError(
            f"cannot write a {image.dtype} image of shape {image.shape} as {suffix}: it holds uint8 (Y, X) or "
            f"(Y, X, C) with C in {channels}" + (" (or uint16 (Y, X))" if suffix == ".png" else "")
            + "; write a .tif to keep the data as it is, or convert it")


def write_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False, compression: str | None = "zlib",
                axes: str | None = None) -> Path:
    """Write an image: TIFF for ``.tif``/``.tiff``, otherwise PNG/JPEG/BMP/GIF by suffix.

    Parameters
    ----------
    path : str or path-like
        Output file; its suffix picks the format.
    image : ndarray
        ``(Y, X)``, ``(Y, X, C)`` channels last, or a stack such as ``(Z, Y, X)``.
    overwrite : bool
        Replace an existing file.
    compression : str or None
        TIFF compression (``"zlib"``, ``"lzw"``, ``"zstd"``, None, ...); ignored for other formats.
    axes : str, optional
        TIFF only: the image's axes, e.g. ``"ZYX"`` or ``"TYXC"``, stored in the file so
        that :func:`read_image` gives the same array back. By default ``(Y, X)`` is
        ``"YX"`` and a 3D image with at most 4 values on its last axis is ``"YXC"``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        The file exists and ``overwrite`` is False.
    InvalidParameterError
        Unsupported suffix, or ``axes`` that do not fit the image.
    InvalidImageError
        An empty image, or one the format cannot hold (e.g. float32 as PNG).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "two_channels.tif"
    >>> _ = write_image(path, np.zeros((4, 5, 2), dtype=np.float32))
    >>> read_image(path).shape
    (4, 5, 2)
    """
    path = Path(path)
    image = np.asarray(image)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InvalidParameterError(
            f"{path}: cannot write images as {suffix or '(no suffix)'}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if image.size == 0 or image.ndim < 2:
        raise InvalidImageError(f"cannot write an image of shape {image.shape}: it needs at least Y and X")
    if suffix in TIFF_SUFFIXES:
        axes = _check_axes(image, axes)

        def writer(tmp: Path) -> None:
            _write_tiff(tmp, image, axes, compression)
    else:
        if axes is not None and axes.upper() not in ("YX", "YXC"):
            raise InvalidParameterError(f"{suffix} files hold (Y, X) or (Y, X, C) images, not axes {axes!r}")
        _check_flat_image(path, image)
        import imageio.v3 as iio

        def writer(tmp: Path) -> None:
            iio.imwrite(tmp, image, extension=suffix)

    return atomic_write(path, writer, overwrite)


def label_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 when the largest label fits, else uint32.

    Examples
    --------
    >>> label_dtype(np.array([[0, 70000]]))
    dtype('uint32')
    """
    top = int(labels.max()) if labels.size else 0
    if top > np.iinfo(np.uint32).max:
        raise InvalidImageError(f"label ids reach {top}, more than uint32 holds; number the objects 1..N first "
                                "(skimage.segmentation.relabel_sequential)")
    return np.dtype(np.uint16) if top <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def write_labels(path: str | os.PathLike, labels: np.ndarray, overwrite: bool = False,
                 axes: str | None = None) -> Path:
    """Write a label image as TIFF: uint16, or uint32 when a label exceeds 65535.

    Parameters
    ----------
    path : str or path-like
        Output ``.tif`` file.
    labels : ndarray of int, shape (Y, X) or a stack (T|Z, Y, X)
        0 = background, each object one positive id.
    overwrite : bool
        Replace an existing file.
    axes : str, optional
        The stack's axes, e.g. ``"ZYX"`` for a label volume (stored in the TIFF, one page
        per plane: Fiji opens it as a Z stack, napari as a 3D labels layer); default
        ``"YX"`` for 2D, ``"Q...YX"`` (unknown leading axes) for a stack.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidImageError
        ``labels`` are not non-negative integers.
    OutputExistsError
        The file exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "labels.tif"
    >>> _ = write_labels(path, np.array([[0, 1], [2, 2]]))
    >>> read_image(path).dtype
    dtype('uint16')
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InvalidImageError(
            f"labels must be non-negative integers (0 = background), got dtype {labels.dtype}"
            + (f" with minimum {labels.min()}" if labels.size and np.issubdtype(labels.dtype, np.number) else "")
            + "; for a boolean mask use skimage.measure.label(mask)")
    if axes is None:
        axes = "YX" if labels.ndim == 2 else "Q" * (labels.ndim - 2) + "YX"  # labels have no channels
    return write_image(path, labels.astype(label_dtype(labels)), overwrite=overwrite, axes=axes)


def write_table(path: str | os.PathLike, table, overwrite: bool = False) -> Path:
    """Write a pandas DataFrame as CSV (``.csv``) or Parquet (``.parquet``/``.pq``), without its index.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> path = Path(tempfile.mkdtemp()) / "cells.csv"
    >>> _ = write_table(path, pd.DataFrame({"label": [1, 2], "area": [10.0, 12.5]}))
    >>> path.read_text().splitlines()
    ['label,area', '1,10.0', '2,12.5']
    """
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InvalidParameterError(
            f"{path}: tables are written as {', '.join(TABLE_SUFFIXES)}, not {suffix or '(no suffix)'}")
    if not isinstance(table, pd.DataFrame):
        raise InvalidParameterError(f"write_table takes a pandas DataFrame, got {type(table).__name__}")
    if suffix == ".csv":
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False), overwrite)
    return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False), overwrite)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in a folder (sorted, hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
