"""The files ``cytolens segment`` writes for an image, by name: what a results folder holds.

For an image ``<stem>.<ext>`` (``a.ome.tif`` has stem ``a``) it writes ``<stem>_labels.tif``
(the label image) and ``<stem>_cells.csv`` (the table), and when asked ``<stem>_overlay.png``,
``<stem>_rois.zip`` and ``<stem>_objects.geojson``. ``segment`` skips these files when it
reads a folder of images; ``evaluate`` reads only the label images of a results folder.

>>> from pathlib import Path
>>> sorted(p.name for p in result_files(Path("plate/a.ome.tif"), Path("out"), ("overlay",)).values())
['a_cells.csv', 'a_labels.tif', 'a_overlay.png']
>>> is_labels_file(Path("out/a_labels.tif")), is_result_file(Path("out/a_overlay.png")), is_result_file(Path("a.tif"))
(True, True, False)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXTRA_OUTPUTS", "LABEL_FILE_SUFFIXES", "file_stem", "is_labels_file", "is_result_file", "result_files"]

LABELS_SUFFIX = "_labels"
TABLE_SUFFIX = "_cells"
#: the outputs one may ask for besides labels and table: option → file name ending
EXTRA_OUTPUTS = {"overlay": "_overlay.png", "rois": "_rois.zip", "geojson": "_objects.geojson"}


#: what label images commonly add to their image's name (``img_labels.tif``, Cellpose's ``img_cp_masks.png``);
#: longer suffixes first, so ``_cp_masks`` is taken whole rather than as ``_masks``
LABEL_FILE_SUFFIXES = ("_cp_masks", "_labels", "_label", "_masks", "_mask")


def file_stem(path: Path) -> str:
    """The file name without its suffix, and without ``.ome`` for an OME-TIFF (``a.ome.tif`` → ``a``)."""
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def result_files(image_path: Path, out_dir: Path, extras: tuple[str, ...] = ()) -> dict[str, Path]:
    """Label TIFF, measurement CSV and the ``extras`` asked for (keys of :data:`EXTRA_OUTPUTS`) of one input."""
    stem = file_stem(image_path)
    outputs = {"labels": out_dir / f"{stem}{LABELS_SUFFIX}.tif", "table": out_dir / f"{stem}{TABLE_SUFFIX}.csv"}
    outputs.update({extra: out_dir / f"{stem}{EXTRA_OUTPUTS[extra]}" for extra in extras})
    return outputs


def is_labels_file(path: Path) -> bool:
    """True for a label image as ``segment`` names them (``<stem>_labels.<ext>``)."""
    return file_stem(path).endswith(LABELS_SUFFIX)


def is_result_file(path: Path) -> bool:
    """True for any file ``segment`` writes: labels, its table, an overlay, ROIs, GeoJSON."""
    name = Path(path).name.lower()
    return (is_labels_file(path) or (file_stem(path).endswith(TABLE_SUFFIX) and name.endswith(".csv"))
            or any(name.endswith(ending) for ending in EXTRA_OUTPUTS.values()))
