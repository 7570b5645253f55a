"""Fine-tuning on corrections (``cytolens finetune``) and project folders (``cytolens.project``).

A tiny parent U-Net (depth 2, width 8) is trained for a few seconds on bright synthetic nuclei
on a dark background; the "lab's" images are the same kind of nuclei with the contrast
inverted (dark nuclei on a bright background), which the parent gets wrong. Fine-tuning on a
few corrected images for seconds must lift AP@0.5 on other images of the lab's kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cytolens
import cytolens.train
from cytolens.cli import app
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.io import read_image, write_image, write_labels
from cytolens.metrics import match
from cytolens.project import Project
from cytolens.tasks.segmentation.finetune import hold_out, match_labels

DIAMETER = 10
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nuclei(seed: int, inverted: bool) -> tuple[np.ndarray, np.ndarray]:
    image, labels = synthetic_nuclei(shape=(64, 64), n_nuclei=7, diameter_range=(8, 12), touching_fraction=0.0,
                                     seed=seed)
    image = image.astype(np.float32)
    return (image.max() - image if inverted else image), labels


def write_set(folder: Path, seeds, inverted: bool, label_suffix: str = "") -> list[Path]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        image, labels = nuclei(seed, inverted)
        paths.append(write_image(folder / "images" / f"img{seed:02d}.tif", image))
        write_labels(folder / "labels" / f"img{seed:02d}{label_suffix}.tif", labels)
    return paths


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny model that segments bright nuclei on a dark background (trained for a few seconds)."""
    root = tmp_path_factory.mktemp("parent")
    write_set(root / "data", range(8), inverted=False)
    raw = {"name": "tiny", "schema": "deep_watershed", "target_diameter": DIAMETER,
           "data": {"images": str(root / "data/images"), "labels": str(root / "data/labels"), "val_fraction": 0.25,
                    "test_fraction": 0.0, "split_file": str(root / "split.json")},
           "architecture": {"depth": 2, "base_channels": 8},
           "augmentation": {"scale_range": [0.9, 1.1], "intensity": 0.1},
           "optimization": {"epochs": 6, "steps_per_epoch": 20, "batch_size": 4, "crop_size": 48, "patience": 0,
                            "learning_rate": 0.003, "device": "cpu"},
           "seed": 0, "output": str(root / "tiny")}
    cytolens.train(raw, progress=False)
    from cytolens.models import load
    from cytolens.tasks.segmentation.size_model import fit_size_model
    from cytolens.tasks.segmentation.training import median_diameter, model_input

    pairs = [nuclei(seed, inverted=False) for seed in range(8)]
    fit_size_model(load(root / "tiny").network, [model_input(image) for image, _ in pairs],
                   [median_diameter(labels) for _, labels in pairs]).save(root / "tiny" / "size_model.json")
    return root / "tiny"


def mean_ap(model, seeds, inverted: bool = True) -> float:
    aps = []
    for seed in seeds:
        image, truth = nuclei(seed, inverted=inverted)
        labels = cytolens.segment(image, model=model, diameter=DIAMETER)
        aps.append(match(truth, labels, 0.5).average_precision)
    return float(np.mean(aps))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_finetuning_lifts_a_mismatched_model_and_segment_takes_the_package(parent, tmp_path):
    images = write_set(tmp_path / "lab", range(100, 106), inverted=True, label_suffix="_labels")
    assert mean_ap(parent, range(200, 204), inverted=False) > 0.6  # a working model, on the wrong kind of image
    before = mean_ap(parent, range(200, 204))
    result = CliRunner().invoke(app, ["finetune", *map(str, images), "--labels", str(tmp_path / "lab/labels"),
                                      "--model", str(parent), "-o", str(tmp_path / "ft"), "--minutes", "0.15",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    after = mean_ap(tmp_path / "ft", range(200, 204))
    assert after > before + 0.3, (before, after)
    meta = json.loads((tmp_path / "ft" / "model.json").read_text())
    record = meta["training"]["finetune"]
    assert meta["training"]["parent"]["name"] == "tiny" and record["images"] == 6
    assert record["held_out"] and len(record["val_ids"]) == 1 and not set(record["val_ids"]) & set(record["train_ids"])
    assert meta["scale"]["target_diameter"] == DIAMETER  # the parent's object scale is kept
    assert record["size_model"]["images"] == 6 and "diameter" not in meta["scale"]  # estimates with a refitted one
    # segment --model takes the new package
    out = tmp_path / "seg"
    result = CliRunner().invoke(app, ["segment", str(images[0]), "--model", str(tmp_path / "ft"), "-o", str(out),
                                      "--diameter", str(DIAMETER), "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_image(next(out.glob("*labels*.tif"))).max() > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_corrected_image_records_its_objects_diameter(parent, tmp_path):
    images = write_set(tmp_path / "lab", [7], inverted=True)
    result = cytolens.finetune(images, tmp_path / "lab/labels", tmp_path / "ft", model=parent, minutes=0.03,
                               progress=False)
    assert not result.held_out and "validation scores are on training images" in result.messages[0]
    assert isinstance(result.object_filter, str) and "needs 5 training images" in result.object_filter
    diameter = json.loads((tmp_path / "ft/model.json").read_text())["scale"]["diameter"]
    assert 8 <= diameter <= 12  # the synthetic nuclei's 8-12 px
    _, info = cytolens.segment(nuclei(8, True)[0], model=tmp_path / "ft", return_info=True)
    assert info.diameter == diameter and not info.estimated


def test_few_images_train_all_and_say_so():
    split = hold_out(["a", "b", "c"])
    assert split["train"] == split["val"] == ["a", "b", "c"]
    split = hold_out([f"i{k}" for k in range(6)], seed=1)
    assert len(split["val"]) == 1 and not set(split["val"]) & set(split["train"])


def test_labels_are_matched_by_stem_with_or_without_a_suffix(tmp_path):
    images = write_set(tmp_path / "a", [1], inverted=True, label_suffix="_labels")
    images += write_set(tmp_path / "a", [2], inverted=True, label_suffix="")
    pairs = match_labels(images, tmp_path / "a/labels")
    assert [label.name for _, label in pairs] == ["img01_labels.tif", "img02.tif"]
    write_labels(tmp_path / "a/labels/img02_masks.tif", np.ones((64, 64), np.uint16))
    with pytest.raises(InvalidParameterError, match="img02.tif has 2 label files"):
        match_labels(images, tmp_path / "a/labels")


@pytest.mark.parametrize("case", ["no label file", "empty corrections", "no images", "output exists", "no folder",
                                  "learning rate 0"])
def test_bad_inputs_give_one_line_errors(parent, tmp_path, case):
    images = write_set(tmp_path / "lab", [1, 2], inverted=True)
    labels = tmp_path / "lab/labels"
    args = [*map(str, images)]
    if case == "no label file":
        (labels / "img02.tif").unlink()
        expected = "1 of 2 image(s) have no label file"
    elif case == "empty corrections":
        for path in labels.iterdir():
            write_labels(path, np.zeros((64, 64), np.uint16), overwrite=True)
        expected = "none of the 2 label image(s) holds an object"
    elif case == "no images":
        args = [str(tmp_path / "lab/nothing.tif")]
        expected = "not found"
    elif case == "output exists":
        (tmp_path / "ft").mkdir()
        expected = "exists; pass overwrite=True (--overwrite)"
    elif case == "no folder":
        labels = tmp_path / "nowhere"
        expected = "folder not found"
    else:
        args += ["--learning-rate", "0"]
        expected = "learning_rate must be a number between 0 and 1"
    result = CliRunner().invoke(app, ["finetune", *args, "--labels", str(labels), "--model", str(parent),
                                      "-o", str(tmp_path / "ft"), "--minutes", "0.05", "--quiet"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ft").exists() or case == "output exists"  # nothing written


def test_empty_correction_set_in_python(parent, tmp_path):
    with pytest.raises(InvalidParameterError, match="no corrected images given"):
        cytolens.finetune([], tmp_path, tmp_path / "ft", model=parent)
    project = Project.create(tmp_path / "p", model=str(parent))
    project.add_image(nuclei(1, True)[0], name="a")
    with pytest.raises(InvalidParameterError, match="no corrected images yet"):
        project.finetune(minutes=0.05, progress=False)


def test_corrections_survive_a_restart(tmp_path):
    root = tmp_path / "project"
    project = Project.create(root, model="nuclei")
    paths = write_set(tmp_path / "src", [1, 2, 3], inverted=False)
    names = [project.add_image(path) for path in paths]
    corrected = nuclei(2, False)[1]
    project.save_prediction(names[0], np.zeros((64, 64), np.uint16), model="nuclei")
    project.save_correction(names[1], corrected)
    del project  # a later session
    again = Project.open(root)
    assert again.images() == names and again.corrected() == [names[1]]
    np.testing.assert_array_equal(again.correction(names[1]), corrected)
    assert again.correction(names[0]) is None and again.prediction(names[0]) is not None
    rows = {row["name"]: row for row in again.status()}
    assert rows[names[1]]["corrected"] and rows[names[1]]["objects"] == len(np.unique(corrected)) - 1
    assert rows[names[0]]["predicted"] and not rows[names[0]]["corrected"]
    np.testing.assert_array_equal(again.read_image(names[2]), read_image(paths[2]))
    with pytest.raises(InvalidImageError, match="must match pixel for pixel"):
        again.save_correction(names[0], np.zeros((10, 10), np.uint16))
    with pytest.raises(OutputExistsError):
        again.add_image(paths[0])
    with pytest.raises(OutputExistsError):
        Project.create(root)
    with pytest.raises(CytolensError, match="not a cytolens project"):
        Project.open(tmp_path / "src")


def test_project_cli_add_and_status(tmp_path):
    paths = write_set(tmp_path / "src", [1, 2], inverted=False)
    (tmp_path / "src/labels/img02.tif").unlink()
    runner = CliRunner()
    result = runner.invoke(app, ["project", "add", str(tmp_path / "p"), str(paths[0])])
    assert result.exit_code == 0 and "1 image(s), 0 corrected" in result.output, result.output
    result = runner.invoke(app, ["project", "add", str(tmp_path / "p"), str(paths[1]), "--labels",
                                 str(tmp_path / "src/labels")])
    assert result.exit_code == 1 and "have no label file" in result.output
    write_labels(tmp_path / "src/labels/img02.tif", nuclei(2, False)[1])
    result = runner.invoke(app, ["project", "add", str(tmp_path / "p"), str(paths[1]), "--labels",
                                 str(tmp_path / "src/labels")])
    assert result.exit_code == 0 and "2 image(s), 1 corrected" in result.output, result.output
    result = runner.invoke(app, ["project", "status", str(tmp_path / "p")])
    assert result.exit_code == 0 and "img02" in result.output and "objects" in result.output


def test_the_benchmark_scores_only_images_the_bundled_model_never_saw(benchmark_script):
    bench = benchmark_script("human_in_the_loop")
    pool, held = bench.choose_images()
    split = json.loads(bench.SPLIT.read_text())
    scored = [i for ids in held.values() for i in ids]
    assert len(held["d (same group)"]) == 9 and len(held["c (other group)"]) == 4
    assert set(scored) <= set(split["test"]) and not set(scored) & set(pool)
    assert len(pool) >= 10 and not set(pool) & set(split["test"])
