"""``cytolens evaluate …`` and :mod:`cytolens.evaluate` end to end, with the errors users meet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cytolens.cli import app
from cytolens.errors import InvalidParameterError
from cytolens.evaluate import evaluate_segmentation, pair_files
from cytolens.io import write_ctc_result, write_image, write_labels
from cytolens.metrics.restoration import restoration_scores


def run(*args):
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    return runner.invoke(app, ["evaluate", *map(str, args)])


def assert_user_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.strip().splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # one line (after any progress bar)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def _labels(n_objects, shape=(32, 32)):
    out = np.zeros(shape, np.uint16)
    for k in range(n_objects):
        out[2 + 7 * k: 7 + 7 * k, 3:12] = k + 1
    return out


@pytest.fixture()
def seg_folders(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    a = _labels(3)
    b = _labels(2)
    write_labels(truth / "a.tif", a)
    write_labels(truth / "b.tif", b)
    write_labels(pred / "a_labels.tif", a)  # perfect
    missing = b.copy()
    missing[missing == 2] = 0
    write_labels(pred / "b_labels.tif", missing)  # one of two objects missed
    return pred, truth


# --------------------------------------------------------------------------- segmentation


def test_segmentation_end_to_end(seg_folders, tmp_path):
    pred, truth = seg_folders
    result = run("segmentation", "--pred", pred, "--truth", truth, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "AP@0.5 0.7500" in result.stdout  # mean of 1 and 1/2
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ap"]["0.5"] == pytest.approx(0.75)
    assert summary["ap_pooled"]["0.5"] == pytest.approx(4 / 5)
    assert summary["totals"]["missed"] == 1
    table = pd.read_csv(out / "per_image.csv")
    assert table["item"].tolist() == ["a", "b"] and table["fn"].tolist() == [0, 1]
    assert (out / "ap_vs_iou.png").stat().st_size > 1000
    # a second run refuses to overwrite, --overwrite replaces
    assert_user_error(run("segmentation", "--pred", pred, "--truth", truth, "-o", out), "exists", "--overwrite")
    assert run("segmentation", "--pred", pred, "--truth", truth, "-o", out, "--overwrite", "-q").exit_code == 0


def test_segmentation_single_files(seg_folders, tmp_path):
    pred, truth = seg_folders
    ev = evaluate_segmentation(pred / "b_labels.tif", truth / "b.tif", tmp_path / "one")
    assert ev.summary["n_items"] == 1 and ev.summary["ap"]["0.5"] == pytest.approx(0.5)


def test_segmentation_mismatched_and_missing_files(seg_folders, tmp_path):
    pred, truth = seg_folders
    write_labels(truth / "c.tif", _labels(1))
    assert_user_error(run("segmentation", "--pred", pred, "--truth", truth, "-o", tmp_path / "o"),
                      "no prediction for ['c']")
    assert_user_error(run("segmentation", "--pred", tmp_path / "nope", "--truth", truth, "-o", tmp_path / "o"),
                      "not found")
    assert_user_error(run("segmentation", "--pred", pred / "a_labels.tif", "--truth", truth, "-o", tmp_path / "o"),
                      "two files or two folders")
    (truth / "c.tif").unlink()
    write_labels(truth / "b.tif", _labels(2, (16, 16)), overwrite=True)
    assert_user_error(run("segmentation", "--pred", pred, "--truth", truth, "-o", tmp_path / "o"), "shape")


def test_pairing_ignores_common_suffixes(tmp_path):
    write_labels(tmp_path / "p" / "img1_mask.tif", _labels(1))
    write_labels(tmp_path / "t" / "img1.tif", _labels(1))
    [(name, p, _)] = pair_files(tmp_path / "p", tmp_path / "t")
    assert name == "img1" and p.name == "img1_mask.tif"
    write_labels(tmp_path / "p" / "img1_seg.ome.tif", _labels(1))
    with pytest.raises(InvalidParameterError, match="img1_mask.tif and img1_seg.ome.tif both stand for item 'img1'"):
        pair_files(tmp_path / "p", tmp_path / "t")
    # beside segment's label images, any other image makes the predictions unclear: it is named
    write_labels(tmp_path / "p" / "img1_labels.tif", _labels(1))
    with pytest.raises(InvalidParameterError, match=r"\(img1_mask.tif, img1_seg.ome.tif\): which are the predictions"):
        pair_files(tmp_path / "p", tmp_path / "t")


def test_cellpose_masks_pair_with_their_image_name(tmp_path):
    # Cellpose writes img2_cp_masks.png: the whole suffix goes, not only "_masks" (which would leave "img2_cp")
    write_labels(tmp_path / "p" / "img2_cp_masks.tif", _labels(1))
    write_labels(tmp_path / "t" / "img2.tif", _labels(1))
    [(name, p, t)] = pair_files(tmp_path / "p", tmp_path / "t")
    assert (name, p.name, t.name) == ("img2", "img2_cp_masks.tif", "img2.tif")


def test_a_results_folder_written_by_segment_is_evaluated_on_its_label_images(tmp_path):
    from cytolens.data.synthetic import synthetic_nuclei

    images, truth = tmp_path / "images", tmp_path / "truth"
    for seed, name in ((1, "a"), (2, "b")):
        image, labels = synthetic_nuclei(shape=(128, 128), n_nuclei=8, seed=seed)
        write_image(images / f"{name}.tif", image)
        write_labels(truth / f"{name}.tif", labels)
    results = tmp_path / "results"
    segmented = CliRunner().invoke(app, ["segment", str(images), "-o", str(results), "-q", "--model", "nuclei_fast",
                                         "--diameter", "20", "--overlay", "--rois", "--geojson"])
    assert segmented.exit_code == 0, segmented.output
    assert {p.name for p in results.iterdir()} >= {"a_overlay.png", "a_rois.zip", "b_objects.geojson"}
    result = run("segmentation", "--pred", results, "--truth", truth, "-o", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "eval" / "per_image.csv")
    assert table["pred_file"].tolist() == ["a_labels.tif", "b_labels.tif"]
    assert table["truth_file"].tolist() == ["a.tif", "b.tif"] and (table["ap@0.50"] > 0.7).all()
    # an overlay given as the prediction is named for what it is
    assert_user_error(run("segmentation", "--pred", results / "a_overlay.png", "--truth", truth / "a.tif",
                          "-o", tmp_path / "one"), "a_overlay.png is not a label image", "a_labels.tif")
    # another image in the results folder is an error that names it
    write_image(results / "notes.png", np.zeros((8, 8), np.uint8))
    assert_user_error(run("segmentation", "--pred", results, "--truth", truth, "-o", tmp_path / "eval2"),
                      "(notes.png)", "which are the predictions is not clear")


# --------------------------------------------------------------------------- classification


def test_classification_end_to_end(tmp_path):
    pd.DataFrame({"id": ["x1", "x2", "x3", "x4"], "class": ["a", "a", "b", "b"]}).to_csv(tmp_path / "t.csv",
                                                                                       index=False)
    pd.DataFrame({"id": ["x4", "x3", "x2", "x1"], "prediction": ["b", "a", "a", "a"],
                  "p_a": [0.1, 0.6, 0.9, 0.8]}).to_csv(tmp_path / "p.csv", index=False)
    result = run("classification", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["confusion_matrix"] == [[2, 0], [1, 1]]
    assert summary["labels"] == ["a", "b"]
    per_class = pd.read_csv(tmp_path / "o" / "per_class.csv")
    assert per_class["recall"].tolist() == pytest.approx([1.0, 0.5])
    for name in ("per_item.csv", "confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (tmp_path / "o" / name).is_file()


def test_classification_errors(tmp_path):
    pd.DataFrame({"id": ["x1", "x2"], "class": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"id": ["x1"], "prediction": ["a"]}).to_csv(tmp_path / "p.csv", index=False)
    assert_user_error(run("classification", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv",
                          "-o", tmp_path / "o"), "1 items have no prediction")
    pd.DataFrame({"name": ["x1", "x2"], "guess": ["a", "b"]}).to_csv(tmp_path / "p.csv", index=False)
    assert_user_error(run("classification", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv",
                          "-o", tmp_path / "o"), "--key")
    assert_user_error(run("classification", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv",
                          "-o", tmp_path / "o", "--key", "id"), "no item column 'id'")
    assert_user_error(run("classification", "--pred", tmp_path / "missing.csv", "--truth", tmp_path / "t.csv",
                          "-o", tmp_path / "o"), "not found")


# --------------------------------------------------------------------------- restoration


def test_restoration_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    targets = {k: rng.gamma(2, 50, (24, 24)).astype(np.float32) for k in ("a", "b")}
    for k, t in targets.items():
        write_image(tmp_path / "t" / f"{k}.tif", t)
        write_image(tmp_path / "p" / f"{k}_restored.tif", (t * 0.01 + rng.normal(0, 0.2, t.shape)).astype(np.float32))
    result = run("restoration", "--pred", tmp_path / "p", "--truth", tmp_path / "t", "-o", tmp_path / "o", "--care")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "o" / "per_image.csv")
    from cytolens.io import read_image

    expected = restoration_scores(targets["a"], read_image(tmp_path / "p" / "a_restored.tif"), care=True)
    assert table.loc[0, "psnr"] == pytest.approx(expected["psnr"], abs=1e-6)
    assert table.loc[0, "ssim"] == pytest.approx(expected["ssim"], abs=1e-6)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["care"] is True and summary["n_items"] == 2
    assert (tmp_path / "o" / "scores.png").is_file()
    write_image(tmp_path / "t2" / "a.tif", np.zeros((8, 8), np.float32))
    write_image(tmp_path / "p2" / "a.tif", np.zeros((9, 8), np.float32))
    assert_user_error(run("restoration", "--pred", tmp_path / "p2", "--truth", tmp_path / "t2", "-o",
                          tmp_path / "o2"), "shape")


# --------------------------------------------------------------------------- tracking


def _ctc_gt(folder, movie, tracks):
    for t, frame in enumerate(movie):
        write_labels(folder / "TRA" / f"man_track{t:03d}.tif", frame)
        write_labels(folder / "SEG" / f"man_seg{t:03d}.tif", frame)
    (folder / "TRA" / "man_track.txt").write_text("".join(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks.values))


def test_tracking_end_to_end(tmp_path):
    movie = np.zeros((3, 16, 16), np.uint16)
    movie[0, 2:6, 2:6] = 1
    movie[1:, 2:6, 2:6] = 2
    movie[1:, 10:14, 10:14] = 3
    tracks = pd.DataFrame([[1, 0, 0, 0], [2, 1, 2, 1], [3, 1, 2, 1]], columns=["label", "begin", "end", "parent"])
    _ctc_gt(tmp_path / "01_GT", movie, tracks)
    write_ctc_result(tmp_path / "01_RES", movie, tracks.assign(parent=0))  # the division is missed
    result = run("tracking", "--pred", tmp_path / "01_RES", "--truth", tmp_path / "01_GT", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["SEG"] == summary["DET"] == 1.0
    assert summary["AOGM_EA"] == 2 and summary["division_fn"] == 1
    assert summary["LNK"] == pytest.approx(1 - 2 * 1.5 / (1.5 * 4))
    assert pd.read_csv(tmp_path / "o" / "per_frame.csv")["n_truth"].tolist() == [1, 2, 2]


def test_tracking_errors(tmp_path):
    movie = np.zeros((2, 8, 8), np.uint16)
    movie[:, 1:4, 1:4] = 1
    tracks = pd.DataFrame([[1, 0, 1, 0]], columns=["label", "begin", "end", "parent"])
    write_ctc_result(tmp_path / "01_RES", movie, tracks)
    assert_user_error(run("tracking", "--pred", tmp_path / "01_RES", "--truth", tmp_path / "01_GT",
                          "-o", tmp_path / "o"), "TRA")
    _ctc_gt(tmp_path / "01_GT", movie, tracks)
    (tmp_path / "01_RES" / "res_track.txt").write_text("1 0 0 0\n")  # label 1 is also in frame 1
    assert_user_error(run("tracking", "--pred", tmp_path / "01_RES", "--truth", tmp_path / "01_GT",
                          "-o", tmp_path / "o"), "invalid CTC result tracks", "frame 1")
    (tmp_path / "01_RES" / "res_track.txt").unlink()
    assert_user_error(run("tracking", "--pred", tmp_path / "01_RES", "--truth", tmp_path / "01_GT",
                          "-o", tmp_path / "o"), "res_track.txt")


def test_tracking_on_real_ground_truth(shared_data, tmp_path):
    gt = shared_data / "ctc_Fluo-N2DH-SIM+" / "01_GT"
    from cytolens.io import read_ctc_masks, read_ctc_tracks

    write_ctc_result(tmp_path / "01_RES", read_ctc_masks(gt / "TRA"), read_ctc_tracks(gt / "TRA" / "man_track.txt"))
    result = run("tracking", "--pred", tmp_path / "01_RES", "--truth", gt, "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["TRA"] == summary["SEG"] == summary["division_f1"] == 1.0
    assert summary["n_frames"] == 65
