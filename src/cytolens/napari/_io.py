"""The plugin's readers: Cell Tracking Challenge folders and cytolens tracks tables, opened in napari.

* a CTC result folder (``mask000.tif``, … + ``res_track.txt``, what ``cytolens track -o`` writes)
  or ground truth (``01_GT`` or its ``TRA``: ``man_track000.tif``, … + ``man_track.txt``), or its
  track file itself → a Labels layer ``(T, Y, X)`` and a Tracks layer (track id, t, y, x at each
  mask's centroid) whose graph holds the parents of the track file, so napari draws divisions;
* a cytolens tracks table (``tracks.csv``: ``track_id, t, y, x`` and ``parent_track_id``;
  ``frame`` and ``parent`` are read too) → a Tracks layer, the other columns as its features.

:func:`get_ctc_reader` and :func:`get_tracks_reader` claim only these paths (``None`` otherwise, so
napari asks its other readers). A corrupt or inconsistent input (frames missing, a track file that does not match
the masks, a table missing columns) raises a one-line :class:`~cytolens.errors.CytolensError`,
which napari shows as its message. Nothing here imports napari.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import CytolensError, ImageReadError, InvalidParameterError

#: track files, by the prefix of the frames they go with
TRACK_FILES = {"man_track": "man_track.txt", "mask": "res_track.txt"}
#: the columns of a tracks table (the first name of each is what ``cytolens track`` writes)
FRAME_COLUMNS, PARENT_COLUMNS = ("t", "frame"), ("parent_track_id", "parent")

LayerData = list[tuple]


def _one_path(path) -> Path | None:
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(os.fspath(path)) if isinstance(path, str | os.PathLike) else None


def ctc_folder(path) -> Path | None:
    """The folder of frames and track file that ``path`` names (a CTC result, ``*_GT``, ``TRA``, a track file)."""
    path = _one_path(path)
    if path is None:
        return None
    if path.is_file():
        return path.parent if path.name in TRACK_FILES.values() else None
    if path.is_dir() and (path / "TRA").is_dir():
        path = path / "TRA"
    if path.is_dir() and any((path / name).is_file() for name in TRACK_FILES.values()) and _flat_frames(path):
        return path
    return None


def _flat_frames(folder: Path) -> bool:
    """Whether the folder's first numbered frame is a 2D image (3D CTC folders are left to napari's own reader).

    A folder without readable frames counts as 2D: reading it then says what is missing.
    """
    import tifffile

    from cytolens.io import ctc_frame_files

    try:
        first = next(iter(ctc_frame_files(folder).values()))
        with tifffile.TiffFile(first) as tiff:
            shape = tiff.series[0].shape
    except Exception:  # noqa: BLE001 - no frames or a damaged one: claimed, and the reader says which
        return True
    return len([n for n in shape if n > 1]) <= 2


def tracks_table_path(path) -> Path | None:
    """``path`` when it is a CSV whose header has ``track_id`` (a cytolens tracks table), else None."""
    path = _one_path(path)
    if path is None or path.suffix.lower() != ".csv" or not path.is_file():
        return None
    try:
        columns = pd.read_csv(path, nrows=0).columns
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return path if "track_id" in columns else None


def get_ctc_reader(path) -> Callable[[str], LayerData] | None:
    """npe2 ``napari_get_reader`` of CTC folders (and their track files), or None for any other path."""
    folder = ctc_folder(path)
    return None if folder is None else (lambda _path: _one_line(read_ctc_folder, folder))


def get_tracks_reader(path) -> Callable[[str], LayerData] | None:
    """npe2 ``napari_get_reader`` of cytolens tracks tables, or None for any other path."""
    table = tracks_table_path(path)
    return None if table is None else (lambda _path: _one_line(read_tracks_table, table))


def _one_line(read: Callable, path: Path) -> LayerData:
    """``read(path)``, any failure raised as a one-line CytolensError naming the path."""
    try:
        return read(path)
    except CytolensError as exc:
        raise type(exc)(" ".join(str(exc).split())) from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file: one line in napari, not a traceback
        raise ImageReadError(f"cannot read {path}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None


def _track_file(folder: Path) -> Path:
    """The track file that goes with the folder's frames (``man_track.txt`` for ``man_track*.tif``)."""
    from cytolens.io import ctc_frame_files

    first = next(iter(ctc_frame_files(folder).values())).name
    for prefix, name in TRACK_FILES.items():
        if first.startswith(prefix) and (folder / name).is_file():
            return folder / name
    present = [folder / name for name in TRACK_FILES.values() if (folder / name).is_file()]
    if len(present) != 1:
        raise ImageReadError(f"{folder}: cannot tell which of {[p.name for p in present]} goes with {first}")
    return present[0]


def centroids(movie: np.ndarray) -> pd.DataFrame:
    """``t, label, [z,] y, x, area`` of every object of a ``(T, [Z,] Y, X)`` label movie (centroids in pixels).

    Unlike :func:`cytolens.track.detections.detect` it takes a single frame (a CTC folder may have one).

    >>> movie = np.zeros((2, 4, 4), np.uint8); movie[0, :2, :2] = 3; movie[1, 1:, 1:] = 3
    >>> centroids(movie).values.tolist()
    [[0.0, 3.0, 0.5, 0.5, 4.0], [1.0, 3.0, 2.0, 2.0, 9.0]]
    """
    from scipy import ndimage as ndi

    axes = ["z", "y", "x"][-(movie.ndim - 1):]
    tables = []
    for t, frame in enumerate(movie):
        area = np.bincount(frame.ravel().astype(np.int64))
        ids = np.flatnonzero(area[1:]) + 1
        if ids.size:
            centre = np.asarray(ndi.center_of_mass(np.ones(frame.shape, np.float32), frame, ids), float)
            tables.append(pd.DataFrame({"t": t, "label": ids, **dict(zip(axes, centre.reshape(len(ids), -1).T)),
                                        "area": area[ids]}))
    columns = ["t", "label", *axes, "area"]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def read_ctc_folder(folder: Path) -> LayerData:
    """A CTC folder as a Labels layer and a Tracks layer (its graph: the track file's parents)."""
    from cytolens.io import read_ctc_masks, read_ctc_tracks
    from cytolens.metrics.tracking import validate_ctc_tracks

    track_file = _track_file(folder)
    movie = read_ctc_masks(folder)
    if movie.ndim != 3 or not np.issubdtype(movie.dtype, np.integer):
        raise ImageReadError(f"{folder}: the frames are {movie.dtype} of shape {movie.shape[1:]}; this reader opens "
                             "2D integer label images")
    lineage = read_ctc_tracks(track_file)
    present = [ids[ids > 0] for ids in map(np.unique, movie)]
    validate_ctc_tracks(lineage, present, name=str(track_file))
    name = folder.parent.name if folder.name == "TRA" else folder.name
    layers = [(movie, {"name": f"{name} masks"}, "labels")]
    table = centroids(movie)
    if not len(table):
        return layers
    table.insert(0, "track_id", table["label"])
    parents = dict(zip(lineage["label"].astype(int), lineage["parent"].astype(int)))
    table["parent_track_id"] = table["label"].map(parents).astype(np.int64)
    data = table.drop(columns=["label", "area", "parent_track_id"]).to_numpy(float)
    graph = {child: [mother] for child, mother in parents.items() if mother > 0}
    features = table[["label", "area", "parent_track_id"]]
    layers.append((data, {"name": f"{name} tracks", "graph": graph, "features": features}, "tracks"))
    return layers


def _column(table: pd.DataFrame, names: tuple[str, ...], path: Path, required: bool = True) -> str | None:
    found = next((name for name in names if name in table.columns), None)
    if found is None and required:
        raise InvalidParameterError(f"{path.name} lacks a {' or '.join(names)} column; a cytolens tracks table has "
                                    f"track_id, t, y, x and parent_track_id (it has {list(table.columns)[:8]})")
    return found


def read_tracks_table(path: Path) -> LayerData:
    """A cytolens tracks table (``track_id, t, [z,] y, x``, ``parent_track_id``) as a Tracks layer."""
    table = pd.read_csv(path)
    frame, parent = _column(table, FRAME_COLUMNS, path), _column(table, PARENT_COLUMNS, path, required=False)
    for name in ("y", "x"):
        _column(table, (name,), path)
    coordinates = ["z", "y", "x"] if "z" in table.columns else ["y", "x"]
    needed = ["track_id", frame, *coordinates] + ([parent] if parent else [])
    values = table[needed].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        bad = values.columns[values.isna().any()].tolist()
        raise InvalidParameterError(f"{path.name}: columns {bad} have empty or non-numeric values")
    if not len(values):
        raise InvalidParameterError(f"{path.name} holds no tracks")
    ids, frames = values["track_id"], values[frame]
    if (ids != ids.round()).any() or (frames != frames.round()).any() or (frames < 0).any():
        raise InvalidParameterError(f"{path.name}: track_id and {frame} must be whole numbers (frames >= 0)")
    twice = values.duplicated(["track_id", frame])
    if twice.any():
        first = values[twice].iloc[0]
        raise InvalidParameterError(f"{path.name}: track {int(first['track_id'])} has more than one row in "
                                    f"{frame} {int(first[frame])}")
    order = np.lexsort((frames.to_numpy(), ids.to_numpy()))
    values, rest = values.iloc[order], table.drop(columns=needed).iloc[order].reset_index(drop=True)
    data = values[["track_id", frame, *coordinates]].to_numpy(float)
    graph: dict[int, list[int]] = {}
    if parent:
        known = set(values["track_id"].astype(int))
        parents = values.groupby("track_id")[parent].first().astype(int)
        graph = {int(child): [int(mother)] for child, mother in parents.items() if mother > 0}
        orphans = sorted(child for child, (mother,) in graph.items() if mother not in known)
        if orphans:
            raise InvalidParameterError(f"{path.name}: tracks {orphans[:5]} name a {parent} that is not a track_id")
        if parent not in rest.columns:
            rest[parent] = values[parent].to_numpy()
    return [(data, {"name": path.stem, "graph": graph, "features": rest}, "tracks")]
