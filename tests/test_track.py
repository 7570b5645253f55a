"""Tracking on tiny hand-made movies whose right answer is obvious, CTC round trips and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from track_movies import disc, movie_of

import cytolens.track as tracking
from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.io import read_ctc_masks, read_ctc_tracks
from cytolens.track import TrackingConfig, link, solve_assignment


def tracks_by_truth(result, truth: list[list[int]]) -> dict[tuple[int, int], int]:
    """Map (t, index of the object in ``objects[t]``) → track id, via the detection centroids."""
    out = {}
    for (t, index), (y, x) in truth:
        frame = result.tracks[result.tracks.t == t]
        nearest = np.argmin((frame.y - y) ** 2 + (frame.x - x) ** 2)
        out[(t, index)] = int(frame.track_id.iloc[nearest])
    return out


# --- hand-made movies ------------------------------------------------------------------


def test_two_cells_crossing_paths_keep_their_identity():
    # A moves right along y=20, B moves left along y=27: their x positions cross at t=5
    objects = [[(20, 10 + 5 * t, 3), (27, 60 - 5 * t, 3)] for t in range(11)]
    result = tracking.track(labels=movie_of(objects, shape=(48, 72)))
    truth = [((t, i), objects[t][i][:2]) for t in range(11) for i in range(2)]
    ids = tracks_by_truth(result, truth)
    assert len({ids[(t, 0)] for t in range(11)}) == 1
    assert len({ids[(t, 1)] for t in range(11)}) == 1
    assert ids[(0, 0)] != ids[(0, 1)]
    assert result.ctc_tracks["parent"].tolist() == [0, 0]


def test_crossing_points_without_masks_follow_nearest_links():
    rows = [{"t": t, "y": 20.0, "x": 10.0 + 5 * t, "cell": "A"} for t in range(11)]
    rows += [{"t": t, "y": 27.0, "x": 60.0 - 5 * t, "cell": "B"} for t in range(11)]
    result = tracking.track(detections=pd.DataFrame(rows), search_radius=8.0)
    assert result.tracks.groupby("cell")["track_id"].nunique().tolist() == [1, 1]
    assert result.tracks.groupby("track_id")["cell"].nunique().tolist() == [1, 1]


def test_overlap_decides_between_two_equally_near_candidates():
    # frame 1: the cell moved 4 px right; a second cell appears 4 px left, not overlapping the first
    movie = np.zeros((2, 40, 60), np.uint16)
    disc(movie[0], 20, 30, 6, 1)
    disc(movie[1], 20, 34, 6, 5)  # overlaps the cell of frame 0
    movie[1][16:25, 10:18] = 9  # a square 16 px away: a birth, not a link
    result = tracking.track(labels=movie, search_radius=30.0, divisions=False)
    frame1 = result.tracks[result.tracks.t == 1].set_index("label")
    frame0 = result.tracks[result.tracks.t == 0].set_index("label")
    assert frame1.loc[5, "track_id"] == frame0.loc[1, "track_id"]
    assert frame1.loc[9, "track_id"] != frame0.loc[1, "track_id"]


def test_one_frame_gap_is_closed_with_a_parent_link():
    objects = [[(20, 20 + 2 * t, 4), (44, 44, 4)] for t in range(6)]
    objects[2] = [objects[2][1]]  # the first cell is missed in frame 2
    result = tracking.track(labels=movie_of(objects))
    ctc = result.ctc_tracks.sort_values(["begin", "label"]).values.tolist()
    moving = [row for row in ctc if row[2] != 5 or row[1] != 0]
    # the moving cell: frames 0-1, then 3-5 as a child of the first piece (CTC gap convention)
    assert len(ctc) == 3
    first = next(r for r in ctc if r[1] == 0 and r[2] == 1)
    second = next(r for r in ctc if r[1] == 3)
    assert second[2] == 5 and second[3] == first[0]
    assert len(moving) == 2


def test_gap_closing_off_leaves_two_unrelated_tracks():
    objects = [[(20, 20 + 2 * t, 4)] for t in range(6)]
    objects[2] = []
    result = tracking.track(labels=movie_of(objects), max_gap=0)
    assert sorted(result.ctc_tracks["parent"].tolist()) == [0, 0]


def test_division_gives_two_daughters_of_one_mother():
    objects = [[(32, 32, 7), (10, 10, 4)] for _ in range(4)]
    objects += [[(32, 25, 5), (32, 39, 5), (10, 10, 4)] for _ in range(4)]
    result = tracking.track(labels=movie_of(objects))
    ctc = result.ctc_tracks
    assert len(ctc) == 4
    assert len(result.divisions) == 1
    mother = result.divisions["parent_track_id"].iloc[0]
    assert ctc.set_index("label").loc[mother, ["begin", "end"]].tolist() == [0, 3]
    daughters = ctc[ctc.parent == mother]
    assert daughters["begin"].tolist() == [4, 4] and daughters["end"].tolist() == [7, 7]


def test_division_from_a_table_without_masks():
    rows = [{"t": t, "y": 30.0, "x": 30.0, "area": 150.0} for t in range(3)]
    rows += [{"t": t, "y": 30.0, "x": 30.0 + s * (5 + t), "area": 75.0} for t in range(3, 6) for s in (-1, 1)]
    rows += [{"t": t, "y": 80.0, "x": 80.0, "area": 150.0} for t in range(6)]
    result = tracking.track(detections=pd.DataFrame(rows))
    assert len(result.divisions) == 1
    assert len(result.divisions["daughters"].iloc[0]) == 2


def test_no_division_when_disabled():
    objects = [[(32, 32, 7)] for _ in range(3)] + [[(32, 25, 5), (32, 39, 5)] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects), divisions=False)
    assert result.divisions.empty


def test_cell_leaving_the_field_ends_its_track():
    # cell A walks out through the right border; B sits still; C enters at the left later
    objects = [[(20, 44 + 6 * t, 4), (50, 20, 4)] for t in range(4)]
    objects += [[(50, 20, 4), (10, 2, 2)] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects))
    ctc = result.ctc_tracks.sort_values("begin")
    assert (ctc["parent"] == 0).all()
    assert sorted(zip(ctc["begin"], ctc["end"])) == [(0, 3), (0, 6), (4, 6)]


def test_empty_frame_in_the_middle_is_bridged():
    objects = [[(20, 20, 4)], [(20, 21, 4)], [], [(20, 23, 4)]]
    result = tracking.track(labels=movie_of(objects))
    ctc = result.ctc_tracks.sort_values("begin").values.tolist()
    assert ctc == [[1, 0, 1, 0], [2, 3, 3, 1]]


# --- outputs ---------------------------------------------------------------------------


def division_movie():
    objects = [[(32, 32, 7), (10, 50, 4)] for _ in range(3)]
    objects += [[(32, 25, 5), (32, 39, 5), (10, 52, 4)] for _ in range(3)]
    return movie_of(objects, seed=3)


def test_ctc_round_trip_and_official_scores(tmp_path):
    ctc_metrics = pytest.importorskip("ctc_metrics")
    movie = division_movie()
    result = tracking.track(labels=movie)
    folder = result.to_ctc(tmp_path / "res")
    masks, table = read_ctc_masks(folder), read_ctc_tracks(folder / "res_track.txt")
    assert masks.shape == movie.shape
    assert ((masks > 0) == (movie > 0)).all()
    for row in table.itertuples():
        present = [t for t in range(len(masks)) if (masks[t] == row.label).any()]
        assert present == list(range(row.begin, row.end + 1))
    # the result, used as ground truth, scores itself perfectly; a relabelled copy too
    gt = tmp_path / "01_GT" / "TRA"
    gt.mkdir(parents=True)
    for t, frame in enumerate(masks):
        import tifffile

        tifffile.imwrite(gt / f"man_track{t:03d}.tif", frame)
    (gt / "man_track.txt").write_text((folder / "res_track.txt").read_text())
    again = tracking.track(labels=read_ctc_masks(folder)[:, :, ::1] * 1)
    again.to_ctc(tmp_path / "res2")
    scores = ctc_metrics.evaluate_sequence(str(tmp_path / "res2"), str(tmp_path / "01_GT"),
                                           metrics=["TRA", "DET", "BC"], threads=1)
    assert scores["TRA"] == pytest.approx(1.0)
    assert scores["BC(0)"] == pytest.approx(1.0)


def test_write_ctc_refuses_to_overwrite(tmp_path):
    result = tracking.track(labels=division_movie())
    result.to_ctc(tmp_path)
    with pytest.raises(OutputExistsError):
        result.to_ctc(tmp_path)
    result.to_ctc(tmp_path, overwrite=True)


def test_tracks_table_napari_and_lineage(tmp_path):
    result = tracking.track(labels=division_movie())
    table = result.to_table()
    assert list(table.columns[:6]) == ["track_id", "t", "label", "y", "x", "parent_track_id"]
    data, graph = result.to_napari()
    assert data.shape == (len(table), 4)
    mother = int(result.divisions["parent_track_id"].iloc[0])
    assert sorted(child for child, parents in graph.items() if parents == [mother]) == sorted(
        result.divisions["daughters"].iloc[0])
    path = tmp_path / "lineage.png"
    result.plot_lineage(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tracked_labels_carry_track_ids():
    movie = division_movie()
    result = tracking.track(labels=movie)
    relabelled = result.tracked_labels()
    for row in result.tracks.itertuples():
        assert (relabelled[row.t][movie[row.t] == row.label] == row.track_id).all()


def test_package_is_callable_like_the_function():
    movie = division_movie()
    assert tracking(labels=movie).ctc_tracks.equals(tracking.track(labels=movie).ctc_tracks)


def test_track_movie_segments_each_frame(monkeypatch):
    from skimage.measure import label

    import cytolens

    calls = []

    precisions = []

    def fake_segment(image, model="nuclei", diameter=None, gamma=1.0, precision="float32", **kwargs):
        calls.append((image.shape, gamma))
        precisions.append(precision)
        return label(image > 0.5)

    monkeypatch.setattr(cytolens, "segment", fake_segment, raising=False)
    raw = (division_movie() > 0).astype(np.float32)
    result = tracking.track(raw)
    assert len(calls) == len(raw)
    assert len(result.divisions) == 1
    # a fluorescence movie (bright cells, dark background) is segmented with the movie gamma,
    # a bright-background one with none; a gamma given is used as given
    assert {gamma for _, gamma in calls} == {tracking.pipeline.FLUORESCENCE_MOVIE_GAMMA}
    calls.clear()
    tracking.track(1 - raw, diameter=6)
    assert {gamma for _, gamma in calls} == {1.0}
    calls.clear()
    tracking.track(raw, diameter=6, gamma=0.9)
    assert {gamma for _, gamma in calls} == {0.9}
    assert set(precisions) == {"float32"}
    precisions.clear()
    tracking.track(raw, diameter=6, precision="bfloat16")  # handed on to every frame's segmentation
    assert precisions == ["bfloat16"] * len(raw)
    with pytest.raises(InvalidParameterError, match="precision"):
        tracking.track(raw, diameter=6, precision="float16")


def test_channel_tracks_one_channel_of_a_multichannel_movie(monkeypatch):
    from skimage.measure import label

    import cytolens

    monkeypatch.setattr(cytolens, "segment", lambda image, model="nuclei", diameter=None, **kw: label(image > 0.5),
                        raising=False)
    raw = (division_movie() > 0).astype(np.float32)
    noise = np.random.default_rng(0).random(raw.shape).astype(np.float32) * 0.4
    two = np.stack([noise, raw], axis=-1)
    single, picked = tracking.track(raw, diameter=6), tracking.track(two, diameter=6, channel=1)
    assert picked.ctc_tracks.values.tolist() == single.ctc_tracks.values.tolist()
    with pytest.raises(InvalidImageError, match="channel 2 does not exist"):
        tracking.track(two, diameter=6, channel=2)
    with pytest.raises(InvalidImageError, match=r"needs a \(T, Y, X, C\) movie"):
        tracking.track(raw, diameter=6, channel=0)


def test_a_blank_frame_gets_no_objects_and_the_tracks_bridge_it(monkeypatch):
    from skimage.measure import label

    import cytolens

    monkeypatch.setattr(cytolens, "segment", lambda image, model="nuclei", diameter=None, **kw: label(image > 0.5),
                        raising=False)
    raw = (division_movie() > 0).astype(np.float32)
    raw[1] = 0  # a dropped frame
    with pytest.warns(UserWarning, match=r"1 blank frame\(s\) \(all pixels equal\) get no objects: frame\(s\) 1"):
        result = tracking.track(raw, max_gap=2)
    tracks = result.tracks
    assert 1 not in set(tracks["t"])
    # bridged as in the CTC format: the track after the gap names the one before as its parent
    before, after = tracks[tracks["t"] == 0], tracks[tracks["t"] == 2]
    assert set(after["parent_track_id"]) == set(before["track_id"]) and len(after) == len(before) == 2
    with pytest.raises(InvalidImageError, match="every frame of the movie is blank"):
        tracking.track(np.zeros_like(raw))


# --- config and solver -------------------------------------------------------------------


def test_config_forbids_unknown_fields_and_estimates_none():
    with pytest.raises(InvalidParameterError, match="max_gapp"):
        TrackingConfig.from_kwargs(max_gapp=1)
    with pytest.raises(InvalidParameterError):
        TrackingConfig.from_kwargs(max_gap=-1)
    table = pd.DataFrame({"t": [0, 1], "y": [0.0, 3.0], "x": [0.0, 4.0], "area": [np.pi * 25] * 2})
    resolved = TrackingConfig().resolved(table)
    assert resolved.cell_diameter == pytest.approx(10.0)
    assert resolved.search_radius == pytest.approx(max(10.0, 4 * 5.0))  # median move 5 px
    again = TrackingConfig.model_validate_json(resolved.model_dump_json())
    assert again == resolved


def test_solve_assignment_prefers_alternatives_when_links_are_dear():
    rows, cols, cost = np.array([0, 1]), np.array([0, 0]), np.array([0.5, 0.1])
    assert solve_assignment(2, 1, rows, cols, cost, row_alternative=1.0, col_alternative=1.0).tolist() == [[1, 0]]
    assert solve_assignment(2, 1, rows, cols, cost + 5, row_alternative=1.0, col_alternative=1.0).tolist() == []


def test_link_ten_thousand_cells_per_frame():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(100), np.arange(100), indexing="ij"), -1).reshape(-1, 2) * 20.0
    points = [grid + rng.uniform(-3, 3, grid.shape)]
    for _ in range(2):
        points.append(points[-1] + rng.uniform(-2, 2, grid.shape))
    table = pd.DataFrame({"t": np.repeat(np.arange(3), len(grid)), "y": np.concatenate(points)[:, 0],
                          "x": np.concatenate(points)[:, 1], "area": 50.0, "cell": np.tile(np.arange(len(grid)), 3)})
    out = link(table, TrackingConfig(divisions=False, max_gap=0))
    assert out["track_id"].nunique() == len(grid)
    assert (out.groupby("track_id")["cell"].nunique() == 1).all()


# --- bad inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, message",
    [
        ([np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)], "same shape"),
        (np.zeros((3, 8, 8), np.uint16), "no objects"),
        (np.ones((1, 8, 8), np.uint16), "at least two"),
        (np.ones((8, 8), np.uint16), "single frame"),
        (np.full((2, 4, 4), 0.5), "integer"),
        (np.full((2, 4, 4), -1, np.int32), "non-negative"),
        (np.zeros((2, 0, 4), np.uint8), "empty"),
    ],
)
def test_bad_label_movies_raise_clear_errors(labels, message):
    with pytest.raises(InvalidImageError, match=message):
        tracking.track(labels=labels)


def test_huge_label_ids_track_like_small_ones():
    # arrays indexed by id are sized by the largest id: 2**40 asked for 8 TiB before
    movie = division_movie()
    huge = np.where(movie > 0, movie.astype(np.uint64) + 2**40, 0)
    small, large = tracking.track(labels=movie), tracking.track(labels=huge)
    assert large.ctc_tracks.values.tolist() == small.ctc_tracks.values.tolist()


@pytest.mark.parametrize("frames", [[-1, 0, 1], [0, 0.5, 1], [0, 1, "two"]])
def test_detection_frames_must_be_whole_numbers(frames):
    table = pd.DataFrame({"t": frames, "y": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(InvalidParameterError, match="whole numbers >= 0"):
        tracking.track(detections=table)


def test_bad_arguments_raise_cytolens_errors():
    movie = division_movie()
    with pytest.raises(InvalidParameterError):
        tracking.track()
    with pytest.raises(InvalidParameterError):
        tracking.track(labels=movie, detections=pd.DataFrame({"t": [0], "y": [0], "x": [0]}))
    with pytest.raises(InvalidParameterError, match="columns"):
        tracking.track(detections=pd.DataFrame({"frame": [0, 1], "y": [0, 1]}))
    with pytest.raises(InvalidImageError, match="does not match"):
        tracking.detect(movie, np.zeros((2, 3, 3)))
    with pytest.raises(CytolensError):
        tracking.track(labels=movie, search_radius=0)
    with pytest.raises(InvalidParameterError, match="gamma"):
        tracking.track((movie > 0).astype(np.float32), gamma=-1.0)
    with pytest.raises(CytolensError):
        tracking.track(labels=movie, division_touch_penalty=-1)


# --- CLI -------------------------------------------------------------------------------


def test_cli_links_a_label_tiff(tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from cytolens.cli import app

    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, division_movie())
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["track", "--labels", str(path), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "mask000.tif").exists() and (out / "res_track.txt").exists()
    assert (out / "lineage.png").exists()
    table = pd.read_csv(out / "tracks.csv")
    assert table["parent_track_id"].gt(0).sum() > 0
    assert json.loads((out / "config.json").read_text())["cell_diameter"] > 0
    again = runner.invoke(app, ["track", "--labels", str(path), "-o", str(out), "--quiet"])
    assert again.exit_code == 1 and "overwrite" in again.output


def test_cli_reads_a_folder_of_masks_and_reports_bad_input(tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from cytolens.cli import app

    folder = tmp_path / "masks"
    folder.mkdir()
    for t, frame in enumerate(division_movie()):
        tifffile.imwrite(folder / f"mask{t:03d}.tif", frame)
    runner = CliRunner()
    ok = runner.invoke(app, ["track", "--labels", str(folder), "-o", str(tmp_path / "o"), "-q"])
    assert ok.exit_code == 0, ok.output
    tifffile.imwrite(folder / "mask006.tif", np.zeros((5, 5), np.uint16))
    bad = runner.invoke(app, ["track", "--labels", str(folder), "-o", str(tmp_path / "o2"), "-q"])
    assert bad.exit_code == 1
    assert "error:" in bad.output and "shape" in bad.output and "Traceback" not in bad.output
    neither = runner.invoke(app, ["track", "-o", str(tmp_path / "o3")])
    assert neither.exit_code == 1 and "error:" in neither.output
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, (division_movie() > 0).astype(np.uint8) * 200)
    half = runner.invoke(app, ["track", str(movie), "-o", str(tmp_path / "o4"), "--precision", "half"])
    assert half.exit_code == 1 and "precision must be" in half.output and "Traceback" not in half.output
    assert not (tmp_path / "o4").exists()


@pytest.mark.parametrize("frames", [3, 4])
def test_short_tiff_stacks_are_frames_not_channels(tmp_path, frames):
    import tifffile

    movie = np.zeros((frames, 20, 30), np.uint16)
    movie[:, 5:9, 5:9] = 1
    tifffile.imwrite(tmp_path / "labels.tif", movie)
    assert tracking.read_label_movie(tmp_path / "labels.tif").shape == (frames, 20, 30)


def test_cli_channel_applies_to_a_movie_not_to_labels(tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from cytolens.cli import app

    tifffile.imwrite(tmp_path / "labels.tif", division_movie())
    result = CliRunner().invoke(app, ["track", "--labels", str(tmp_path / "labels.tif"), "-o", str(tmp_path / "o"),
                                      "--channel", "1"])
    assert result.exit_code == 1 and "--channel picks a channel of a MOVIE" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_refuses_an_output_blocked_by_a_file_before_any_work(tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from cytolens.cli import app

    tifffile.imwrite(tmp_path / "labels.tif", division_movie())
    (tmp_path / "results").write_text("a file where the output folder should go")
    result = CliRunner().invoke(app, ["track", "--labels", str(tmp_path / "labels.tif"), "-o",
                                      str(tmp_path / "results" / "run1"), "--quiet"])
    assert result.exit_code == 1 and "results is a file, not a folder" in result.output
    assert "linking" not in result.output and "Traceback" not in result.output


def test_cli_segments_a_movie_then_links(tmp_path, monkeypatch):
    import tifffile
    from skimage.measure import label
    from typer.testing import CliRunner

    import cytolens
    from cytolens.cli import app

    monkeypatch.setattr(cytolens, "segment", lambda image, model="nuclei", diameter=None, **kw: label(image > 0.5),
                        raising=False)
    tifffile.imwrite(tmp_path / "movie.tif", (division_movie() > 0).astype(np.float32))
    result = CliRunner().invoke(app, ["track", str(tmp_path / "movie.tif"), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    table = read_ctc_tracks(tmp_path / "out" / "res_track.txt")
    assert (table["parent"] > 0).sum() == 2


def test_division_of_fixed_size_markers_uses_geometry_only():
    # CTC-style markers: every object the same size, so area says nothing about divisions
    objects = [[(32, 32, 4), (10, 10, 4)] for _ in range(3)]
    objects += [[(32, 26, 4), (32, 38, 4), (10, 10, 4)] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects))
    assert result.config["use_area"] is False
    assert len(result.divisions) == 1


def test_touching_pieces_are_less_likely_daughters_than_separated_ones():
    # a nucleus cut in two by the segmentation gives touching pieces; daughters have separated
    before = [[(32, 32, 7), (10, 50, 4)] for _ in range(3)]
    cut = movie_of(before + [[(32, 29, 6), (32, 38, 4), (10, 52, 4)]] * 3, seed=3)
    apart = movie_of(before + [[(32, 26, 6), (32, 40, 4), (10, 52, 4)]] * 3, seed=3)
    assert len(tracking.track(labels=cut).divisions) == 0
    assert len(tracking.track(labels=apart).divisions) == 1
    # the penalty is what tells them apart; a clear-cut symmetric split still divides despite it
    assert len(tracking.track(labels=cut, division_touch_penalty=0.0).divisions) == 1
    symmetric = movie_of(before + [[(32, 28, 5), (32, 37, 5), (10, 52, 4)]] * 3, seed=3)
    assert len(tracking.track(labels=symmetric).divisions) == 1


def test_a_split_that_comes_and_goes_is_merged_but_a_division_is_not():
    from cytolens.track.consistency import merge_flickering_splits

    movie = np.zeros((6, 20, 30), np.int32)
    movie[:, 4:14, 4:20] = 1
    movie[2:4, 4:14, 12:20] = 2  # frames 2-3 cut the cell in two, then it is whole again
    merged = merge_flickering_splits(movie)
    assert [len(np.unique(f)) - 1 for f in merged] == [1] * 6
    assert np.array_equal(merged[2] > 0, movie[2] > 0)
    # a division: whole before, two touching daughters until the end -> kept
    division = movie.copy()
    division[2:, 4:14, 12:20] = 2
    assert [len(np.unique(f)) - 1 for f in merge_flickering_splits(division)] == [1, 1, 2, 2, 2, 2]
    # a split longer than max_frames is kept; max_frames=0 changes nothing
    long_split = movie.copy()
    long_split[1:5, 4:14, 12:20] = 2
    assert [len(np.unique(f)) - 1 for f in merge_flickering_splits(long_split)] == [1, 2, 2, 2, 2, 1]
    assert np.array_equal(merge_flickering_splits(movie, max_frames=0), movie)
    # two neighbours that never were one object stay apart
    neighbours = np.zeros((4, 20, 30), np.int32)
    neighbours[:, 4:14, 4:12], neighbours[:, 4:14, 12:20] = 1, 2
    assert np.array_equal(merge_flickering_splits(neighbours), neighbours)
    with pytest.raises(InvalidParameterError, match="max_frames"):
        merge_flickering_splits(movie, max_frames=-1)


def test_segment_movie_keeps_every_object_unless_asked_to_filter(monkeypatch):
    import cytolens
    from cytolens.data.synthetic import synthetic_nuclei

    frame, _ = synthetic_nuclei(shape=(96, 96), n_nuclei=6, seed=1)
    seen, real_segment = [], cytolens.segment

    def fake_segment(image, **kwargs):
        seen.append(kwargs["filter_objects"])
        return real_segment(image, **kwargs)

    monkeypatch.setattr(cytolens, "segment", fake_segment)
    tracking.segment_movie(np.stack([frame, frame]), diameter=20)
    tracking.segment_movie(np.stack([frame, frame]), diameter=20, filter_objects=True)
    assert seen == [False, False, True, True]


def test_segment_movie_warns_once_per_kind_not_once_per_frame(monkeypatch):
    import warnings

    import cytolens

    def unsure_segment(image, **kwargs):
        warnings.warn(f"model is unsure of this image (sure of {int(image.mean())}% of the pixels)", UserWarning)
        if image.mean() > 30:
            warnings.warn("the object filter removed most of the foreground", UserWarning)
        return np.zeros(image.shape, np.uint32)

    monkeypatch.setattr(cytolens, "segment", unsure_segment)
    movie = np.stack([np.full((8, 8), v, np.float32) + np.eye(8) for v in (10, 20, 40, 50)])
    with pytest.warns(UserWarning) as caught:
        tracking.segment_movie(movie, diameter=20)
    assert sorted(str(w.message) for w in caught) == [
        "2 of 4 frames (the first: frame 2): the object filter removed most of the foreground",
        "4 of 4 frames (the first: frame 0): model is unsure of this image (sure of 10% of the pixels)"]


def test_progress_goes_to_a_callback_per_frame(monkeypatch):
    from skimage.measure import label

    import cytolens

    monkeypatch.setattr(cytolens, "segment", lambda image, **kwargs: label(image > 0.5))
    movie = (division_movie() > 0).astype(np.float32)
    events = []
    tracking.track(movie, diameter=6, progress=events.append)
    frames = len(movie)
    assert [(e.done, e.total) for e in events if e.stage == "segmenting frames"] == [
        (t, frames) for t in range(1, frames + 1)]
    assert [(e.done, e.total) for e in events if e.stage == "linking"] == [(t, frames - 1) for t in range(1, frames)]
    assert {e.stage for e in events} == {"segmenting frames", "linking"}
    # a bool, as callers passed before callbacks, still works: True draws tqdm bars, False nothing
    labels = division_movie()
    expected = tracking.track(labels=labels).tracks
    assert tracking.track(labels=labels, progress=True).tracks.equals(expected)
    assert tracking.track(labels=labels, progress=False).tracks.equals(expected)
