"""Tiny end-to-end training workflows on synthetic disks: train (CLI), transfer, tune, learning curve, benchmarks.

Networks are depth 2 (or 1), width 4, trained for 1-2 epochs of 2 steps on 48×48 images:
these tests check the plumbing and the files written, not the accuracy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer
import yaml
from skimage.draw import disk
from typer.testing import CliRunner

from cytolens.cli import train_cmds
from cytolens.errors import InvalidImageError, InvalidParameterError, OutputExistsError
from cytolens.io import write_image, write_labels
from cytolens.train import learning_curve, load_config, run, tune
from cytolens.train.config import validate_config
from cytolens.train.search import _verdict, apply_params


def write_disks(folder: Path, n: int, seed: int, prefix: str = "img", size: int = 48) -> None:
    """``n`` images of 3-5 bright disks (radius 4-6) on a noisy background, and their label images."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        labels = np.zeros((size, size), np.uint16)
        for label in range(1, int(rng.integers(3, 6)) + 1):
            radius = int(rng.integers(4, 7))
            centre = tuple(int(c) for c in rng.integers(radius, size - radius, 2))
            rr, cc = disk(centre, radius, shape=labels.shape)
            free = labels[rr, cc] == 0
            labels[rr[free], cc[free]] = label
        image = 100 + 800 * (labels > 0) + rng.normal(0, 40, labels.shape)
        write_image(folder / "images" / f"{prefix}{k:02d}.tif", image.astype(np.float32))
        write_labels(folder / "labels" / f"{prefix}{k:02d}.tif", labels)


TINY = {
    "name": "tiny",
    "data": {"images": "data/images", "labels": "data/labels", "val_fraction": 0.2, "test_fraction": 0.1,
             "split_file": "split.json"},
    "architecture": {"depth": 2, "base_channels": 4},
    "optimization": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "crop_size": 32, "patience": 0},
    "target_diameter": 10,
    "output": "models/tiny",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Keep the CPU light: one torch thread per test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Eight synthetic images with labels and the tiny recipe ``config.yaml`` that trains on them."""
    root = tmp_path_factory.mktemp("train_data")
    write_disks(root / "data", 8, seed=0)
    write_config(root)
    return root


def write_config(folder: Path, name: str = "config.yaml", **changes) -> Path:
    raw = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        elif value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


def cli() -> typer.Typer:
    app = typer.Typer()
    train_cmds.register(app)
    return app


@pytest.fixture(scope="module")
def trained(dataset) -> Path:
    """A tiny package trained through ``cytolens train``."""
    config = write_config(dataset)
    result = CliRunner().invoke(cli(), ["train", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    return dataset / "models" / "tiny"


def test_cli_train_writes_a_complete_package(trained, dataset):
    meta = json.loads((trained / "model.json").read_text())
    assert {"model.json", "weights.safetensors", "train_config.yaml", "split.json", "history.csv",
            "curves.png"} <= {p.name for p in trained.iterdir()}
    assert meta["training"]["epochs_run"] == 2 and meta["training"]["parent"] is None
    assert meta["training"]["split_sizes"] == {"train": 5, "val": 2, "test": 1}
    assert json.loads((dataset / "split.json").read_text()) == json.loads((trained / "split.json").read_text())
    assert list(pd.read_csv(trained / "history.csv").columns[:5]) == ["epoch", "lr", "train_loss", "val_loss",
                                                                      "val_ap50"]
    # the saved config trains the same model again, from the package's folder, on the package's split
    retrained, original = load_config(trained / "train_config.yaml"), load_config(dataset / "config.yaml")
    assert retrained.data.images.resolve() == original.data.images.resolve()
    assert retrained.data.labels.resolve() == original.data.labels.resolve()
    assert retrained.data.split_file.resolve() == (trained / "split.json").resolve()
    assert retrained.output.resolve() == trained.resolve()
    for section in ("architecture", "augmentation", "optimization", "seed", "schema_"):
        assert getattr(retrained, section) == getattr(original, section)


def test_a_checkpoint_resumes_under_the_saved_config_but_not_a_changed_one(trained, dataset):
    from cytolens.train.fitting import config_stamp as _config_stamp

    original, saved = load_config(dataset / "config.yaml"), load_config(trained / "train_config.yaml")
    # same run, other spellings: paths relative to the package, its copy of the split, another output
    assert _config_stamp(saved) == _config_stamp(original)
    faster = original.model_copy(update={"optimization": original.optimization.model_copy(
        update={"learning_rate": 0.1})})
    assert _config_stamp(faster) != _config_stamp(original)


def test_cli_refuses_to_overwrite_and_reports_bad_configs_in_one_line(trained, dataset):
    runner = CliRunner()
    result = runner.invoke(cli(), ["train", str(dataset / "config.yaml"), "--quiet"])
    assert result.exit_code == 1 and "exists; pass overwrite=True (--overwrite)" in result.output
    bad = write_config(dataset, "bad.yaml", optimization={"learning_rate": 5})
    result = runner.invoke(cli(), ["train", str(bad)])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "optimization.learning_rate" in result.output
    result = runner.invoke(cli(), ["learning-curve", str(dataset / "config.yaml"), "--fractions", "0.5,a"])
    assert result.exit_code == 1 and "--fractions must be comma-separated numbers" in result.output


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda labels: labels[:40], r"img01.tif: label image \(40, 48\) and image \(48, 48\) differ in size"),
    (lambda labels: labels.astype(np.float32) * 0.5, r"img01.tif: labels must be whole numbers"),
    (lambda labels: labels.astype(np.int32) - 1, r"img01.tif: labels must be >= 0"),
])
def test_a_bad_label_image_is_named_in_a_one_line_error(tmp_path, spoil, message):
    from cytolens.io import read_image

    write_disks(tmp_path / "data", 4, seed=1)
    labels_file = tmp_path / "data" / "labels" / "img01.tif"
    write_image(labels_file, spoil(read_image(labels_file)), overwrite=True)
    config = write_config(tmp_path, data={"test_fraction": 0.0, "val_fraction": 0.25})
    result = CliRunner().invoke(cli(), ["train", str(config), "--quiet"])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert re.search(message, result.output), result.output


def test_label_images_without_any_object_are_refused(tmp_path):
    write_disks(tmp_path / "data", 4, seed=4)
    for labels_file in (tmp_path / "data" / "labels").iterdir():
        write_labels(labels_file, np.zeros((48, 48), np.uint16), overwrite=True)
    config = write_config(tmp_path, data={"test_fraction": 0.0, "val_fraction": 0.25})
    with pytest.raises(InvalidImageError, match=r"the label images of the train split \(3\) hold no objects"):
        run(config, progress=False)


def test_an_output_blocked_by_a_file_is_refused_before_training(tmp_path):
    write_disks(tmp_path / "data", 4, seed=5)
    (tmp_path / "models").write_text("a file where the models folder should go")
    config = write_config(tmp_path, data={"test_fraction": 0.0, "val_fraction": 0.25})
    with pytest.raises(OutputExistsError, match="models is a file, not a folder"):
        run(config, progress=False)


def test_huge_label_ids_train_like_small_ones(tmp_path):
    from cytolens.io import read_image
    from cytolens.tasks.segmentation.training import checked_annotation

    write_disks(tmp_path / "data", 1, seed=2)
    image, labels = (read_image(tmp_path / "data" / folder / "img00.tif") for folder in ("images", "labels"))
    huge = np.where(labels > 0, labels.astype(np.uint64) + 2**40, 0)
    _, renumbered = checked_annotation(image, huge, "img00.tif")
    assert renumbered.dtype == np.int32 and np.array_equal(renumbered > 0, labels > 0)
    assert len(np.unique(renumbered)) == len(np.unique(labels))


def test_images_without_labels_are_named_in_a_warning(tmp_path):
    write_disks(tmp_path / "data", 5, seed=3)
    (tmp_path / "data" / "labels" / "img02.tif").unlink()
    config = write_config(tmp_path, data={"test_fraction": 0.0, "val_fraction": 0.25},
                          optimization={"epochs": 1, "steps_per_epoch": 1})
    with pytest.warns(UserWarning, match="1 file.* no partner of the same name and are left out: img02"):
        run(config, progress=False)


def test_transfer_learning_freezes_the_encoder_and_records_the_parent(trained, dataset):
    from cytolens.models import load

    config = write_config(dataset, "child.yaml", architecture=None, init_from="models/tiny",
                          freeze_encoder_epochs=1, output="models/child",
                          optimization={"epochs": 1, "warmup_epochs": 0})
    result = run(config, progress=False)
    parent, child = load(trained), load(result.package)
    assert child.meta["training"]["parent"]["name"] == "tiny"
    assert child.meta["training"]["parent"]["source"] == str(trained)
    assert child.meta["training"]["freeze_encoder_epochs"] == 1
    before, after = parent.network.state_dict(), child.network.state_dict()
    encoder = [k for k in before if k.startswith(("encoders.", "bottleneck."))]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)  # frozen: weights and BN stats
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("head."))

    mismatch = validate_config({**TINY, "init_from": str(trained), "architecture": {"depth": 3, "base_channels": 4},
                                "output": str(dataset / "models" / "x")})
    with pytest.raises(InvalidParameterError, match=r"architecture.depth is 3 but init_from \('tiny'\) has 2"):
        run(mismatch, progress=False)


def test_on_epoch_end_sees_each_row_after_its_checkpoint(tmp_path):
    write_disks(tmp_path / "data", 4, seed=6)
    config = write_config(tmp_path, data={"test_fraction": 0.0, "val_fraction": 0.25},
                          optimization={"epochs": 2, "steps_per_epoch": 1, "warmup_epochs": 0})
    seen = []

    def keep(row):  # what training/nuclei_cpu/train_keeping_epochs.py relies on
        checkpoint = torch.load(tmp_path / "models" / "tiny.work" / "last.pt", weights_only=False)
        seen.append((row["epoch"], len(checkpoint["history_rows"])))

    run(config, progress=False, on_epoch_end=keep)
    assert seen == [(1, 1), (2, 2)]


def test_receptive_field_warning_during_training(dataset):
    config = write_config(dataset, "shallow.yaml", architecture={"depth": 1}, target_diameter=24,
                          output="models/shallow", optimization={"epochs": 1, "steps_per_epoch": 1, "crop_size": 48})
    with pytest.warns(UserWarning, match=r"receptive field too small.*sees only 18 px.*set architecture.depth: 2"):
        result = run(config, progress=False)
    meta = json.loads((result.package / "model.json").read_text())
    assert meta["training"]["warnings"] and "architecture.depth: 2" in meta["training"]["warnings"][0]


def test_splits_from_folders_and_groups(tmp_path):
    from cytolens.train.splits import make_data_split

    write_disks(tmp_path / "train", 6, seed=1)
    write_disks(tmp_path / "val", 2, seed=2, prefix="val")
    config = write_config(tmp_path, data={"images": "train/images", "labels": "train/labels",
                                          "val_images": "val/images", "val_labels": "val/labels",
                                          "test_fraction": 0.2, "split_file": None})
    split, _, _ = make_data_split(load_config(config))
    assert split["val"] == ["val00", "val01"] and len(split["test"]) == 2 and len(split["train"]) == 4

    pd.DataFrame({"id": [f"img{k:02d}" for k in range(6)], "donor": list("aabbcc")}).to_csv(tmp_path / "ids.csv")
    grouped = write_config(tmp_path, "grouped.yaml", data={
        "images": "train/images", "labels": "train/labels", "strata_csv": "ids.csv", "group_column": "donor",
        "val_fraction": 0.3, "test_fraction": 0.3, "split_file": None})
    split, _, _ = make_data_split(load_config(grouped))
    donor = dict(zip([f"img{k:02d}" for k in range(6)], "aabbcc"))
    donors = [{donor[i] for i in split[side]} for side in ("train", "val", "test")]
    assert all(len(d) == 1 for d in donors) and len(set.union(*donors)) == 3  # one whole donor per side
    missing = write_config(tmp_path, "missing.yaml", data={
        "images": "train/images", "labels": "train/labels", "strata_csv": "ids.csv", "stratify_column": "site",
        "split_file": None})
    with pytest.raises(InvalidParameterError, match="has no column 'site'"):
        make_data_split(load_config(missing))


def test_tiny_tuning_run(dataset):
    space = {"learning_rate": ("log", 1e-3, 1e-2), "weight_decay": ("log", 1e-6, 1e-3),
             "base_channels": ("categorical", [4, 8]), "depth": ("int", 1, 2), "augmentation_strength": ("float", 0, 1)}
    result = tune(dataset / "config.yaml", 3, dataset / "tune", search_space=space, progress=False)
    table = pd.read_csv(dataset / "tune" / "trials.csv")
    assert len(table) == 3 and {"val_ap50", "learning_rate", "depth", "state"} <= set(table.columns)
    assert (dataset / "tune" / "tuning.png").is_file()
    best = load_config(result.best_config)
    assert best.optimization.learning_rate == pytest.approx(result.best_params["learning_rate"])
    assert best.output == dataset / "tune" / "best_model"
    assert json.loads((dataset / "tune" / "summary.json").read_text())["trials"] == 3
    assert not list((dataset / "tune").glob("trial_*/last.pt"))  # checkpoints of trials are not kept


def test_apply_params_revalidates():
    config = validate_config({**TINY, "augmentation": {"preset": "fluorescence"}})
    tuned = apply_params(config, {"learning_rate": 0.003, "depth": 3, "augmentation_strength": 0.5})
    assert (tuned.optimization.learning_rate, tuned.architecture.depth) == (0.003, 3)
    assert tuned.augmentation.intensity == pytest.approx(0.125)
    with pytest.raises(InvalidParameterError, match="multiple of 2\\*\\*architecture.depth"):
        apply_params(config, {"depth": 6})
    with pytest.raises(InvalidParameterError, match="unknown search parameter 'colour'"):
        apply_params(config, {"colour": 1})


def test_tiny_learning_curve(dataset):
    result = learning_curve(dataset / "config.yaml", [0.4, 1.0], dataset / "curve", progress=False)
    table = pd.read_csv(dataset / "curve" / "learning_curve.csv")
    assert list(table["images"]) == [2, 5] and table["objects"].is_monotonic_increasing
    assert {"val_ap50", "train_ap50", "gap"} <= set(table.columns)
    assert (dataset / "curve" / "learning_curve.png").is_file()
    assert result.message and json.loads((dataset / "curve" / "summary.json").read_text())["message"] == result.message


@pytest.mark.parametrize("values, train, flattened, words", [
    ([0.50, 0.70, 0.71], None, True, ("flattened: going from 20 to 40 training images (200 to 400 objects) changed "
                                      "val_ap50 by +0.010 (< 0.02); more annotations")),
    ([0.50, 0.60, 0.70], None, False, "not flattened"),
    ([0.01, 0.02, 0.03], None, None, "undecided: the model barely fits even its training images"),
    ([0.32, 0.14, 0.43], None, None, "undecided: val_ap50 fell by 0.180 when the training set grew to 20 images"),
    # the smallest set is overfitted; from then on train = val: the model, not the data, is the limit
    ([0.69, 0.655, 0.66], [0.76, 0.645, 0.657], True, "flattened: going from 20 to 40 training images"),
    ([0.69, 0.655, 0.66], [0.76, 0.745, 0.757], None, "undecided: val_ap50 fell by 0.035"),
])
def test_learning_curve_verdict(values, train, flattened, words):
    train = train or [v + 0.05 for v in values]
    table = pd.DataFrame({"images": [10, 20, 40], "objects": [100, 200, 400], "val_ap50": values,
                          "train_ap50": train})
    verdict, message = _verdict(table, "val_ap50", "objects", threshold=0.02)
    assert verdict is flattened and message.startswith(words)
    gap_closed = all(abs(t - v) < 0.02 for t, v in zip(train[-2:], values[-2:]))
    assert ("capacity or training budget limits it" in message) == gap_closed


def test_benchmark_scripts_run_on_tiny_synthetic_data(dataset, benchmark_script):
    budget = {"optimization": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "crop_size": 32}}
    learning_curve_dsb, tuning_dsb = benchmark_script("learning_curve_dsb"), benchmark_script("tuning_dsb")
    curve = learning_curve_dsb.run_benchmark(dataset / "config.yaml", dataset / "bench_curve",
                                             (0.5, 1.0), budget=budget, progress=False)
    assert len(curve.table) == 2 and "learning_curve.png" in (dataset / "bench_curve" / "README.md").read_text()
    space = {"learning_rate": ("log", 1e-3, 1e-2), "depth": ("int", 1, 2)}
    tuned = tuning_dsb.run_benchmark(dataset / "config.yaml", dataset / "bench_tune", 2, budget=budget,
                                     search_space=space, progress=False)
    assert len(tuned.table) == 2 and (dataset / "bench_tune" / "README.md").is_file()


def test_run_accepts_mappings_and_refuses_existing_output(trained, dataset):
    raw = {**TINY, "data": {**TINY["data"], "images": str(dataset / "data" / "images"),
                            "labels": str(dataset / "data" / "labels"), "split_file": None},
           "output": str(trained)}
    with pytest.raises(OutputExistsError, match="exists"):
        run(raw, progress=False)
    import cytolens

    with pytest.raises(OutputExistsError, match="exists"):
        cytolens.train(raw, progress=False)  # the package is callable: cytolens.train(config)
    with pytest.raises(InvalidParameterError, match="data.images: folder not found"):
        cytolens.train({**raw, "data": {**raw["data"], "images": str(dataset / "nowhere")},
                        "output": str(dataset / "models" / "new")}, progress=False)


def test_pixel_classes_with_an_augmentation_preset_trains(dataset):
    config = write_config(dataset, "pixel.yaml", schema="pixel_classes", augmentation={"preset": "he"},
                          output="models/pixel", optimization={"epochs": 1})
    result = run(config, progress=False)
    meta = json.loads((result.package / "model.json").read_text())
    assert meta["schema"] == "pixel_classes" and meta["architecture"]["args"]["out_channels"] == 3
    assert load_config(result.package / "train_config.yaml").augmentation.stain == 0.05


def test_a_float16_package_is_half_the_size_and_predicts_like_float32(dataset):
    from cytolens import models

    def train(name: str, **changes) -> Path:
        config = write_config(dataset, f"{name}.yaml", output=f"models/{name}",
                              optimization={"epochs": 1, "workers": 2}, **changes)
        return run(config, progress=False).package

    half, full = train("half", weights_dtype="float16"), train("full")
    assert (half / "weights.safetensors").stat().st_size < 0.7 * (full / "weights.safetensors").stat().st_size
    half_net, full_net = models.load(half).network, models.load(full).network
    assert half_net.head.weight.dtype == torch.float32  # inference runs in float32
    # same seed and data: the two runs differ only by the rounding of the saved weights
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32))
    with torch.no_grad():
        a, b = half_net(x), full_net(x)
    assert torch.allclose(a, b, atol=0.02 * float(b.abs().max()) + 1e-3)
    assert not torch.equal(a, b)


@pytest.mark.filterwarnings("ignore:model 'tiny' is unsure of this image")  # a one-epoch network is
def test_a_deep_watershed_parent_starts_a_contact_watershed_child(trained, dataset):
    import cytolens
    from cytolens.models import load
    from cytolens.nn import UNet
    from cytolens.train.transfer import load_parent_weights

    parent = load(trained)
    network = UNet(3, 3, 2, 4)
    load_parent_weights(network, parent.network.state_dict())
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32))
    network.eval()
    with torch.no_grad():
        child_out, parent_out = network(x), parent.network(x)
    assert torch.allclose(child_out[:, :2], parent_out, atol=1e-5)  # the parent's channels carry over
    assert torch.allclose(child_out[:, 2], torch.tensor(-4.0))  # the new channel starts at "rarely present"
    with pytest.raises(InvalidParameterError, match="shape"):
        load_parent_weights(UNet(3, 3, 2, 8), parent.network.state_dict())

    config = write_config(dataset, "contact.yaml", schema="contact_watershed", architecture=None,
                          init_from="models/tiny", output="models/contact", optimization={"epochs": 1})
    child = load(run(config, progress=False).package)
    assert child.meta["schema"] == "contact_watershed" and child.meta["architecture"]["args"]["out_channels"] == 3
    assert child.meta["postprocess"]["contact_weight"] == 1.0
    assert child.meta["training"]["parent"]["schema"] == "deep_watershed"
    image = np.zeros((40, 40), np.float32)
    image[10:20, 10:20] = 1.0
    assert cytolens.segment(image, child, diameter=10).shape == (40, 40)


def test_a_pixel_classes_parent_cannot_start_a_contact_watershed_child(dataset):
    pixel = write_config(dataset, "pixel_parent.yaml", schema="pixel_classes", output="models/pixel_parent",
                         optimization={"epochs": 1})
    run(pixel, progress=False)
    config = write_config(dataset, "bad_child.yaml", schema="contact_watershed", architecture=None,
                          init_from="models/pixel_parent", output="models/bad_child")
    with pytest.raises(InvalidParameterError, match="predicts schema 'pixel_classes'"):
        run(config, progress=False)
