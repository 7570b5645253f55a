"""What a tracking run produces: tracks table, CTC folder, napari Tracks data, lineage plot."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytolens.errors import InvalidParameterError

TABLE_COLUMNS = ["track_id", "t", "label", "y", "x", "parent_track_id"]


def ctc_tracks(tracks: pd.DataFrame) -> pd.DataFrame:
    """CTC ``L B E P`` table (label, begin, end, parent) from a tracks table.

    Examples
    --------
    >>> table = pd.DataFrame({"track_id": [1, 1, 2, 3], "t": [0, 1, 2, 2], "parent_track_id": [0, 0, 1, 1]})
    >>> ctc_tracks(table).values.tolist()
    [[1, 0, 1, 0], [2, 2, 2, 1], [3, 2, 2, 1]]
    """
    grouped = tracks.groupby("track_id")
    out = pd.DataFrame({
        "label": grouped["t"].min().index.to_numpy(np.int64),
        "begin": grouped["t"].min().to_numpy(np.int64),
        "end": grouped["t"].max().to_numpy(np.int64),
        "parent": grouped["parent_track_id"].first().to_numpy(np.int64),
    })
    return out.reset_index(drop=True)


def relabel(labels: np.ndarray, tracks: pd.DataFrame) -> np.ndarray:
    """Label movie in which every object carries its ``track_id`` (objects without a track become 0)."""
    labels = np.asarray(labels)
    top = int(tracks["track_id"].max()) if len(tracks) else 0
    out = np.zeros(labels.shape, np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
    for t, frame in tracks.groupby("t"):
        t = int(t)
        if t < 0 or t >= len(labels):
            continue
        lookup = np.zeros(int(labels[t].max()) + 1, out.dtype)
        ids = frame["label"].to_numpy(np.int64)
        valid = ids < len(lookup)
        lookup[ids[valid]] = frame["track_id"].to_numpy()[valid]
        out[t] = lookup[labels[t]]
    return out


def napari_tracks(tracks: pd.DataFrame) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Data and graph for ``napari.Viewer.add_tracks(data, graph=graph)``.

    ``data`` rows are ``(track_id, t, y, x)``; ``graph`` maps a track to its parent(s).
    """
    data = tracks[["track_id", "t", "y", "x"]].to_numpy(float)
    parents = tracks.groupby("track_id")["parent_track_id"].first()
    graph = {int(child): [int(parent)] for child, parent in parents.items() if parent > 0}
    return data, graph


def _tree_layout(table: pd.DataFrame) -> dict[int, float]:
    """Vertical position of each track: leaves in depth-first order, parents centred over children."""
    parents = table.groupby("track_id")["parent_track_id"].first()
    starts = table.groupby("track_id")["t"].min()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(int(parent), []).append(int(child))
    position: dict[int, float] = {}
    next_leaf = [0.0]

    def place(node: int) -> float:
        stack = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            kids = sorted(children.get(current, []), key=lambda c: starts[c])
            if not kids:
                position[current] = next_leaf[0]
                next_leaf[0] += 1
            elif expanded:
                position[current] = float(np.mean([position[k] for k in kids]))
            else:
                stack.append((current, True))
                stack.extend((k, False) for k in reversed(kids))
        return position[node]

    for root in sorted(children.get(0, []), key=lambda c: (starts[c], c)):
        place(root)
    return position


def plot_lineage(tracks: pd.DataFrame, path: str | os.PathLike | None = None, *, title: str = "",
                 overwrite: bool = False):
    """Draw the lineage forest (time on x, one row per track) and optionally save it as PNG.

    Returns the matplotlib Figure (made without pyplot, so no global state is touched).
    """
    from matplotlib.figure import Figure

    from cytolens.io import atomic_write

    position = _tree_layout(tracks)
    spans = tracks.groupby("track_id")["t"].agg(["min", "max"])
    parents = tracks.groupby("track_id")["parent_track_id"].first()
    figure = Figure(figsize=(8, max(3.0, 0.12 * len(position) + 1)))
    axes = figure.subplots()
    for track, (begin, end) in spans.iterrows():
        y = position.get(int(track), 0.0)
        axes.plot([begin, end + 0.9], [y, y], color="tab:blue", linewidth=1.5)
        parent = int(parents[track])
        if parent > 0 and parent in position:
            axes.plot([spans.loc[parent, "max"] + 0.9, begin], [position[parent], y], color="tab:gray", linewidth=0.8)
    divisions = int((parents[parents > 0].value_counts() >= 2).sum())
    axes.set_xlabel("frame")
    axes.set_yticks([])
    axes.set_title(title or f"{len(spans)} tracks, {divisions} divisions")
    axes.invert_yaxis()
    figure.tight_layout()
    if path is not None:
        atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120), overwrite)
    return figure


@dataclass
class TrackingResult:
    """Tracks of one movie.

    Attributes
    ----------
    tracks : DataFrame
        One row per detection: ``track_id, t, label, y, x, parent_track_id, area, ...``.
        ``label`` is the object's id in the input labels of frame ``t``.
    labels : ndarray (T, Y, X) or None
        The input label movie (ids as given), when tracking started from labels or a movie.
    config : dict
        The resolved :class:`~cytolens.track.TrackingConfig` (estimated values filled in).
    """

    tracks: pd.DataFrame
    labels: np.ndarray | None = None
    config: dict = field(default_factory=dict)

    @property
    def ctc_tracks(self) -> pd.DataFrame:
        """``L B E P`` table."""
        return ctc_tracks(self.tracks)

    @property
    def divisions(self) -> pd.DataFrame:
        """One row per mother: ``parent_track_id`` and its daughters."""
        table = self.ctc_tracks
        children = table[table.parent > 0].groupby("parent")["label"].apply(list)
        children = children[children.map(len) >= 2]
        return pd.DataFrame({"parent_track_id": children.index.to_numpy(), "daughters": children.to_list()})

    def tracked_labels(self) -> np.ndarray:
        """Label movie relabelled so each object carries its ``track_id``."""
        if self.labels is None:
            raise InvalidParameterError("this result was computed from a table: there are no label images")
        return relabel(self.labels, self.tracks)

    def to_table(self) -> pd.DataFrame:
        """Tracks table with the documented columns first."""
        rest = [c for c in self.tracks.columns if c not in TABLE_COLUMNS]
        return self.tracks[TABLE_COLUMNS + rest].sort_values(["track_id", "t"]).reset_index(drop=True)

    def to_ctc(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a CTC result folder (``mask%03d.tif`` + ``res_track.txt``)."""
        from cytolens.io import write_ctc_result

        return write_ctc_result(folder, self.tracked_labels(), self.ctc_tracks, overwrite=overwrite)

    def to_napari(self) -> tuple[np.ndarray, dict[int, list[int]]]:
        """``(data, graph)`` for a napari Tracks layer."""
        return napari_tracks(self.tracks)

    def plot_lineage(self, path: str | os.PathLike | None = None, overwrite: bool = False):
        """Lineage tree figure; saved as PNG when ``path`` is given."""
        return plot_lineage(self.tracks, path, overwrite=overwrite)
