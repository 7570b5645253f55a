"""The flow_field schema: targets and post-processing on hand-made cells, augmentation of flows, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cytolens.errors import InvalidModelError
from cytolens.metrics.segmentation import match
from cytolens.models import load
from cytolens.tasks.segmentation import SCHEMAS, deep_watershed, flow_field
from cytolens.tasks.segmentation.training import make_loss, target_kind
from cytolens.train.sampler import turn_vectors

torch.set_num_threads(1)


def outputs_from(labels: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """What a perfect network (plus noise on its flows) would output for ``labels``."""
    fg, fy, fx = flow_field.targets(labels)
    rng = np.random.default_rng(seed)
    flows = flow_field.FLOW_SCALE * np.stack([fy, fx]) + noise * rng.standard_normal((2, *labels.shape))
    return np.concatenate([(20 * (fg - 0.5))[None], flows]).astype(np.float32)


def u_shape(size: int = 48) -> np.ndarray:
    labels = np.zeros((size, size), np.int32)
    labels[6:42, 6:15] = 1      # left arm
    labels[33:42, 6:42] = 1     # base
    labels[6:42, 33:42] = 1     # right arm
    return labels


def exact(truth: np.ndarray, pred: np.ndarray) -> bool:
    m = match(truth.astype(np.int64), pred.astype(np.int64), 0.9)
    return m.tp == m.n_true == m.n_pred


def test_flows_point_along_the_cell_towards_its_centre():
    labels = u_shape()
    flows = flow_field.flows(labels)
    assert np.allclose(np.hypot(*flows)[labels > 0], 1, atol=1e-5) and not flows[:, labels == 0].any()
    # the tips of the arms flow back along the arm (down, towards the base), not across the gap
    assert flows[0, 7, 10] > 0.9 and flows[0, 7, 37] > 0.9
    # and the centre is on the base, inside the cell: the median pixel of the U is in its gap
    cy, cx = flow_field._centre(labels > 0)
    assert labels[cy, cx] == 1 and cy >= 33


def dumbbell() -> np.ndarray:
    """A cell of two round lobes joined by a narrow neck (a migrating cell's outline)."""
    yy, xx = np.mgrid[:40, :70]
    lobes = ((yy - 20) ** 2 + (xx - 14) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 55) ** 2 <= 100)
    return (lobes | ((abs(yy - 20) <= 2) & (xx >= 14) & (xx <= 55))).astype(np.int32)


def test_non_convex_cells_stay_one_object_where_the_distance_watershed_cuts_them():
    for labels in (u_shape(), dumbbell()):
        assert exact(labels, flow_field.postprocess(outputs_from(labels)))
        assert exact(labels, flow_field.postprocess(outputs_from(labels, noise=1.0)))  # noisy flows: still one
    labels = dumbbell()
    maps = np.clip(np.stack(deep_watershed.targets(labels)), 1e-4, 1 - 1e-4)
    assert deep_watershed.postprocess(np.log(maps / (1 - maps))).max() == 2  # a marker per lobe: cut in two


def test_two_touching_cells_and_a_cell_in_a_u_are_separated():
    labels = np.zeros((40, 60), np.int32)
    labels[5:35, 5:30] = 1
    labels[5:35, 30:55] = 2  # touching along a whole side
    assert exact(labels, flow_field.postprocess(outputs_from(labels, noise=0.5)))
    nested = u_shape()
    nested[6:33, 15:33] = 2  # a cell filling the U's gap, touching all three sides
    pred = flow_field.postprocess(outputs_from(nested, noise=0.5))
    assert exact(nested, pred)


def test_post_processing_drops_small_objects_and_refuses_wrong_outputs():
    labels = np.zeros((30, 30), np.int32)
    labels[2:20, 2:20] = 1
    labels[25:27, 25:27] = 2  # 4 pixels
    assert flow_field.postprocess(outputs_from(labels), min_size=8).max() == 1
    assert flow_field.postprocess(outputs_from(labels), min_size=1, min_sink=1).max() == 2
    assert not flow_field.postprocess(np.full((3, 8, 8), -10, np.float32)).any()
    with pytest.raises(InvalidModelError, match="flow_field"):
        flow_field.postprocess(np.zeros((2, 8, 8), np.float32))


@pytest.mark.parametrize(("flip", "k"), [(True, 0), (False, 1), (False, 2), (True, 3)])
def test_flipped_and_turned_crops_keep_flows_that_fit_their_labels(flip, k):
    """Moving the pixels and turning the vectors gives the targets of the moved labels."""
    labels = u_shape(40)
    labels[2:12, 20:30] = 2
    targets = flow_field.targets(labels)
    moved_labels, moved = labels, targets
    if flip:
        moved_labels, moved = np.flip(moved_labels, -1), np.flip(moved, -1)
    moved_labels, moved = np.rot90(moved_labels, k, axes=(0, 1)), np.rot90(moved, k, axes=(1, 2))
    moved = turn_vectors(moved, flow_field.VECTOR_TARGETS, flip=flip, k=0)
    moved = turn_vectors(moved, flow_field.VECTOR_TARGETS, k=k)
    recomputed = flow_field.targets(np.ascontiguousarray(moved_labels))
    inside = moved_labels > 0
    # the centre pixel may move by one on even-sized objects: compare directions (cosine) almost everywhere
    cosine = (moved[1] * recomputed[1] + moved[2] * recomputed[2])[inside]
    assert np.mean(cosine > 0.7) > 0.9
    assert target_kind("flow_field").vector_channels == ((1, 2),)


def test_the_loss_is_zero_only_for_the_right_flows():
    labels = u_shape(32)
    targets = torch.from_numpy(flow_field.targets(labels))[None]
    perfect = torch.from_numpy(outputs_from(labels))[None]
    loss = make_loss("flow_field")
    assert float(loss(perfect, targets)) < 0.01
    assert float(loss(-perfect, targets)) > 10 * float(loss(perfect, targets)) + 1


@pytest.mark.filterwarnings("ignore:model 'tiny_flows' is unsure")
def test_flow_field_trains_through_the_generic_loop(tmp_path):
    from cytolens.io import write_image, write_labels
    from cytolens.train import run

    rng = np.random.default_rng(0)
    for k in range(6):
        labels = np.zeros((48, 48), np.uint16)
        labels[4:20, 4:20], labels[4:20, 20:40] = 1, 2
        labels[26:44, 8:14], labels[38:44, 8:40] = 3, 3  # an L
        labels = np.rot90(labels, k % 4).copy()
        image = 100 + 800 * (labels > 0) - 300 * (np.roll(labels, 1, 1) != labels) + rng.normal(0, 30, labels.shape)
        write_image(tmp_path / "images" / f"im{k}.tif", image.astype(np.float32))
        write_labels(tmp_path / "labels" / f"im{k}.tif", labels)
    config = {"name": "tiny_flows", "schema": "flow_field",
              "data": {"images": str(tmp_path / "images"), "labels": str(tmp_path / "labels"), "val_fraction": 0.34},
              "architecture": {"depth": 2, "base_channels": 4},
              "optimization": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "crop_size": 32, "patience": 0},
              "target_diameter": 20, "output": str(tmp_path / "model")}
    result = run(config, progress=False)
    package = load(result.package)
    meta = json.loads((result.package / "model.json").read_text())
    assert meta["schema"] == "flow_field" and meta["postprocess"]["steps"] == 200
    assert SCHEMAS[meta["schema"]] is flow_field and np.isfinite(result.history[-1]["val_loss"])
    import cytolens

    labels = cytolens.segment(np.zeros((40, 40)) + np.eye(40), package, diameter=20)
    assert labels.shape == (40, 40)  # untrained after two steps: any labels, the whole path runs
