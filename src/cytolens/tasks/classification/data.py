"""Training items, network inputs and class weights of classification (numpy only).

* :func:`find_items` — the annotated items of a folder per class or a CSV table;
* :func:`select_channels` — ``(Y, X[, C])`` → ``(C', Y, X)`` with the channels a model takes;
* :func:`cell_crops` — fixed-size crops centred on each object of a label image, the
  object's mask alongside, zero-padded where a crop passes the image border;
* :func:`class_weights` — ``N_total / (N_class × N_classes)`` per class.

>>> class_weights([0, 0, 0, 1], 2).tolist()
[0.6666666666666666, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError


@dataclass(frozen=True)
class Item:
    """One annotated training item: an image file (or one cell of it) and its class."""

    id: str
    path: Path
    klass: str
    labels: Path | None = None  # label image of the cell's image (cell tables)
    label: int | None = None  # the cell's id in it


def class_weights(targets: Sequence[int], n_classes: int) -> np.ndarray:
    """Weight of each class, ``N_total / (N_class × N_classes)`` (Box 2); a class absent from ``targets`` gets 0.

    Over the whole training set every class then carries the same total weight; the
    mean weight of an item is 1. Classes absent from ``targets`` (possible in a batch)
    weigh 0, as no item of theirs is there to weigh.

    >>> class_weights([0, 1, 1, 1, 2, 2], 3).round(3).tolist()
    [2.0, 0.667, 1.0]
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.size == 0:
        raise InvalidParameterError("no targets given: cannot compute class weights")
    if targets.min() < 0 or targets.max() >= n_classes:
        raise InvalidParameterError(f"targets must be class indices in [0, {n_classes}), got {targets.min()} to "
                                    f"{targets.max()}")
    counts = np.bincount(targets, minlength=n_classes).astype(float)
    return np.divide(targets.size, counts * n_classes, out=np.zeros(n_classes), where=counts > 0)


def _folder_items(root: Path) -> list[Item]:
    from cytolens.io import list_images

    if not root.is_dir():
        raise InvalidParameterError(f"data.images: folder not found: {root}")
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in list_images(folder):
            items.append(Item(f"{folder.name}/{path.stem}", path, folder.name))
    return items


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _table_items(table: Path, class_column: str = "class") -> list[Item]:
    import pandas as pd

    if not table.is_file():
        raise InvalidParameterError(f"data.table: file not found: {table}")
    rows = pd.read_csv(table, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", class_column) if c not in rows.columns]
    if missing:
        raise InvalidParameterError(f"{table} lacks column(s) {', '.join(missing)} (columns: "
                                    f"{', '.join(rows.columns)}); it needs path and class")
    cells = "labels" in rows.columns and "label" in rows.columns
    items = []
    for number, row in enumerate(rows.to_dict("records"), start=2):
        if not row["path"] or not row[class_column]:
            raise InvalidParameterError(f"{table} line {number}: empty path or class")
        path = table.parent / row["path"]
        if cells:
            try:
                label = int(row["label"])
            except ValueError:
                raise InvalidParameterError(f"{table} line {number}: label {row['label']!r} is not a whole "
                                            "number") from None
            items.append(Item(f"{row['path']}#{label}", path, row[class_column], table.parent / row["labels"], label))
        else:
            items.append(Item(row["path"], path, row[class_column]))
    if len({i.id for i in items}) != len(items):
        raise InvalidParameterError(f"{table} lists the same image (or cell) more than once")
    return items


def find_items(data) -> tuple[list[Item], list[str]]:
    """The annotated items of a :class:`~.config.ClassificationDataConfig` and the class order.

    Raises a one-line :class:`~cytolens.errors.InvalidParameterError` for a class of the
    table that ``data.classes`` does not list, and for a class without any image.
    """
    if data.images is not None:
        items = _folder_items(Path(data.images))
        found = _class_folders(Path(data.images))
        where = f"data.images ({data.images})"
    else:
        items = _table_items(Path(data.table))
        found = sorted({i.klass for i in items})
        where = f"data.table ({data.table})"
    classes = list(data.classes) if data.classes is not None else found
    known = set(classes)
    unknown = sorted({i.klass for i in items} - known)
    if unknown:
        raise InvalidParameterError(f"{where} has class(es) {', '.join(map(repr, unknown))} that are not among "
                                    f"data.classes ({', '.join(classes)})")
    counts = {c: 0 for c in classes}
    for item in items:
        counts[item.klass] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise InvalidParameterError(f"class(es) {', '.join(map(repr, empty))} have no images in {where}; add "
                                    "images or remove the class")
    if len(classes) < 2:
        raise InvalidParameterError(f"{where} holds {len(classes)} class; a classifier needs at least 2")
    return items, classes


def select_channels(image: np.ndarray, channels: Sequence[int] | None, where: str = "the image",
                    expected: int | None = None) -> np.ndarray:
    """``(Y, X)`` or ``(Y, X, C)`` → ``(C', Y, X)`` float32 with ``channels`` of C (all when None).

    ``expected`` is the channel count a model takes when ``channels`` is None; another
    count is an :class:`~cytolens.errors.InvalidImageError`, as is a channel index the
    image lacks.

    >>> select_channels(np.zeros((4, 5, 3)), [0, 2]).shape
    (2, 4, 5)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise InvalidImageError(f"{where} has shape {image.shape}; expected (Y, X) or (Y, X, C)")
    n = image.shape[-1]
    if channels is None:
        if expected is not None and n != expected:
            raise InvalidImageError(f"{where} has {n} channel(s) but the model takes {expected}")
        channels = range(n)
    elif max(channels) >= n:
        raise InvalidImageError(f"{where} has {n} channel(s) but the model uses channel(s) "
                                f"{', '.join(map(str, channels))} (0 = first)")
    return np.ascontiguousarray(np.moveaxis(image[..., list(channels)], -1, 0), dtype=np.float32)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """``(C, Y, X)`` → ``(C, size, size)``, anti-aliased when shrinking (aspect ratio not kept)."""
    if image.shape[1:] == (size, size):
        return image.astype(np.float32, copy=False)
    from skimage.transform import resize as sk_resize

    shrinking = min(image.shape[1:]) > size
    return sk_resize(image, (image.shape[0], size, size), order=1, anti_aliasing=shrinking,
                     preserve_range=True).astype(np.float32)


def cell_crops(image: np.ndarray, labels: np.ndarray, size: int, ids: Sequence[int] | None = None,
               where: str = "the label image") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of side ``size`` centred on each object's centroid, and the object's mask in each.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X)
    labels : ndarray of int, shape (Y, X); 0 = background.
    size : side of the crops in pixels; parts outside the image are 0 in both outputs.
    ids : the objects to crop (default every object, sorted).

    Returns
    -------
    crops : (N, C, size, size) float32; masks : (N, size, size) float32 (1 on the object);
    ids : (N,) the object ids.

    >>> image = np.arange(25, dtype=float).reshape(1, 5, 5); labels = np.zeros((5, 5), int); labels[0, 0] = 3
    >>> crops, masks, ids = cell_crops(image, labels, 3)
    >>> crops[0, 0].tolist(), masks[0].tolist(), ids.tolist()
    ([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 5.0, 6.0]], [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [3])
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != image.shape[1:]:
        raise InvalidImageError(f"{where} has shape {labels.shape} but the image is {image.shape[1:]} (Y, X)")
    present = np.unique(labels[labels > 0])
    if present.size == 0:
        raise InvalidImageError(f"{where} is empty: it has no objects (all pixels are 0) to classify")
    ids = present if ids is None else np.asarray(ids, dtype=np.int64)
    absent = np.setdiff1d(ids, present)
    if absent.size:
        raise InvalidImageError(f"{where} has no object(s) {absent[:5].tolist()}")
    centres = ndi.center_of_mass(np.ones_like(labels, dtype=np.uint8), labels, ids)
    half = size // 2
    pad = size
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    padded_labels = np.pad(labels, pad)
    crops = np.empty((len(ids), image.shape[0], size, size), np.float32)
    masks = np.empty((len(ids), size, size), np.float32)
    for k, (label, (cy, cx)) in enumerate(zip(ids, centres)):
        y0, x0 = round(cy) - half + pad, round(cx) - half + pad
        crops[k] = padded[:, y0:y0 + size, x0:x0 + size]
        masks[k] = padded_labels[y0:y0 + size, x0:x0 + size] == label
    return crops, masks, np.asarray(ids)
