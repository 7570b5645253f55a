"""Label images as ImageJ / Fiji ROI sets (``.zip``), for reviewing and editing objects in the ROI Manager.

Each object becomes one polygon ROI traced along its outline (the boundary between its pixels
and the others), named with its label so that it matches the ``label`` column of the
measurement table. Reading and writing the format is left to ``roifile`` (the library
Cellpose uses for the same purpose).

>>> import tempfile, numpy as np
>>> labels = np.zeros((10, 12), np.uint16); labels[2:5, 3:7] = 4
>>> path = write_imagej_rois(Path(tempfile.mkdtemp()) / "cells_rois.zip", labels)
>>> [roi] = read_imagej_rois(path)
>>> roi.name, roi.coordinates().min(axis=0).tolist(), roi.coordinates().max(axis=0).tolist()  # x, y
('4', [3.0, 2.0], [7.0, 5.0])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidImageError
from cytolens.io.images import atomic_write


def object_outline(mask: np.ndarray) -> np.ndarray:
    """``(N, 2)`` x, y vertices (ImageJ pixel coordinates: pixel (row, col) spans x in [col, col + 1])
    of the longest outline of a boolean mask, traced half-way between its pixel centres and its
    neighbours'; the polygon encloses the mask's pixel centres.

    >>> mask = np.zeros((4, 4), bool); mask[1:3, 1:3] = True
    >>> outline = object_outline(mask)
    >>> float(outline[:, 0].min()), float(outline[:, 0].max())  # pixel centres 1.5 and 2.5, traced at 1 and 3
    (1.0, 3.0)
    """
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    rows_cols = max(contours, key=len) - 1  # back from the padding
    # find_contours puts pixel (r, c)'s centre at (r, c), ImageJ at x = c + 0.5, y = r + 0.5
    return np.stack([rows_cols[:, 1] + 0.5, rows_cols[:, 0] + 0.5], axis=1)


def write_imagej_rois(path: str | os.PathLike, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write every object of a 2D label image as a named polygon ROI into an ImageJ ROI ``.zip``.

    The file is written under a temporary name and renamed; an existing file is replaced only
    with ``overwrite``. A label image without objects gives a zip with no ROIs. An ImageJ
    polygon has no holes, and an object in several pieces keeps only its longest outline.
    """
    from roifile import ImagejRoi, roiwrite

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InvalidImageError(f"ImageJ ROIs are written from a 2D label image of non-negative integers; got "
                                f"shape {labels.shape}, dtype {labels.dtype}")
    rois = []
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        outline = object_outline(labels[box] == label)
        outline += [box[1].start, box[0].start]  # back to image coordinates (x, y)
        roi = ImagejRoi.frompoints(outline)
        roi.name = str(label)
        rois.append(roi)

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)  # roifile appends to an existing zip
        if rois:
            roiwrite(tmp, rois)
        else:
            import zipfile

            zipfile.ZipFile(tmp, "w").close()

    return atomic_write(Path(path), write, overwrite)


def read_imagej_rois(path: str | os.PathLike) -> list:
    """The ROIs of an ImageJ ``.roi`` or ``.zip`` file (``roifile.ImagejRoi`` objects; none for an empty zip)."""
    import zipfile

    from roifile import roiread

    path = Path(path)
    if path.suffix.lower() == ".zip" and not zipfile.ZipFile(path).namelist():
        return []
    rois = roiread(path)
    return rois if isinstance(rois, list) else [rois]


__all__ = ["object_outline", "read_imagej_rois", "write_imagej_rois"]
