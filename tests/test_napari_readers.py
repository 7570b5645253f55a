"""The plugin's readers: CTC folders and cytolens tracks tables opened in napari (headless, synthetic movies).

The reader functions (which do not import napari) are checked directly, and through
``viewer.open(..., plugin="cytolens")`` on napari's ``ViewerModel`` (no canvas: Qt's offscreen
platform has no OpenGL here), skipped without napari (``pip install cytolens[napari]``).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from cytolens.data.synthetic import synthetic_movie
from cytolens.errors import CytolensError
from cytolens.io import write_ctc_result, write_ctc_tracks, write_table
from cytolens.napari._io import get_ctc_reader, get_tracks_reader

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def movie():
    """A 6-frame label movie of 5 nuclei with one division (two daughters), and its CTC track table."""
    _, labels, tracks = synthetic_movie(n_frames=6, shape=(96, 96), n_cells=5, divisions=1, seed=3)
    assert (tracks["parent"] > 0).sum() == 2
    return labels, tracks


def write_ground_truth(folder, labels, tracks):
    """A CTC ground-truth folder ``01_GT/TRA`` (``man_track000.tif``, … + ``man_track.txt``)."""
    tra = folder / "01_GT" / "TRA"
    tra.mkdir(parents=True)
    for t, frame in enumerate(labels):
        tifffile.imwrite(tra / f"man_track{t:03d}.tif", frame)
    write_ctc_tracks(tra / "man_track.txt", tracks)
    (folder / "01_GT" / "SEG").mkdir()
    return folder / "01_GT"


def read(reader, path):
    found = reader(str(path))
    assert found is not None, f"{path} was not claimed"
    return found(str(path))


def check_tracks_layer(data, graph, labels, tracks):
    """One track per CTC track, a point per object per frame at its centroid, the parents of the track file."""
    assert sorted(np.unique(data[:, 0]).astype(int)) == sorted(tracks["label"])
    assert len(data) == sum(len(np.unique(frame)) - 1 for frame in labels)
    assert graph == {int(r.label): [int(r.parent)] for r in tracks.itertuples() if r.parent > 0}
    track, t = int(tracks["label"].iloc[0]), int(tracks["begin"].iloc[0])
    centroid = np.argwhere(labels[t] == track).mean(0)
    row = data[(data[:, 0] == track) & (data[:, 1] == t)]
    np.testing.assert_allclose(row[0, 2:], centroid)


def test_a_ctc_result_and_ground_truth_open_as_labels_and_tracks(movie, tmp_path):
    labels, tracks = movie
    result = write_ctc_result(tmp_path / "01_RES", labels, tracks)
    truth = write_ground_truth(tmp_path, labels, tracks)
    for path in (result, result / "res_track.txt", truth, truth / "TRA", truth / "TRA" / "man_track.txt"):
        (masks, mask_meta, mask_kind), (data, meta, kind) = read(get_ctc_reader, path)
        assert (mask_kind, kind) == ("labels", "tracks")
        np.testing.assert_array_equal(masks, labels)
        check_tracks_layer(data, meta["graph"], labels, tracks)
        assert len(meta["features"]) == len(data)
    assert mask_meta["name"] == "01_GT masks" and meta["name"] == "01_GT tracks"


def test_a_single_frame_folder_opens_and_3d_folders_are_left_to_napari(tmp_path):
    frame = np.zeros((16, 16), np.uint16)
    frame[2:6, 3:9] = 4
    one = tmp_path / "one"
    one.mkdir()
    tifffile.imwrite(one / "mask000.tif", frame)
    write_ctc_tracks(one / "res_track.txt", pd.DataFrame({"label": [4], "begin": [0], "end": [0], "parent": [0]}))
    (masks, _, _), (data, meta, _) = read(get_ctc_reader, one)
    assert masks.shape == (1, 16, 16) and meta["graph"] == {}
    np.testing.assert_allclose(data, [[4, 0, 3.5, 5.5]])
    volume = tmp_path / "volume"
    volume.mkdir()
    tifffile.imwrite(volume / "mask000.tif", np.zeros((30, 16, 16), np.uint16))
    (volume / "res_track.txt").write_text("")
    assert get_ctc_reader(str(volume)) is None


def test_opened_in_a_viewer_napari_draws_the_divisions(movie, tmp_path):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("napari", reason="opening in a viewer needs napari: pip install cytolens[napari]")
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    labels, tracks = movie
    folder = write_ctc_result(tmp_path / "01_RES", labels, tracks)
    viewer = ViewerModel()
    added = viewer.open(str(folder), plugin="cytolens")
    assert [type(layer).__name__ for layer in added] == ["Labels", "Tracks"]
    mother = int(tracks.loc[tracks["parent"] > 0, "parent"].iloc[0])
    assert sorted(child for child, parents in added[1].graph.items() if parents == [mother]) == sorted(
        tracks.loc[tracks["parent"] == mother, "label"])


def test_paths_that_are_not_ours_are_left_to_other_readers(movie, tmp_path):
    labels, _ = movie
    frames = tmp_path / "frames"
    frames.mkdir()
    tifffile.imwrite(frames / "t000.tif", labels[0])
    (tmp_path / "notes.txt").write_text("1 0 1 0\n")
    pd.DataFrame({"axis-0": [1.0], "axis-1": [2.0]}).to_csv(tmp_path / "points.csv", index=False)
    assert get_ctc_reader(str(frames)) is None and get_ctc_reader(str(tmp_path / "notes.txt")) is None
    assert get_tracks_reader(str(tmp_path / "points.csv")) is None and get_tracks_reader(str(frames)) is None
    assert get_ctc_reader([str(frames), str(tmp_path)]) is None


def one_line_error(reader, path, match: str) -> None:
    with pytest.raises(CytolensError, match=match) as error:
        read(reader, path)
    assert "\n" not in str(error.value) and error.value.__cause__ is None


def test_inconsistent_ctc_folders_give_one_line_errors(movie, tmp_path):
    labels, tracks = movie
    beyond = tracks.copy()
    beyond.loc[0, "end"] = len(labels) + 2  # the track file names frames the folder does not have
    one_line_error(get_ctc_reader, write_ctc_result(tmp_path / "beyond", labels, beyond), "outside 0..5")
    gap = write_ctc_result(tmp_path / "gap", labels, tracks)
    (gap / "mask002.tif").unlink()
    one_line_error(get_ctc_reader, gap, r"frames \[2\] are missing")
    wrong = tracks.copy()
    wrong.loc[wrong["parent"] > 0, "parent"] = 99
    one_line_error(get_ctc_reader, write_ctc_result(tmp_path / "orphans", labels, wrong), "parent 99, which is not")
    garbage = write_ctc_result(tmp_path / "garbage", labels, tracks)
    (garbage / "res_track.txt").write_text("1 0 five 0\n")
    one_line_error(get_ctc_reader, garbage, "expected 'L B E P' integers")
    broken = write_ctc_result(tmp_path / "broken", labels, tracks)
    (broken / "mask001.tif").write_bytes(b"not a tiff")
    one_line_error(get_ctc_reader, broken, "mask001")


def test_a_cytolens_tracks_table_opens_as_tracks(movie, tmp_path):
    import cytolens.track

    labels, _ = movie
    result = cytolens.track(labels=labels)
    table = result.to_table()
    path = write_table(tmp_path / "tracks.csv", table)
    ((data, meta, kind),) = read(get_tracks_reader, path)
    assert kind == "tracks" and data.shape == (len(table), 4)
    assert len(np.unique(data[:, 0])) == table["track_id"].nunique()
    parents = table.groupby("track_id")["parent_track_id"].first()
    assert meta["graph"] == {int(k): [int(v)] for k, v in parents.items() if v > 0}
    assert meta["graph"], "the synthetic division was found and is drawn"
    assert {"label", "parent_track_id"} <= set(meta["features"].columns) and len(meta["features"]) == len(data)
    # the CTC folder `cytolens track -o` writes next to it reads back as the same tracks
    folder = result.to_ctc(tmp_path)
    (_, (ctc_data, ctc_meta, _)) = read(get_ctc_reader, folder)
    assert len(ctc_data) == len(data) and len(ctc_meta["graph"]) == len(meta["graph"])
    # "frame" and "parent" are read too, rows in any order
    renamed = table.rename(columns={"t": "frame", "parent_track_id": "parent"}).sample(frac=1, random_state=0)
    ((data2, meta2, _),) = read(get_tracks_reader, write_table(tmp_path / "renamed.csv", renamed))
    np.testing.assert_array_equal(data2, data)
    assert meta2["graph"] == meta["graph"]


def test_bad_tracks_tables_give_one_line_errors(tmp_path):
    good = pd.DataFrame({"track_id": [1, 1, 2], "t": [0, 1, 2], "y": [5.0, 6, 7], "x": [1.0, 2, 3],
                         "parent_track_id": [0, 0, 1]})
    cases = {"no_y": (good.drop(columns="y"), "lacks a y column"),
             "no_frame": (good.drop(columns="t"), "lacks a t or frame column"),
             "orphan": (good.assign(parent_track_id=[0, 0, 7]), r"tracks \[2\] name a parent_track_id"),
             "twice": (good.assign(t=[0, 0, 2]), "track 1 has more than one row in t 0"),
             "text": (good.assign(x=["a", 2, 3]), r"columns \['x'\] have empty or non-numeric"),
             "empty": (good.iloc[:0], "holds no tracks")}
    for name, (table, match) in cases.items():
        path = tmp_path / f"{name}.csv"
        table.to_csv(path, index=False)
        one_line_error(get_tracks_reader, path, match)
