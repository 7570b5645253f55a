"""Detections: one row per object per frame (centroid, area, intensity), from label movies or tables.

Label movies are ``(T, Y, X)`` integer arrays, 0 = background; each positive id is
one object within its frame (ids need not agree between frames). Tables have at
least the columns ``t, y, x``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import relabel_sequential

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.measure import DENSE_ID_LIMIT

DETECTION_COLUMNS = ["t", "label", "y", "x", "area", "mean_intensity", "touches_border"]
#: mask overlaps between consecutive frames, ``{t: (rows_t, rows_t1, pixels)}`` (:func:`label_overlaps`)
Overlaps = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
#: objects of the same frame whose masks touch, ``{t: (rows_a, rows_b)}`` (:func:`label_contacts`)
Contacts = dict[int, tuple[np.ndarray, np.ndarray]]


def as_label_movie(labels: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Validate a label movie and return it as one ``(T, Y, X)`` integer array.

    Raises :class:`~cytolens.errors.InvalidImageError` for frames of different shapes,
    fewer than two frames, non-integer or negative labels, or a movie without objects.
    A movie with ids above ``DENSE_ID_LIMIT`` (2**20) comes back with each frame's objects
    numbered 1..N (a result's ``label`` column refers to that movie).

    Examples
    --------
    >>> as_label_movie([np.ones((2, 2), np.uint8), np.ones((2, 2), np.uint8)]).shape
    (2, 2, 2)
    """
    if isinstance(labels, np.ndarray):
        movie = labels
    else:
        frames = [np.asarray(f) for f in labels]
        shapes = sorted({f.shape for f in frames})
        if len(shapes) > 1:
            raise InvalidImageError(f"all frames of a movie must have the same shape; got {shapes}")
        movie = np.stack(frames) if frames else np.zeros((0, 0, 0), np.uint16)
    if movie.ndim != 3:
        raise InvalidImageError(
            f"labels must be a (T, Y, X) movie of label images; got shape {movie.shape}"
            + (" (a single frame: tracking needs at least two)" if movie.ndim == 2 else ""))
    if movie.shape[0] < 2:
        raise InvalidImageError(f"tracking needs at least two frames; got {movie.shape[0]} (shape {movie.shape})")
    if movie.shape[1] == 0 or movie.shape[2] == 0:
        raise InvalidImageError(f"frames are empty (shape {movie.shape})")
    if movie.dtype == bool or not np.issubdtype(movie.dtype, np.integer):
        if np.issubdtype(movie.dtype, np.floating) and np.all(np.isfinite(movie)) and np.all(movie == np.round(movie)):
            movie = movie.astype(np.int64)
        else:
            raise InvalidImageError(
                f"labels must be integer label images (0 = background), got dtype {movie.dtype}; "
                "segment the movie first or pass it as the image to segment")
    if movie.min() < 0:
        raise InvalidImageError("labels must be non-negative (0 = background)")
    if not movie.any():
        raise InvalidImageError("the label movie holds no objects in any frame: nothing to track")
    if movie.max() > DENSE_ID_LIMIT:  # tables indexed by id downstream: number each frame's objects 1..N
        movie = np.stack([relabel_sequential(frame)[0] for frame in movie])
    return movie


def detect(labels: np.ndarray, image: np.ndarray | None = None) -> pd.DataFrame:
    """Measure every object of a label movie.

    Parameters
    ----------
    labels : ndarray, shape (T, Y, X)
        Integer label images, 0 = background.
    image : ndarray, shape (T, Y, X) or (T, Y, X, C), optional
        Intensities; ``mean_intensity`` is the mean over channels (NaN without an image).

    Returns
    -------
    DataFrame
        ``t, label, y, x, area, mean_intensity, touches_border``, sorted by ``t, label``.

    Examples
    --------
    >>> movie = np.zeros((2, 6, 6), np.uint8); movie[0, 1:3, 1:3] = 4; movie[1, 2:4, 2:4] = 7
    >>> detect(movie)[["t", "label", "y", "x", "area"]].values.tolist()
    [[0.0, 4.0, 1.5, 1.5, 4.0], [1.0, 7.0, 2.5, 2.5, 4.0]]
    """
    movie = as_label_movie(labels)
    intensity = None
    if image is not None:
        intensity = np.asarray(image, dtype=float)
        if intensity.ndim == 4:
            intensity = intensity.mean(axis=-1)
        if intensity.shape != movie.shape:
            raise InvalidImageError(f"image shape {np.shape(image)} does not match labels shape {movie.shape}")
    height, width = movie.shape[1:]
    yy, xx = np.mgrid[0:height, 0:width]
    yy, xx = yy.ravel().astype(float), xx.ravel().astype(float)
    border = np.zeros((height, width), bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    border = border.ravel()
    tables = []
    for t, frame in enumerate(movie):
        flat = frame.ravel().astype(np.int64)
        size = int(flat.max()) + 1
        area = np.bincount(flat, minlength=size)
        ids = np.flatnonzero(area)
        ids = ids[ids > 0]
        if not len(ids):
            continue
        a = area[ids].astype(float)
        table = {
            "t": np.full(len(ids), t, np.int64),
            "label": ids.astype(np.int64),
            "y": np.bincount(flat, yy, size)[ids] / a,
            "x": np.bincount(flat, xx, size)[ids] / a,
            "area": a,
            "mean_intensity": (np.bincount(flat, intensity[t].ravel(), size)[ids] / a) if intensity is not None
            else np.full(len(ids), np.nan),
            "touches_border": np.isin(ids, flat[border]),
        }
        tables.append(pd.DataFrame(table))
    return pd.concat(tables, ignore_index=True)


def detections_from_table(table: pd.DataFrame, *, frame_col: str = "t",
                          coordinate_cols: Sequence[str] = ("y", "x")) -> pd.DataFrame:
    """Normalise a table of detections (one row per object per frame) to the detection columns.

    ``label`` defaults to the row number within each frame (1-based); other detection
    columns are filled with NaN/False when missing. Extra columns are kept.
    """
    missing = [c for c in [frame_col, *coordinate_cols] if c not in table]
    if missing:
        raise InvalidParameterError(f"detection table lacks columns {missing}; it has {list(table.columns)}")
    if len(coordinate_cols) != 2:
        raise InvalidParameterError(f"coordinate_cols must name two columns (y, x), got {list(coordinate_cols)}")
    out = table.rename(columns={frame_col: "t", coordinate_cols[0]: "y", coordinate_cols[1]: "x"}).copy()
    if out[["t", "y", "x"]].isna().any().any():
        raise InvalidParameterError("detection table has missing frame or coordinate values")
    frames = pd.to_numeric(out["t"], errors="coerce")
    bad = frames.isna() | (frames < 0) | (frames != frames.round())
    if bad.any():
        raise InvalidParameterError(f"detection table's frame column {frame_col!r} must hold whole numbers >= 0 "
                                    f"(frame indices); found {out['t'][bad].unique()[:5].tolist()}")
    out["t"] = frames.astype(np.int64)
    if "label" not in out:
        out["label"] = out.groupby("t").cumcount() + 1
    for column, fill in (("area", np.nan), ("mean_intensity", np.nan), ("touches_border", False)):
        if column not in out:
            out[column] = fill
    if out["t"].nunique() < 2:
        raise InvalidParameterError("tracking needs detections in at least two frames")
    return out.sort_values(["t", "label"], kind="stable").reset_index(drop=True)


def mask_overlaps(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels shared by the objects of two label images of one shape.

    Returns ``(labels_first, labels_second, pixels)``, one entry per pair of objects that
    overlap, sorted by ``(labels_first, labels_second)``.

    >>> a = np.array([[1, 1, 0], [2, 2, 0]]); b = np.array([[3, 0, 0], [3, 3, 4]])
    >>> [x.tolist() for x in mask_overlaps(a, b)]
    [[1, 2], [3, 3], [1, 2]]
    """
    a, b = np.asarray(first).ravel(), np.asarray(second).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    a, b = a[both].astype(np.int64), b[both].astype(np.int64)
    base = int(b.max()) + 1
    codes, counts = np.unique(a * base + b, return_counts=True)
    return codes // base, codes % base, counts


def _row_lookup(detections: pd.DataFrame) -> dict[int, np.ndarray]:
    """Per frame, an array mapping a label to its detection row number (-1 = none)."""
    lookup: dict[int, np.ndarray] = {}
    for t, frame in detections.groupby("t"):
        table = np.full(int(frame["label"].max()) + 1, -1, np.int64)
        table[frame["label"].to_numpy(np.int64)] = frame.index.to_numpy()
        lookup[int(t)] = table
    return lookup


def label_overlaps(labels: np.ndarray, detections: pd.DataFrame) -> Overlaps:
    """Pixel overlaps between objects of consecutive frames.

    Returns ``{t: (rows_t, rows_t1, pixels)}``: detection row numbers in frame ``t`` and
    ``t + 1`` whose masks share ``pixels`` > 0 pixels.
    """
    movie = np.asarray(labels)
    lookup = _row_lookup(detections)
    overlaps = {}
    for t in range(len(movie) - 1):
        if t not in lookup or t + 1 not in lookup:
            continue
        la, lb, counts = mask_overlaps(movie[t], movie[t + 1])
        if len(counts):
            overlaps[t] = (lookup[t][la], lookup[t + 1][lb], counts.astype(float))
    return overlaps


def touching_labels(frame: np.ndarray, reach: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of objects of one label image whose masks come within ``reach`` pixels (city-block).

    Returns ``(labels_a, labels_b)`` with ``labels_a < labels_b``, sorted.

    >>> frame = np.array([[1, 1, 0, 2, 0, 0, 3]])
    >>> [x.tolist() for x in touching_labels(frame)]
    [[1], [2]]
    """
    frame = np.asarray(frame)
    height, width = frame.shape
    codes = []
    base = int(frame.max()) + 1
    for dy in range(reach + 1):
        for dx in range(-reach, reach + 1):
            if abs(dy) + abs(dx) > reach or (dy == 0 and dx <= 0):
                continue  # each offset once: the other half-plane gives the same pairs
            a = frame[: height - dy, max(0, -dx) : width - max(0, dx)]
            b = frame[dy:, max(0, dx) : width - max(0, -dx)]
            pair = (a > 0) & (b > 0) & (a != b)
            if pair.any():
                lo, hi = np.minimum(a[pair], b[pair]).astype(np.int64), np.maximum(a[pair], b[pair]).astype(np.int64)
                codes.append(np.unique(lo * base + hi))
    if not codes:
        empty = np.zeros(0, np.int64)
        return empty, empty
    codes = np.unique(np.concatenate(codes))
    return codes // base, codes % base


def label_contacts(labels: np.ndarray, detections: pd.DataFrame, reach: int = 2) -> Contacts:
    """Objects of the same frame that touch (:func:`touching_labels`), as ``{t: (rows_a, rows_b)}`` detection rows."""
    movie = np.asarray(labels)
    lookup = _row_lookup(detections)
    contacts = {}
    for t, rows in lookup.items():
        la, lb = touching_labels(movie[t], reach)
        if len(la):
            contacts[t] = (rows[la], rows[lb])
    return contacts


def read_label_movie(path: str | os.PathLike) -> np.ndarray:
    """Read labels from a ``(T, Y, X)`` TIFF or a folder of per-frame masks (CTC-numbered or sorted by name)."""
    from cytolens.errors import ImageReadError
    from cytolens.io import list_images, read_ctc_masks, read_image

    path = Path(path)
    if path.is_dir():
        try:
            return as_label_movie(read_ctc_masks(path))
        except ImageReadError:
            files = list_images(path)
            if not files:
                raise ImageReadError(f"{path} holds no image files") from None
            return as_label_movie([read_image(f) for f in files])
    return as_label_movie(read_stack(path))


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """Read a multi-frame image file as ``(T, Y, X[, C])``, frames first.

    TIFF stacks are read as stored (a 3-frame stack is not mistaken for RGB);
    a ``(T, C, Y, X)`` TIFF with C <= 4 becomes channels-last. Other formats go
    through :func:`cytolens.io.read_image`.
    """
    from cytolens.errors import ImageReadError
    from cytolens.io import read_image

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return read_image(path)
    import tifffile

    try:
        stack = tifffile.imread(path)
    except Exception as exc:  # decoders raise many types; the user needs one message
        raise ImageReadError(f"cannot read {path} as a TIFF stack: {exc}") from None
    if stack.ndim == 4 and stack.shape[1] <= 4 < stack.shape[-1]:
        stack = np.moveaxis(stack, 1, -1)
    return stack


@dataclass
class Movie:
    """Detections as arrays, indexed by positional row: what every linking step and link cost reads.

    >>> table = pd.DataFrame({"t": [0, 0, 1], "y": [1.0, 5.0, 2.0], "x": [1.0, 5.0, 1.0], "area": [9.0, 4.0, 9.0]})
    >>> Movie.from_table(table).frames
    {0: array([0, 1]), 1: array([2])}
    """

    points: np.ndarray  # (N, 2) y, x
    area: np.ndarray  # 1.0 where unknown
    intensity: np.ndarray  # NaN where unknown
    times: np.ndarray
    frames: dict[int, np.ndarray]  # t -> rows
    border: np.ndarray  # object touches the image border
    overlaps: Overlaps | None  # None: no masks (or not used)
    contacts: np.ndarray | None = None  # sorted codes a * N + b (a < b) of same-frame rows whose masks touch

    @classmethod
    def from_table(cls, table: pd.DataFrame, *, overlaps: Overlaps | None = None,
                   contacts: Contacts | None = None) -> Movie:
        """Arrays of a detection table (:data:`DETECTION_COLUMNS`; rows by position) and its masks' relations."""
        area = table["area"].to_numpy(float) if "area" in table else np.full(len(table), np.nan)
        intensity = table["mean_intensity"].to_numpy(float) if "mean_intensity" in table else np.full(len(table), np.nan)
        times = table["t"].to_numpy(np.int64)
        order = np.argsort(times, kind="stable")
        return cls(points=table[["y", "x"]].to_numpy(float), area=np.where(np.isfinite(area) & (area > 0), area, 1.0),
                   intensity=intensity, times=times,
                   frames={int(t): order[times[order] == t] for t in np.unique(times)},
                   border=table["touches_border"].to_numpy(bool) if "touches_border" in table
                   else np.zeros(len(table), bool), overlaps=overlaps,
                   contacts=None if contacts is None else _contact_codes(contacts, len(table)))

    def touching(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether the masks of rows ``a`` and ``b`` (same frame) touch; False where unknown or b < 0."""
        if self.contacts is None or not len(self.contacts):
            return np.zeros(len(a), bool)
        n = len(self.points)
        codes = np.minimum(a, b) * n + np.maximum(a, b)
        position = np.minimum(np.searchsorted(self.contacts, codes), len(self.contacts) - 1)  # contacts are sorted
        return (b >= 0) & (self.contacts[position] == codes)


def _contact_codes(contacts: Contacts, n: int) -> np.ndarray:
    pairs = [np.minimum(a, b) * n + np.maximum(a, b) for a, b in contacts.values()]
    return np.unique(np.concatenate(pairs)).astype(np.int64) if pairs else np.zeros(0, np.int64)
