"""Classification: a tiny synthetic set of three shapes a model must separate, trained through the task seam
and used from the API and the CLI; class weights, cell crops at borders, and every bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

import cytolens
from cytolens.cli import app
from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError
from cytolens.io import write_image
from cytolens.tasks.classification.data import cell_crops, class_weights
from cytolens.tasks.classification.task import ClassBatches, make_loss_fn

CLASSES = ("bar", "disk", "ring")
runner = CliRunner()


def shape_image(kind: str, rng: np.random.Generator, size: int = 32, channels: int = 2) -> np.ndarray:
    """A (Y, X, C) uint16 image of one bright shape: a filled disk, a ring or a bar; noisy, jittered.

    Channel 0 holds the shape; channel 1 is noise only (a channel a model may leave out).
    """
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    radius = rng.uniform(8, 11)
    r = np.hypot(yy - cy, xx - cx)
    if kind == "disk":
        shape = r < radius
    elif kind == "ring":
        shape = (r < radius) & (r > radius - 3)
    else:
        shape = (abs(yy - cy) < 2.5) & (abs(xx - cx) < radius)
    image = rng.normal(100, 8, (size, size, channels))
    image[..., 0] += 400 * shape
    return np.clip(image, 0, None).astype(np.uint16)


def write_set(folder, n_per_class: int, seed: int, channels: int = 2) -> None:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        for k in range(n_per_class):
            write_image(folder / kind / f"{kind}{k:02d}.tif", shape_image(kind, rng, channels=channels), axes="YXC")


def config_for(tmp_path, **changes) -> dict:
    config = {"task": "classification", "name": "shapes", "data": {"images": str(tmp_path / "train"),
                                                                   "val_fraction": 0.25},
              "input": {"channels": [0]},
              "architecture": {"name": "resnet", "depth": 2, "base_channels": 8},
              "augmentation": {"flips": True, "rotations": True, "scale_range": [1.0, 1.0], "intensity": 0.05},
              "optimization": {"epochs": 10, "steps_per_epoch": 8, "batch_size": 12, "crop_size": 32,
                               "learning_rate": 0.01, "patience": 0, "device": "cpu"},
              "license": "CC0-1.0 (synthetic)", "output": str(tmp_path / "shapes_model")}
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by ``cytolens train`` on 3 x 12 images, only channel 0 of the 2 in the files."""
    torch.set_num_threads(1)
    tmp_path = tmp_path_factory.mktemp("shapes")
    write_set(tmp_path / "train", 12, seed=0)
    write_set(tmp_path / "new", 6, seed=1)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_for(tmp_path)))
    result = runner.invoke(app, ["train", str(config_path), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp_path, tmp_path / "shapes_model"


def test_a_model_separates_three_synthetic_shapes_on_new_images(trained):
    tmp_path, package = trained
    meta = cytolens.models.read_meta(package)
    assert meta["classes"] == list(CLASSES) and meta["input"]["file_channels"] == [0]
    assert meta["architecture"]["name"] == "resnet" and meta["input"]["channels"] == 1
    files = sorted((tmp_path / "new").rglob("*.tif"))
    table = cytolens.classify([str(f) for f in files], model=package)
    truth = [f.parent.name for f in files]
    assert (table["predicted"] == truth).mean() >= 0.9
    probabilities = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    # every evaluation wrote per-class scores and the confusion matrix
    evaluation = tmp_path / "shapes_model.work" / "evaluation"
    confusion = pd.read_csv(evaluation / "val_confusion.csv", index_col=0)
    assert list(confusion.columns) == list(CLASSES) and confusion.to_numpy().sum() == 9
    assert (evaluation / "val_confusion.png").stat().st_size > 0
    assert set(pd.read_csv(evaluation / "val_per_class.csv").columns) >= {"label", "precision", "recall", "f1"}


def test_cli_classify_writes_path_predicted_and_a_probability_per_class(trained):
    tmp_path, package = trained
    out = tmp_path / "table.csv"
    result = runner.invoke(app, ["classify", str(tmp_path / "new"), "--model", str(package), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "predicted", *(f"p_{c}" for c in CLASSES)]
    assert len(table) == 18  # the folder searched recursively: 3 class folders x 6
    again = runner.invoke(app, ["classify", str(tmp_path / "new"), "--model", str(package), "-o", str(out)])
    assert again.exit_code == 1 and "exists" in again.output


def test_cells_of_a_label_image_one_row_each_and_embedding_with_clusters(trained, tmp_path):
    _, package = trained
    rng = np.random.default_rng(5)
    # a 2-channel field of four cells, two of them cut by the border
    field = np.full((64, 96, 2), 100, np.uint16)
    labels = np.zeros((64, 96), np.uint16)
    corners = [(0, 0, "disk"), (16, 32, "ring"), (32, 64, "bar"), (40, 0, "disk")]
    for k, (y, x, kind) in enumerate(corners, start=1):
        tile = shape_image(kind, rng)
        patch = field[y:y + 32, x:x + 32]
        patch[...] = tile[:patch.shape[0], :patch.shape[1]]
        labels[y:y + 32, x:x + 32][tile[:patch.shape[0], :patch.shape[1], 0] > 300] = k
    write_image(tmp_path / "field.tif", field, axes="YXC")
    write_image(tmp_path / "labels.tif", labels)
    out = tmp_path / "cells.csv"
    result = runner.invoke(app, ["classify", str(tmp_path / "field.tif"), "--labels", str(tmp_path / "labels.tif"),
                                 "--model", str(package), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:3]) == ["path", "label", "predicted"] and table["label"].tolist() == [1, 2, 3, 4]
    assert table.loc[1:2, "predicted"].tolist() == ["ring", "bar"]  # the two cells inside the field

    result = runner.invoke(app, ["embed", str(tmp_path / "field.tif"), "--labels", str(tmp_path / "labels.tif"),
                                 "--model", str(package), "--clusters", "2", "-o", str(tmp_path / "emb")])
    assert result.exit_code == 0, result.output
    embedding = pd.read_csv(tmp_path / "emb" / "embedding.csv")
    assert {"label", "cluster", "pc1", "pc2", "area", "f0", "f15"} <= set(embedding.columns)
    assert set(embedding["cluster"]) <= {0, 1} and len(embedding) == 4
    assert (tmp_path / "emb" / "embedding.png").stat().st_size > 0


def test_embed_images_groups_the_shapes(trained):
    tmp_path, package = trained
    files = sorted((tmp_path / "new").rglob("*.tif"))
    table = cytolens.embed([str(f) for f in files], model=package, clusters=3)
    truth = np.array([f.parent.name for f in files])
    # each cluster is dominated by one shape (the features separate what the head separates)
    purity = sum(pd.Series(truth[table["cluster"] == k]).value_counts().iloc[0] for k in set(table["cluster"]))
    assert purity / len(files) >= 0.8


def test_the_class_weight_formula():
    # N_total / (N_class * N_classes): 6 / (3 * 3), 6 / (2 * 3), 6 / (1 * 3)
    np.testing.assert_allclose(class_weights([0, 0, 0, 1, 1, 2], 3), [2 / 3, 1.0, 2.0])
    np.testing.assert_allclose(class_weights([1, 1], 3), [0.0, 2 / (2 * 3), 0.0])  # absent classes weigh 0
    outputs = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([0, 0, 1, 2])
    per_item = torch.nn.functional.cross_entropy(outputs, targets, reduction="none")
    w = torch.tensor([4 / (2 * 3), 4 / (1 * 3), 4 / (1 * 3)])[targets]
    expected = float((w * per_item).sum() / w.sum())
    assert make_loss_fn("batch", 3, [0])(outputs, targets).item() == pytest.approx(expected)
    # over the training set: the weights of the training counts, whatever the batch holds
    train_w = torch.tensor(class_weights([0, 1, 1, 1, 2, 2], 3), dtype=torch.float32)[targets]
    expected = float((train_w * per_item).sum() / train_w.sum())
    assert make_loss_fn("dataset", 3, [0, 1, 1, 1, 2, 2])(outputs, targets).item() == pytest.approx(expected)
    assert make_loss_fn("none", 3, [0])(outputs, targets).item() == pytest.approx(float(per_item.mean()))


def test_balanced_sampling_draws_every_class_about_equally(tmp_path):
    from cytolens.tasks.classification.config import ClassificationTrainConfig
    from cytolens.tasks.classification.task import Sample

    info = {"classes": ["a", "b"]}
    samples = [Sample(str(k), np.zeros((1, 32, 32), np.float32), int(k >= 90), "x", "train", info) for k in range(100)]
    counts = {}
    for sampling, weights in (("balanced", "none"), ("random", "dataset")):
        config = ClassificationTrainConfig.model_validate(
            config_for(tmp_path, imbalance={"sampling": sampling, "class_weights": weights},
                       optimization={"steps_per_epoch": 20, "batch_size": 20}))
        targets = torch.cat([t for _, t in ClassBatches(samples, config, 0)])
        counts[sampling] = int((targets == 1).sum())
    assert 150 <= counts["balanced"] <= 250 and counts["random"] == 40  # of 400 draws; 10 % are class b


def test_crops_at_image_borders_are_padded_and_centred():
    image = np.arange(100, dtype=np.float32).reshape(1, 10, 10) + 1
    labels = np.zeros((10, 10), np.int32)
    labels[0:2, 0:2] = 1  # the top-left corner, centre (0.5, 0.5) → pixel (0, 0) after rounding
    labels[5, 8:10] = 2  # the right edge
    crops, masks, ids = cell_crops(image, labels, 6)
    assert crops.shape == (2, 1, 6, 6) and ids.tolist() == [1, 2]
    # crop 1 spans rows/cols -3..2: 3 padded rows and columns of zeros, then the image
    assert (crops[0, 0, :3] == 0).all() and (crops[0, 0, :, :3] == 0).all()
    assert crops[0, 0, 3, 3] == image[0, 0, 0] and crops[0, 0, 5, 5] == image[0, 2, 2]
    assert masks[0].sum() == 4 and masks[0][3:5, 3:5].all()
    # crop 2 centred on (5, 8.5) → column 8 (round half to even) spans columns 5..10: one padded column
    assert (crops[1, 0, :, 5] == 0).all() and crops[1, 0, 3, 3] == image[0, 5, 8]
    assert masks[1].sum() == 2


def test_bad_inputs_are_one_line_errors(trained, tmp_path):
    _, package = trained
    # an empty label image
    with pytest.raises(InvalidImageError, match="empty: it has no objects"):
        cytolens.classify(np.zeros((32, 32, 2)), model=package, labels=np.zeros((32, 32), int))
    # an image without the channel the model uses (it takes channel 0 of a file; this one has it) ...
    assert len(cytolens.classify(np.zeros((32, 32, 1)), model=package)) == 1
    # ... and a model that takes all channels of a 2-channel file, given 3
    with pytest.raises(InvalidImageError, match="has 3 channel\\(s\\) but the model takes 2"):
        from cytolens.tasks.classification.data import select_channels

        select_channels(np.zeros((8, 8, 3)), None, "the image", 2)
    with pytest.raises(InvalidImageError, match="uses channel\\(s\\) 0, 2"):
        select_channels(np.zeros((8, 8, 2)), [0, 2])

    # a training CSV with a class the config does not list, and a class without images
    write_set(tmp_path / "t", 2, seed=3)
    rows = [{"path": str(p.relative_to(tmp_path)), "class": p.parent.name} for p in (tmp_path / "t").rglob("*.tif")]
    rows.append({"path": "t/extra.tif", "class": "triangle"})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    bad_csv = config_for(tmp_path, data={"images": None, "table": str(tmp_path / "train.csv"),
                                         "classes": list(CLASSES)})
    with pytest.raises(InvalidParameterError, match="class\\(es\\) 'triangle' that are not among data.classes"):
        cytolens.train(bad_csv, progress=False)
    (tmp_path / "t" / "triangle").mkdir()
    with pytest.raises(InvalidParameterError, match="class\\(es\\) 'triangle' have no images"):
        cytolens.train(config_for(tmp_path, data={"images": str(tmp_path / "t")}), progress=False)

    # the CLI: one line, exit 1, no traceback
    write_image(tmp_path / "rgb.png", np.zeros((32, 32, 3), np.uint8))
    write_image(tmp_path / "empty.tif", np.zeros((32, 32), np.uint16))
    result = runner.invoke(app, ["classify", str(tmp_path / "rgb.png"), "--labels", str(tmp_path / "empty.tif"),
                                 "--model", str(package), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "no objects" in result.output


def test_a_model_that_takes_all_channels_refuses_another_count(tmp_path):
    """Trained on 2-channel files (no input.channels), it refuses a 3-channel image in one line."""
    torch.set_num_threads(1)
    write_set(tmp_path / "train", 4, seed=0)
    config = config_for(tmp_path, input={"channels": None},
                        optimization={"epochs": 1, "steps_per_epoch": 1, "batch_size": 4})
    package = cytolens.train(config, progress=False).package
    assert cytolens.models.read_meta(package)["input"]["file_channel_count"] == 2
    write_image(tmp_path / "rgb.png", np.zeros((32, 32, 3), np.uint8))
    result = runner.invoke(app, ["classify", str(tmp_path / "rgb.png"), "--model", str(package),
                                 "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "has 3 channel(s) but the model takes 2" in result.output
    assert isinstance(CytolensError("x"), Exception)


def test_transfer_keeps_the_encoder_with_other_classes_and_channels():
    from cytolens.nn.resnet import ResNetClassifier
    from cytolens.train.transfer import load_parent_weights

    parent = ResNetClassifier(3, 8, 2, 8)
    child = ResNetClassifier(2, 7, 2, 8)
    head_before = child.head.weight.clone()
    load_parent_weights(child, parent.state_dict())
    assert torch.equal(child.stages[1].body[0].weight, parent.stages[1].body[0].weight)
    assert torch.equal(child.head.weight, head_before)  # 7 classes, not 8: a fresh head
    expected = parent.stem[0].weight.mean(1, keepdim=True).repeat(1, 2, 1, 1) * 1.5
    assert torch.allclose(child.stem[0].weight, expected)


def test_train_from_a_csv_of_cells_with_the_mask_channel(tmp_path):
    """``data.table`` rows with ``labels, label``: crops centred on each cell, the mask as an extra channel."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    rows = []
    for k in range(4):
        field = np.full((40, 80, 2), 100, np.uint16)
        labels = np.zeros((40, 80), np.uint16)
        for j, kind in enumerate(("disk", "ring")):
            tile = shape_image(kind, rng)
            field[4:36, 40 * j + 4:40 * j + 36] = tile
            labels[4:36, 40 * j + 4:40 * j + 36][tile[..., 0] > 300] = j + 1
            rows.append({"path": f"f{k}.tif", "class": kind, "labels": f"f{k}_labels.tif", "label": j + 1})
        write_image(tmp_path / f"f{k}.tif", field, axes="YXC")
        write_image(tmp_path / f"f{k}_labels.tif", labels)
    pd.DataFrame(rows).to_csv(tmp_path / "cells.csv", index=False)
    config = config_for(tmp_path, data={"images": None, "table": str(tmp_path / "cells.csv")},
                        input={"mask_channel": True, "cell_crop": 32},
                        optimization={"epochs": 1, "steps_per_epoch": 1, "batch_size": 4})
    result = cytolens.train(config, progress=False)
    meta = cytolens.models.read_meta(result.package)
    assert meta["classes"] == ["disk", "ring"] and meta["input"]["channels"] == 2  # channel 0 + the mask
    assert result.split_sizes == {"train": 6, "val": 2, "test": 0}
    table = cytolens.classify(tmp_path / "f0.tif", model=result.package, labels=tmp_path / "f0_labels.tif")
    assert table["label"].tolist() == [1, 2] and list(table.columns[-2:]) == ["p_disk", "p_ring"]


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pbc_blood_cells" / "images"


@pytest.mark.shared_data
def test_the_bundled_blood_cells_model_on_its_validation_images():
    """Three validation images per class (from training/blood-cells/split.json), read from ../shared/data."""
    if not SHARED.is_dir():
        pytest.skip(f"needs the PBC blood-cell images in {SHARED} (../shared/data)")
    split = json.loads((Path(__file__).resolve().parents[1] / "training" / "blood-cells" / "split.json").read_text())
    chosen = [i for k, i in enumerate(split["val"]) if k % 23 < 3]
    files = [next((SHARED / i).parent.glob(Path(i).name + ".*")) for i in chosen]
    table = cytolens.classify([str(f) for f in files], model="blood-cells")
    assert (table["predicted"] == [Path(i).parent.name for i in chosen]).mean() >= 0.85
