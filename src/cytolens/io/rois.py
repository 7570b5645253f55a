"""Label images as outlines for other viewers: ImageJ / Fiji ROI sets (``.zip``) and GeoJSON (QuPath).

Each object becomes one polygon traced along its outline (half-way between its pixel centres
and its neighbours'), named with its label so that it matches the ``label`` column of the
measurement table. Reading and writing ImageJ's format is left to ``roifile`` (the library
Cellpose uses for the same purpose); GeoJSON is plain JSON, as QuPath reads it
(a ``FeatureCollection`` of ``detection`` objects, drag-and-drop onto the image).

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


def _outlines(labels: np.ndarray, what: str):
    """(label, (N, 2) x, y outline in image coordinates) for each object of a 2D label image."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InvalidImageError(f"{what} are written from a 2D label image of non-negative integers; got "
                                f"shape {labels.shape}, dtype {labels.dtype}")
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is not None:
            yield label, object_outline(labels[box] == label) + [box[1].start, box[0].start]


def write_imagej_rois(path: str | os.PathLike, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write every object of a 2D label image as a named polygon ROI into an ImageJ ROI ``.zip``.

    The file is written under a temporary name and renamed; an existing file is replaced only
    with ``overwrite``. A label image without objects gives a zip with no ROIs. An ImageJ
    polygon has no holes, and an object in several pieces keeps only its longest outline.
    """
    from roifile import ImagejRoi, roiwrite

    rois = []
    for label, outline in _outlines(labels, "ImageJ ROIs"):
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


def write_geojson(path: str | os.PathLike, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write every object of a 2D label image as a GeoJSON polygon feature, for QuPath and GIS tools.

    Coordinates are image pixels (x right, y down, the image's top-left corner at 0, 0, as QuPath
    uses them); each feature is a QuPath ``detection`` with the object's label as its ``name`` and
    in ``properties.label``. Written through a temporary file; ``overwrite`` to replace a file.

    >>> import tempfile, json
    >>> labels = np.zeros((6, 6), np.uint16); labels[1:3, 2:5] = 7
    >>> path = write_geojson(Path(tempfile.mkdtemp()) / "cells.geojson", labels)
    >>> [feature] = json.loads(path.read_text())["features"]
    >>> feature["properties"]["label"], feature["geometry"]["type"]
    (7, 'Polygon')
    """
    import json

    features = []
    for label, outline in _outlines(labels, "GeoJSON objects"):
        ring = np.round(np.vstack([outline, outline[:1]]), 3).tolist()  # a closed ring
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": {"objectType": "detection", "name": str(label), "label": label}})
    text = json.dumps({"type": "FeatureCollection", "features": features})
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text), overwrite)


def read_imagej_rois(path: str | os.PathLike) -> list:
    """The ROIs of an ImageJ ``.roi`` or ``.zip`` file (``roifile.ImagejRoi`` objects; none for an empty zip)."""
    import zipfile

    from roifile import roiread

    path = Path(path)
    if path.suffix.lower() == ".zip" and not zipfile.ZipFile(path).namelist():
        return []
    rois = roiread(path)
    return rois if isinstance(rois, list) else [rois]


__all__ = ["object_outline", "read_imagej_rois", "write_geojson", "write_imagej_rois"]
