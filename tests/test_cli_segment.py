"""The CLI end to end, in a real subprocess: segment, measure, models, demo, bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytolens.data.synthetic import synthetic_nuclei
from cytolens.io import read_image, write_image


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cytolens", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed, name in ((1, "a.tif"), (2, "b.png")):
        image, _ = synthetic_nuclei(shape=(192, 192), n_nuclei=15, seed=seed)
        if name.endswith(".png"):
            image = (image / image.max() * 255).astype(np.uint8)
        paths.append(write_image(folder / name, image))
    return paths


def test_segment_writes_labels_and_tables_then_refuses_to_overwrite(images, tmp_path):
    out = tmp_path / "out"
    result = run("segment", *map(str, images), "-o", str(out), "--quiet", "--diameter", "20")
    assert result.returncode == 0, result.stderr
    for stem in ("a", "b"):
        labels = read_image(out / f"{stem}_labels.tif")
        table = pd.read_csv(out / f"{stem}_cells.csv")
        assert labels.dtype == np.uint16 and labels.max() > 5
        assert len(table) == labels.max() and {"area", "centroid_y", "mean_intensity"} <= set(table.columns)
    before = (out / "a_labels.tif").read_bytes()
    again = run("segment", str(images[0]), "-o", str(out), "--quiet")
    assert again.returncode == 1
    assert "exists" in again.stderr and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert (out / "a_labels.tif").read_bytes() == before
    # a bad setting is named first, not hidden behind the existing outputs
    for bad, message in ((("--diameter", "-3"), "diameter must be a positive"), (("--gamma", "9"), "gamma must be"),
                         (("--model", "nope"), "unknown model")):
        wrong = run("segment", str(images[0]), "-o", str(out), "--quiet", *bad)
        assert wrong.returncode == 1 and message in wrong.stderr and "exists" not in wrong.stderr
    assert run("segment", str(images[0]), "-o", str(out), "--quiet", "--overwrite").returncode == 0
    # a post-processing override changes the result: no object survives a huge minimum size
    assert run("segment", str(images[0]), "-o", str(out), "-q", "--overwrite", "--param", "min_size=100000",
               "--param", "smoothing=2").returncode == 0
    assert not read_image(out / "a_labels.tif").any()


@pytest.mark.parametrize(
    "args, message",
    [
        (("segment", "missing.tif", "-o", "out"), "not found"),
        (("segment", "{image}", "missing.tif", "-o", "out"), "file not found: missing.tif"),
        (("segment", "{empty}", "-o", "out"), "holds no image files"),
        (("segment", "{image}", "-o", "{text}/results"), "notes.tif is a file, not a folder"),
        (("segment", "{text}", "-o", "out"), "cannot read"),
        (("segment", "{image}", "-o", "out", "--model", "nope"), "unknown model"),
        (("segment", "{image}", "-o", "out", "--diameter", "-2"), "diameter"),
        (("segment", "{image}", "-o", "out", "--gamma", "0"), "gamma"),
        (("segment", "{image}", "-o", "out", "--precision", "half"), "precision must be"),
        (("segment", "{image}", "-o", "out", "--param", "marker_threshold"), "expected NAME=NUMBER"),
        (("segment", "{image}", "-o", "out", "--param", "marker_threshold=high"), "expected NAME=NUMBER"),
        (("segment", "{image}", "-o", "out", "--param", "flow_threshold=0.4"), "unknown post-processing"),
        (("models", "info", "nope"), "unknown model"),
    ],
)
def test_bad_input_prints_one_line_and_exits_nonzero(images, tmp_path, args, message):
    text = tmp_path / "notes.tif"
    text.write_text("this is not an image")
    (tmp_path / "empty").mkdir()
    args = [a.format(text=text, image=images[0], empty=tmp_path / "empty") for a in args]
    result = run(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_folder_is_segmented_and_a_bad_file_in_it_does_not_stop_the_others(images, tmp_path):
    folder = tmp_path / "plate"
    folder.mkdir()
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.tif").write_text("not an image")
    result = run("segment", str(folder), "-o", str(folder), "-q", "--diameter", "20", "--model", "nuclei_fast")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot read {folder / 'broken.tif'} as an image (not a TIFF file: header=b'not '); check that it "
        "is a valid .tif file, not a damaged or renamed one",
        "error: 1 of 3 images failed; the other 2 are segmented"]
    assert read_image(folder / "a_labels.tif").max() > 5 and read_image(folder / "b_labels.tif").max() > 5
    # the run summary: one row per input, the failed one included
    summary = pd.read_csv(folder / "segment_summary.csv")
    assert list(summary.columns) == ["file", "status", "objects", "diameter", "diameter_from", "scale", "certainty",
                                     "filter_rejected", "warnings", "error"]
    assert list(summary["file"]) == [str(folder / name) for name in ("a.tif", "b.png", "broken.tif")]
    ok, failed = summary.iloc[:2], summary.iloc[2]
    assert list(summary["status"]) == ["ok", "ok", "failed"] and list(ok["diameter_from"]) == ["given"] * 2
    assert list(ok["objects"]) == [read_image(folder / f"{s}_labels.tif").max() for s in "ab"]
    assert list(ok["diameter"]) == [20, 20] and list(ok["scale"]) == [1, 1] and ok["certainty"].between(0.4, 1).all()
    assert summary["warnings"].isna().all() and ok["error"].isna().all()
    assert failed[["objects", "diameter", "diameter_from", "scale", "certainty", "filter_rejected"]].isna().all()
    assert failed["error"].startswith(f"cannot read {folder / 'broken.tif'} as an image")
    (folder / "broken.tif").unlink()
    # run again into the same folder: its own *_labels outputs are not taken for images
    again = run("segment", str(folder), "-o", str(folder), "-q", "--diameter", "20", "--model", "nuclei_fast",
                "--overwrite")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "a_cells.csv", "a_labels.tif", "b.png",
                                                        "b_cells.csv", "b_labels.tif", "segment_summary.csv"]
    assert len(pd.read_csv(folder / "segment_summary.csv")) == 2


def test_each_image_gets_a_line_and_a_later_run_adds_its_rows_to_the_summary(images, tmp_path):
    out = tmp_path / "out"
    result = run("segment", str(images[0]), "-o", str(out), "--model", "nuclei_fast")
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(out / "segment_summary.csv").iloc[0]
    assert row["status"] == "ok" and row["diameter_from"] == "estimated" and row["certainty"] > 0.4
    assert result.stdout.splitlines() == [
        f"a.tif: {row['objects']} objects, diameter {row['diameter']:.3g} px (estimated), scale {row['scale']:.3g}",
        f"{row['objects']} objects in 1 image(s); results in {out}, run summary in {out / 'segment_summary.csv'}"]
    # another image into the same folder: the earlier run's row is kept, this run's is added
    before = pd.read_csv(out / "segment_summary.csv")
    again = run("segment", str(images[1]), "-o", str(out), "-q", "--model", "nuclei_fast")
    assert again.returncode == 0, again.stderr
    after = pd.read_csv(out / "segment_summary.csv")
    assert list(after["file"]) == [str(images[0]), str(images[1])]
    pd.testing.assert_frame_equal(after.iloc[:1], before)
    # --summary writes elsewhere and leaves the folder's summary alone; --overwrite starts it afresh
    elsewhere = tmp_path / "runs" / "b.csv"
    assert run("segment", str(images[1]), "-o", str(out), "-q", "--model", "nuclei_fast", "--summary",
               str(elsewhere), "--overwrite").returncode == 0
    assert list(pd.read_csv(elsewhere)["file"]) == [str(images[1])]
    assert len(pd.read_csv(out / "segment_summary.csv")) == 2
    assert run("segment", str(images[1]), "-o", str(out), "-q", "--model", "nuclei_fast",
               "--overwrite").returncode == 0
    assert list(pd.read_csv(out / "segment_summary.csv")["file"]) == [str(images[1])]
    # a file of that name that is not a run summary is never replaced unasked
    (out / "segment_summary.csv").write_text("my,own\n1,2\n")
    refused = run("segment", str(images[0]), "-o", str(out), "-q", "--model", "nuclei_fast", "--overwrite",
                  "--summary", str(out / "segment_summary.csv"))
    assert refused.returncode == 0  # --overwrite was asked for
    (out / "notes.csv").write_text("my,own\n1,2\n")
    kept = run("segment", str(images[0]), "-o", str(tmp_path / "out2"), "-q", "--model", "nuclei_fast",
               "--summary", str(out / "notes.csv"))
    assert kept.returncode == 1 and "is not a run summary" in kept.stderr
    assert (out / "notes.csv").read_text() == "my,own\n1,2\n"


def test_overlay_outlines_the_objects_and_is_not_read_back_as_an_input(images, tmp_path):
    from cytolens.overlay import display_rgb

    folder = tmp_path / "plate"
    folder.mkdir()
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    args = ("segment", str(folder), "-o", str(folder), "-q", "--diameter", "20", "--model", "nuclei_fast", "--overlay")
    assert run(*args).returncode == 0
    labels, image = read_image(folder / "a_labels.tif"), read_image(folder / "a.tif")
    picture = read_image(folder / "a_overlay.png")
    assert picture.shape == (*labels.shape, 3) and picture.dtype == np.uint8
    plain = display_rgb(image)
    from skimage.segmentation import find_boundaries

    edges = find_boundaries(labels, mode="inner")
    assert np.array_equal(picture[~edges], plain[~edges])  # the image itself is untouched
    assert (picture[edges] != plain[edges]).any(axis=-1).mean() > 0.95  # the outlines are drawn
    # again into the same folder: the overlays are not segmented as images, and an existing one is kept
    before = (folder / "a_overlay.png").read_bytes()
    (folder / "a_labels.tif").unlink()
    (folder / "a_cells.csv").unlink()
    refused = run(*args)
    assert refused.returncode == 1 and "a_overlay.png exists" in refused.stderr
    assert (folder / "a_overlay.png").read_bytes() == before
    assert run(*args, "--overwrite").returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "a_cells.csv", "a_labels.tif", "a_overlay.png",
                                                        "b.png", "b_cells.csv", "b_labels.tif", "b_overlay.png",
                                                        "segment_summary.csv"]


def test_rois_and_geojson_have_one_outline_per_object_named_by_label(images, tmp_path):
    from cytolens.io import read_imagej_rois

    import json

    result = run("segment", str(images[1]), "-o", str(tmp_path), "-q", "--diameter", "20", "--model", "nuclei_fast",
                 "--rois", "--geojson")
    assert result.returncode == 0, result.stderr
    labels = read_image(tmp_path / "b_labels.tif")
    table = pd.read_csv(tmp_path / "b_cells.csv")
    names = [int(roi.name) for roi in read_imagej_rois(tmp_path / "b_rois.zip")]
    assert labels.max() > 5 and names == sorted(table["label"]) == list(range(1, labels.max() + 1))
    features = json.loads((tmp_path / "b_objects.geojson").read_text())["features"]
    assert [f["properties"]["label"] for f in features] == names
    for name in ("b_labels.tif", "b_cells.csv"):
        (tmp_path / name).unlink()
    again = run("segment", str(images[1]), "-o", str(tmp_path), "-q", "--geojson")
    assert again.returncode == 1 and "b_objects.geojson exists" in again.stderr
    assert not (tmp_path / "b_labels.tif").exists()  # refused before anything was written


def test_channel_picks_the_nuclear_stain_and_the_table_measures_every_channel(images, tmp_path):
    import tifffile

    nuclear = read_image(images[0])
    other = np.random.default_rng(0).integers(0, 50, nuclear.shape).astype(nuclear.dtype)
    tifffile.imwrite(tmp_path / "two.ome.tif", np.stack([other, nuclear]), ome=True, metadata={"axes": "CYX"})
    result = run("segment", str(tmp_path / "two.ome.tif"), "-o", str(tmp_path / "out"), "-q", "--diameter", "20",
                 "--channel", "1", "--model", "nuclei_fast", "--overlay")
    assert result.returncode == 0, result.stderr
    single = run("segment", str(images[0]), "-o", str(tmp_path / "single"), "-q", "--diameter", "20",
                 "--model", "nuclei_fast", "--overlay")
    assert single.returncode == 0, single.stderr
    assert np.array_equal(read_image(tmp_path / "out" / "two_labels.tif"),  # ".ome" is not part of the stem
                          read_image(tmp_path / "single" / "a_labels.tif"))
    # the overlay shows the channel that was segmented
    assert np.array_equal(read_image(tmp_path / "out" / "two_overlay.png"),
                          read_image(tmp_path / "single" / "a_overlay.png"))
    table = pd.read_csv(tmp_path / "out" / "two_cells.csv")
    assert {"mean_intensity_c0", "mean_intensity_c1"} <= set(table.columns)
    assert table["mean_intensity_c1"].mean() > 2 * table["mean_intensity_c0"].mean()  # nuclei shine in channel 1


def test_measure_command(images, tmp_path):
    labels_path = tmp_path / "labels.tif"
    run("segment", str(images[0]), "-o", str(tmp_path), "--quiet", "--diameter", "20")
    (tmp_path / "a_labels.tif").rename(labels_path)
    result = run("measure", str(labels_path), "--image", str(images[0]), "-o", str(tmp_path / "t.parquet"))
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == read_image(labels_path).max()


def test_models_list_and_info():
    listed = run("models", "list")
    assert listed.returncode == 0 and "nuclei" in listed.stdout
    info = run("models", "info", "nuclei")
    assert info.returncode == 0 and "schema contact_watershed" in info.stdout and len(info.stdout.splitlines()) < 40
    full = run("models", "info", "nuclei", "--json")
    assert full.returncode == 0 and '"schema": "contact_watershed"' in full.stdout


def test_demo_writes_outputs_and_reports_ap(tmp_path):
    result = run("demo", "-o", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "AP@0.5 =" in result.stdout
    for name in ("demo_image.tif", "demo_labels.tif", "demo_truth_labels.tif", "demo_cells.csv", "demo_overlay.png"):
        assert (tmp_path / "demo" / name).is_file()
    assert read_image(tmp_path / "demo" / "demo_overlay.png").shape[-1] == 3


def test_keep_all_objects_matches_the_api_without_the_filter(images, tmp_path):
    import cytolens

    result = run("segment", str(images[0]), "-o", str(tmp_path), "--quiet", "--diameter", "20", "--keep-all-objects")
    assert result.returncode == 0, result.stderr
    expected = cytolens.segment(read_image(images[0]), diameter=20, filter_objects=False)
    np.testing.assert_array_equal(read_image(tmp_path / "a_labels.tif"), expected)
