"""The object filter: per-object features on hand-made cases, the exported trees, and its use in segment."""

import dataclasses

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import cytolens
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import InvalidModelError, InvalidParameterError
from cytolens.models import load
from cytolens.tasks.segmentation import object_filter as of
from cytolens.tasks.segmentation.inference import segment_outputs, tile_preparer

COLUMN = {name: i for i, name in enumerate(of.FEATURES)}


def two_squares_touching_and_a_faint_speck():
    """Objects 1 and 2: 10×10 squares sharing an edge; 3: a 3×3 speck of low foreground, away from both."""
    labels = np.zeros((40, 40), np.uint32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2
    labels[30:33, 30:33] = 3
    outputs = np.full((3, 40, 40), -6.0, np.float32)
    outputs[0][labels > 0] = 6.0
    outputs[0][labels == 3] = 0.0  # foreground probability 0.5
    outputs[1][labels > 0] = 2.0
    outputs[2][5:15, 14:16] = 6.0  # the contact between 1 and 2
    image = np.full((40, 40, 1), 10.0, np.float32)
    image[labels > 0] = 110.0
    image[labels == 3] = 12.0
    image += np.random.default_rng(0).normal(0, 1, image.shape).astype(np.float32)
    return labels, outputs, image


def test_features_of_hand_made_objects():
    labels, outputs, image = two_squares_touching_and_a_faint_speck()
    f = of.object_features(labels, outputs, image, low=10.0, high=110.0, scale=2.0)
    assert f.shape == (3, len(of.FEATURES))
    np.testing.assert_allclose(f[:, COLUMN["log_area"]], np.log(np.array([100, 100, 9]) * 4.0))
    np.testing.assert_allclose(f[:, COLUMN["relative_area"]], [1.0, 1.0, 0.09])
    np.testing.assert_allclose(f[:, COLUMN["foreground_mean"]], [1 / (1 + np.exp(-6))] * 2 + [0.5], rtol=1e-6)
    # each square borders the other along one of its four sides; the speck borders nothing
    np.testing.assert_allclose(f[:, COLUMN["touching"]], [0.25, 0.25, 0.0])
    assert f[0, COLUMN["contact_max"]] > 0.99 and f[2, COLUMN["contact_max"]] < 0.01
    assert f[0, COLUMN["contrast"]] > 50 > f[2, COLUMN["contrast"]] > 0
    np.testing.assert_allclose(f[:, COLUMN["solidity"]], 1.0)
    assert (f[:, COLUMN["colour"]] == 0).all()


def test_features_do_not_depend_on_the_row_bands(monkeypatch):
    image, _ = synthetic_nuclei(shape=(200, 180), n_nuclei=30, seed=3)
    nuclei = load("nuclei")
    yxc = image[..., None].astype(np.float32)
    outputs, labels, scale = segment_outputs(nuclei, yxc, tile_preparer(nuclei, yxc), diameter=20)
    whole = of.object_features(labels, outputs, yxc, 0.0, 1.0, scale)
    monkeypatch.setattr(of, "BAND_ROWS", 7)
    np.testing.assert_allclose(of.object_features(labels, outputs, yxc, 0.0, 1.0, scale), whole, rtol=1e-5)


def test_colour_means_channels_that_differ():
    gray_as_rgb = np.repeat(np.random.default_rng(1).random((30, 30, 1)), 3, axis=-1)
    assert not of.is_colour(gray_as_rgb)
    assert not of.is_colour(gray_as_rgb[..., :1])
    stained = gray_as_rgb.copy()
    stained[..., 2] *= 0.5
    assert of.is_colour(stained)


def test_exported_trees_reproduce_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    y = (x[:, 0] + x[:, 1] ** 2 + rng.normal(0, 0.5, 500)) > 1
    model = GradientBoostingClassifier(n_estimators=20, max_depth=3, subsample=0.8, random_state=0).fit(x, y)
    trees = of.BoostedTrees.from_sklearn(model)
    np.testing.assert_allclose(trees.decision_function(x), model.decision_function(x), atol=1e-9)
    np.testing.assert_allclose(trees.probability(x), model.predict_proba(x)[:, 1], atol=1e-9)


def rejects_low_foreground(threshold=0.5) -> of.ObjectFilter:
    """A one-split filter: mean foreground <= 0.8 → logit −10, else +10."""
    tree = {"feature": [COLUMN["foreground_mean"], -2, -2], "threshold": [0.8, -2.0, -2.0],
            "left": [1, -1, -1], "right": [2, -1, -1], "value": [0.0, -10.0, 10.0]}
    return of.ObjectFilter(list(of.FEATURES), threshold, of.BoostedTrees(0.0, 1.0, [tree]), {})


def test_filter_drops_rejected_objects_and_renumbers():
    labels, outputs, image = two_squares_touching_and_a_faint_speck()
    kept = rejects_low_foreground().apply(labels, outputs, image, 10.0, 110.0, 1.0)
    assert kept.max() == 2 and (kept[labels == 3] == 0).all()
    np.testing.assert_array_equal(kept[labels < 3], labels[labels < 3])
    assert labels.max() == 3  # the input is not modified


def test_filter_round_trip_and_foreign_features(tmp_path):
    original = rejects_low_foreground(0.3)
    original.save(tmp_path / "object_filter.json")
    import json

    data = json.loads((tmp_path / "object_filter.json").read_text())
    again = of.ObjectFilter.from_dict(data)
    assert again.threshold == 0.3 and again.model == original.model
    for broken in ({**data, "model": {"init": 0.0}},
                   {**data, "threshold": "high"},
                   {**data, "model": {**data["model"], "trees": [{"feature": [0], "threshold": []}]}}):
        with pytest.raises(InvalidModelError, match="malformed object filter"):
            of.ObjectFilter.from_dict(broken)
    data["features"] = data["features"][:-1]
    with pytest.raises(InvalidModelError, match="other features"):
        of.ObjectFilter.from_dict(data)


def test_segment_applies_the_package_filter_only_when_asked():
    image, _ = synthetic_nuclei(shape=(256, 256), n_nuclei=30, seed=7)
    nuclei = load("nuclei")
    everything = cytolens.segment(image, nuclei, diameter=20, filter_objects=False)
    reject_all = dataclasses.replace(nuclei, extras={**nuclei.extras,
                                                     "object_filter": rejects_low_foreground(1.01).to_dict()})
    with pytest.warns(UserWarning, match="object filter of model 'nuclei' removed 100% of the foreground"):
        assert cytolens.segment(image, reject_all, diameter=20).max() == 0
    np.testing.assert_array_equal(cytolens.segment(image, reject_all, diameter=20, filter_objects=False), everything)
    filtered = cytolens.segment(image, nuclei, diameter=20)
    assert filtered.max() <= everything.max()
    # the filter only removes objects: every kept object is one of the unfiltered ones, pixel for pixel
    for region in np.unique(filtered[filtered > 0]):
        source = np.unique(everything[filtered == region])
        assert len(source) == 1 and ((everything == source[0]) == (filtered == region)).all()


def test_fit_matching_and_per_image_ap():
    from cytolens.tasks.segmentation import object_filter_fit as script

    truth = np.zeros((20, 20), np.uint16)
    truth[2:8, 2:8] = 1  # 36 px
    truth[12:18, 12:18] = 2
    labels = np.zeros((20, 20), np.uint32)
    labels[2:8, 2:7] = 1  # 30 px inside object 1: IoU 30/36
    labels[12:14, 12:14] = 2  # 4 px inside object 2: IoU 4/36
    labels[0:2, 15:20] = 3  # on background
    np.testing.assert_allclose(script.best_iou_per_object(truth, labels), [30 / 36, 4 / 36, 0.0])
    matched = np.array([True, False, False, True])
    image = np.array(["a", "a", "a", "b"])
    everything = np.ones(4, bool)
    # image a: 1 TP, 2 FP, 1 FN -> 1/4; image b: 1 TP of 1 -> 1; image c: 3 true objects, none found -> 0
    assert script.mean_image_ap(matched, everything, image, {"a": 2, "b": 1, "c": 3}) == pytest.approx((0.25 + 1) / 3)
    dropped_false = np.array([True, False, False, True])
    assert script.mean_image_ap(matched, dropped_false, image, {"a": 2, "b": 1, "c": 3}) == pytest.approx((0.5 + 1) / 3)


@pytest.mark.parametrize("name", ["nuclei", "nuclei_fast", "cells"])
def test_bundled_object_filters_match_this_cytolens(name):
    package = load(name)
    object_filter = of.ObjectFilter.from_dict(package.extras["object_filter"])
    assert 0 < object_filter.threshold < 1
    assert "fitted_by" in object_filter.provenance
    assert package.meta["training"]["object_filter"]["threshold"] == object_filter.threshold


def test_flow_field_outputs_become_foreground_and_flow_length_maps():
    """A flow_field network has no distance output: the filter reads the flow's length in its place, so a
    cell whose flows point firmly somewhere scores like a watershed object with a high inner distance, and
    a fragment with weak, undecided flows like one with a low distance."""
    from cytolens.tasks.segmentation import flow_field

    outputs = np.zeros((3, 32, 32), np.float32)
    outputs[0] = -6.0
    outputs[0, 4:14, 4:14] = outputs[0, 20:24, 20:24] = 6.0  # a cell and a fragment, both foreground
    outputs[1, 4:14, 4:14] = 0.9 * flow_field.FLOW_SCALE      # the cell's flows: long
    outputs[2, 20:24, 20:24] = 0.1 * flow_field.FLOW_SCALE    # the fragment's: short
    maps = of.filter_maps("flow_field", outputs)
    assert maps.shape == (2, 32, 32)  # two maps: no contact channel is invented
    np.testing.assert_array_equal(maps[0], outputs[0])
    labels = np.zeros((32, 32), np.uint32)
    labels[4:14, 4:14], labels[20:24, 20:24] = 1, 2
    features = of.object_features(labels, maps, np.zeros((32, 32, 1), np.float32), 0.0, 1.0, 1.0)
    distance = features[:, COLUMN["distance_mean"]]
    assert distance[0] == pytest.approx(0.9, abs=1e-3) and distance[1] == pytest.approx(0.1, abs=1e-3)
    assert of.filter_maps("contact_watershed", outputs) is outputs  # the watershed schemas' maps as they are


def test_shape_features_agree_with_scikit_image():
    from skimage.measure import regionprops

    image, truth = synthetic_nuclei(shape=(160, 160), n_nuclei=25, seed=4)
    labels = truth.astype(np.uint32)
    outputs = np.zeros((3, *labels.shape), np.float32)
    f = of.object_features(labels, outputs, image[..., None].astype(np.float32), 0.0, 1.0, 1.0)
    props = regionprops(labels)
    for name in ("solidity", "eccentricity", "extent"):
        np.testing.assert_allclose(f[:, COLUMN[name]], [getattr(p, name) for p in props], rtol=1e-7, atol=1e-9)


def test_fit_object_filter_end_to_end_on_synthetic_data(tmp_path):
    """Half of the true nuclei are left out of the labels, so the model's objects there count as wrong."""
    import json
    import shutil

    from cytolens.io import write_image, write_labels
    from cytolens.models.package import resolve
    from cytolens.tasks.segmentation.object_filter_fit import fit_object_filter

    ids = [f"img{k}" for k in range(7)]
    for k, name in enumerate(ids):
        image, truth = synthetic_nuclei(shape=(128, 128), n_nuclei=12, seed=20 + k)
        truth = np.where(truth % 2 == 0, truth, 0)
        write_image(tmp_path / "images" / f"{name}.tif", image)
        write_labels(tmp_path / "labels" / f"{name}.tif", truth.astype(np.uint16))
    (tmp_path / "split.json").write_text(json.dumps({"train": ids[:6], "val": ids[6:], "test": []}))
    package = tmp_path / "model"
    shutil.copytree(resolve("nuclei_fast"), package)
    (package / "object_filter.json").unlink()
    config = {"name": "fit", "data": {"images": str(tmp_path / "images"), "labels": str(tmp_path / "labels"),
                                      "split_file": str(tmp_path / "split.json")},
              "output": str(package), "target_diameter": 20}
    from cytolens.train.config import validate_config

    scores = fit_object_filter(package, validate_config(config))
    assert scores["train_images"] == 6 and 0.3 < scores["matched_fraction"] < 0.7
    assert scores["threshold"] in (0.2, 0.3, 0.4, 0.5, 0.6)
    refitted = load(package)
    assert refitted.meta["training"]["object_filter"]["threshold"] == scores["threshold"]
    image, _ = synthetic_nuclei(shape=(128, 128), n_nuclei=12, seed=99)
    assert cytolens.segment(image, refitted, diameter=20).max() <= cytolens.segment(
        image, refitted, diameter=20, filter_objects=False).max()
    with pytest.raises(InvalidParameterError, match="at least 5"):
        (tmp_path / "split.json").write_text(json.dumps({"train": ids[:3], "val": ids[3:], "test": []}))
        fit_object_filter(package, validate_config(config))
    pixel_classes = tmp_path / "pixel_classes"
    shutil.copytree(resolve("nuclei_pixel_classes"), pixel_classes)
    with pytest.raises(InvalidParameterError, match="foreground and distance"):
        fit_object_filter(pixel_classes, validate_config(config))
    assert not (pixel_classes / "object_filter.json").exists()
