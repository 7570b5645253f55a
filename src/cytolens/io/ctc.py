"""Cell Tracking Challenge (CTC) folders: per-frame masks and ``L B E P`` track files.

A CTC result folder holds ``mask000.tif``, ``mask001.tif``, … and ``res_track.txt``;
a ground-truth folder ``*_GT/TRA`` holds ``man_track000.tif``, … and
``man_track.txt``; ``*_GT/SEG`` holds ``man_seg<t>.tif`` for some frames only.
Each line of a track file is ``label begin_frame end_frame parent_label``
(parent 0 = no parent).

Example
-------
>>> import tempfile, numpy as np
>>> folder = Path(tempfile.mkdtemp())
>>> movie = np.zeros((2, 8, 8), np.uint16); movie[:, 2:4, 2:4] = 1
>>> tracks = pd.DataFrame({"label": [1], "begin": [0], "end": [1], "parent": [0]})
>>> _ = write_ctc_result(folder, movie, tracks)
>>> read_ctc_masks(folder).shape, read_ctc_tracks(folder / "res_track.txt").values.tolist()
((2, 8, 8), [[1, 0, 1, 0]])
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import ImageReadError, InvalidImageError, OutputExistsError
from cytolens.io.images import atomic_write, label_dtype, make_folder, read_image

TRACK_COLUMNS = ["label", "begin", "end", "parent"]
_FRAME_NUMBER = re.compile(r"(\d+)\.tiff?$", re.IGNORECASE)


def ctc_frame_files(folder: str | os.PathLike) -> dict[int, Path]:
    """Map frame number → file for ``mask*.tif``, ``man_track*.tif``, ``man_seg*.tif`` or ``t*.tif``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"CTC folder not found: {folder}")
    frames: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        found = _FRAME_NUMBER.search(path.name)
        if found and not path.name.startswith("."):
            frames[int(found.group(1))] = path
    if not frames:
        raise ImageReadError(f"{folder} holds no numbered TIFF frames (mask000.tif, man_track000.tif, t000.tif, ...)")
    return frames


def read_ctc_masks(folder: str | os.PathLike) -> np.ndarray:
    """Read all numbered frames of a CTC folder as one ``(T, Y, X)`` label movie.

    Frames are placed at their frame number; a missing number raises, since the
    CTC format requires every frame of a result.
    """
    frames = ctc_frame_files(folder)
    numbers = sorted(frames)
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        raise InvalidImageError(f"{folder}: frames {missing[:5]} are missing")
    images = [read_image(frames[t]) for t in numbers]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise InvalidImageError(f"{folder}: frames have different shapes {sorted(shapes)}")
    return np.stack(images)


def read_ctc_tracks(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``res_track.txt`` / ``man_track.txt`` file as a table (label, begin, end, parent)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"track file not found: {path}")
    text = path.read_text().strip()
    if not text:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in TRACK_COLUMNS})
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts):
            raise InvalidImageError(f"{path}:{number}: expected 'L B E P' integers, got {line!r}")
        rows.append([int(p) for p in parts])
    return pd.DataFrame(rows, columns=TRACK_COLUMNS)


def write_ctc_tracks(path: str | os.PathLike, tracks: pd.DataFrame, overwrite: bool = False) -> Path:
    """Write a track table as ``L B E P`` lines."""
    table = tracks[TRACK_COLUMNS].astype(np.int64)
    lines = "".join(f"{r.label} {r.begin} {r.end} {r.parent}\n" for r in table.itertuples())
    return atomic_write(path, lambda tmp: tmp.write_text(lines), overwrite)


def write_ctc_result(folder: str | os.PathLike, masks: np.ndarray, tracks: pd.DataFrame,
                     overwrite: bool = False) -> Path:
    """Write a CTC result folder: ``mask%03d.tif`` per frame (``%04d`` beyond 999 frames) and ``res_track.txt``."""
    folder = Path(folder)
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise InvalidImageError(f"masks must be a (T, Y, X) movie, got shape {masks.shape}")
    width = 3 if len(masks) <= 1000 else 4
    targets = [folder / f"mask{t:0{width}d}.tif" for t in range(len(masks))] + [folder / "res_track.txt"]
    if not overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise OutputExistsError(f"{existing[0]} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    make_folder(folder)
    dtype = label_dtype(masks)
    import tifffile

    for t, frame in enumerate(masks):
        atomic_write(targets[t], lambda tmp, f=frame: tifffile.imwrite(tmp, f.astype(dtype), compression="zlib"),
                     overwrite=True)
    write_ctc_tracks(targets[-1], tracks, overwrite=True)
    return folder
