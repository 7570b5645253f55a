"""Segmentation targets and post-processing on hand-made cases whose answer is obvious."""

import numpy as np
import pytest

from cytolens.errors import InvalidImageError, InvalidModelError, InvalidParameterError
from cytolens.metrics import match
from cytolens.tasks.segmentation import deep_watershed, pixel_classes
from cytolens.tasks.segmentation._common import normalized_inner_distance, remove_small_objects


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((30, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:27] = 2  # shares a border with object 1
    labels[20:26, 30:36] = 7  # an isolated object with a non-sequential id
    return labels


def logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def test_inner_distance_peaks_at_one_per_object_and_is_zero_outside():
    labels = two_touching_squares()
    distance = normalized_inner_distance(labels)
    for index in (1, 2, 7):
        assert distance[labels == index].max() == pytest.approx(1.0)
        assert distance[labels == index].min() > 0
    assert np.all(distance[labels == 0] == 0)
    # the border pixel between the touching objects is low for both objects
    assert distance[10, 14] < 0.3 and distance[10, 15] < 0.3


def test_deep_watershed_round_trip_separates_touching_objects():
    labels = two_touching_squares()
    targets = deep_watershed.targets(labels)
    assert targets.shape == (2, 30, 40)
    assert set(np.unique(targets[0])) == {0.0, 1.0}
    result = deep_watershed.postprocess(logit(targets), min_size=1)
    assert result.max() == 3
    m = match(labels, result.astype(np.int64), threshold=0.9)
    assert m.tp == 3 and m.fp == 0 and m.fn == 0


def test_deep_watershed_keeps_a_foreground_blob_without_marker():
    outputs = np.full((2, 20, 20), -10.0, np.float32)
    outputs[0, 5:12, 5:12] = 10.0  # confident foreground, but distance never above the marker threshold
    result = deep_watershed.postprocess(outputs, min_size=4)
    assert result.max() == 1 and (result > 0).sum() == 49


def test_deep_watershed_thresholds_drop_faint_and_small_objects():
    labels = two_touching_squares()
    targets = deep_watershed.targets(labels)
    outputs = logit(targets)
    outputs[0][labels == 7] = logit(np.float32(0.3))  # below the foreground threshold
    result = deep_watershed.postprocess(outputs, foreground_threshold=0.5, min_size=1)
    assert result.max() == 2
    assert deep_watershed.postprocess(logit(targets), min_size=50).max() == 2  # the 36-px object goes


def test_pixel_classes_targets_mark_inner_edges():
    labels = two_touching_squares()
    classes = pixel_classes.targets(labels)
    assert classes[0, 0] == pixel_classes.BACKGROUND
    assert classes[10, 10] == pixel_classes.INTERIOR
    assert classes[5, 10] == pixel_classes.EDGE  # top row of object 1
    assert classes[10, 14] == pixel_classes.EDGE and classes[10, 15] == pixel_classes.EDGE  # shared border
    assert np.all((classes > 0) == (labels > 0))


def test_pixel_classes_round_trip_recovers_objects():
    labels = two_touching_squares()
    classes = pixel_classes.targets(labels)
    logits = np.stack([(classes == c) * 8.0 for c in range(3)]).astype(np.float32)
    result = pixel_classes.postprocess(logits, min_size=1)
    m = match(labels, result.astype(np.int64), threshold=0.9)
    assert (m.tp, m.fp, m.fn) == (3, 0, 0)


def test_pixel_class_weights_are_inverse_frequency():
    class_map = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2]])
    w = pixel_classes.class_weights([class_map])
    # counts 6, 2, 4 -> raw 12/6/3, 12/2/3, 12/4/3 = 2/3, 2, 1 -> divided by their mean 11/9
    assert w == pytest.approx(np.array([2 / 3, 2, 1]) / (11 / 9))


def test_remove_small_objects_renumbers():
    labels = np.array([[1, 1, 0, 5], [1, 1, 0, 0], [0, 0, 9, 9]])
    out = remove_small_objects(labels, min_size=2)
    assert out.max() == 2 and (out == 0).sum() == 5 + 1  # object 5 (1 px) removed


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4, 5), int), np.zeros((4, 4), float), -np.ones((4, 4), int)])
def test_targets_reject_bad_labels(bad):
    with pytest.raises(InvalidImageError):
        deep_watershed.targets(bad)


def test_postprocess_rejects_wrong_channel_count():
    with pytest.raises(InvalidModelError, match=r"\(2, Y, X\)"):
        deep_watershed.postprocess(np.zeros((3, 8, 8)))


def test_deep_watershed_smoothing_merges_a_peak_split_by_texture():
    labels = np.zeros((40, 40), np.int32)
    yy, xx = np.mgrid[:40, :40]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2] = 1
    foreground, distance = deep_watershed.targets(labels)
    distance[:, 20] = np.minimum(distance[:, 20], 0.45)  # a dark line through the centre splits the peak
    outputs = logit(np.stack([foreground, distance]))
    split = deep_watershed.postprocess(outputs, marker_threshold=0.6, min_size=1)
    whole = deep_watershed.postprocess(outputs, marker_threshold=0.6, min_size=1, smoothing=2.0)
    assert split.max() == 2
    assert whole.max() == 1 and match(labels, whole.astype(np.int64), 0.9).tp == 1


def test_deep_watershed_smoothing_keeps_touching_objects_apart():
    labels = two_touching_squares()
    result = deep_watershed.postprocess(logit(deep_watershed.targets(labels)), min_size=1, smoothing=1.0)
    assert match(labels, result.astype(np.int64), 0.7).tp == 3


def test_deep_watershed_rejects_negative_smoothing():
    labels = two_touching_squares()
    with pytest.raises(InvalidParameterError, match="smoothing"):
        deep_watershed.postprocess(logit(deep_watershed.targets(labels)), smoothing=-1)


def test_pixel_classes_class_weights_undo_the_prior_of_a_weighted_loss():
    labels = two_touching_squares()
    classes = pixel_classes.targets(labels)
    calibrated = np.where(np.arange(3)[:, None, None] == classes[None], 0.7, 0.15)
    weights = np.array([0.05, 0.5, 2.5])  # typical inverse frequencies: the edge class is rare
    skewed = calibrated * weights[:, None, None]  # what a weighted loss teaches the network
    outputs = np.log(skewed / skewed.sum(axis=0))
    naive = pixel_classes.postprocess(outputs, min_size=1)
    corrected = pixel_classes.postprocess(outputs, min_size=1, class_weights=weights)
    assert match(labels, naive.astype(np.int64), 0.5).tp < 3  # edges swallow the background
    assert match(labels, corrected.astype(np.int64), 0.9).tp == 3


@pytest.mark.parametrize("bad", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0)])
def test_pixel_classes_rejects_bad_class_weights(bad):
    outputs = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(InvalidParameterError, match="class_weights"):
        pixel_classes.postprocess(outputs, class_weights=bad)


def test_deep_watershed_marker_dynamic_merges_peaks_joined_by_a_shallow_saddle():
    yy, xx = np.mgrid[:40, :80]
    # one textured nucleus: two peaks (0.9 and 0.8) whose saddle is at about 0.37
    distance = np.maximum(0.9 * np.exp(-((yy - 20) ** 2 + (xx - 14) ** 2) / 40),
                          0.8 * np.exp(-((yy - 20) ** 2 + (xx - 26) ** 2) / 40))
    outputs = logit(np.stack([(distance > 0.1).astype(float), distance]))
    assert deep_watershed.postprocess(outputs, marker_threshold=0.5, min_size=1).max() == 2
    assert deep_watershed.postprocess(outputs, marker_threshold=0.5, min_size=1, marker_dynamic=0.3).max() == 2
    assert deep_watershed.postprocess(outputs, marker_threshold=0.5, min_size=1, marker_dynamic=0.45).max() == 1


def test_deep_watershed_marker_dynamic_keeps_touching_objects_apart():
    labels = two_touching_squares()
    outputs = logit(deep_watershed.targets(labels))
    result = deep_watershed.postprocess(outputs, min_size=1, marker_dynamic=0.4)
    assert match(labels, result.astype(np.int64), 0.7).tp == 3
    with pytest.raises(InvalidParameterError, match="marker_dynamic"):
        deep_watershed.postprocess(outputs, marker_dynamic=1.5)


# --- contact watershed: deep watershed plus a channel for contacts between touching objects


def test_contact_map_marks_where_two_objects_meet_and_nothing_around_lone_objects():
    from cytolens.tasks.segmentation.contact_watershed import contact_map

    labels = two_touching_squares()
    contacts = contact_map(labels, radius=2)
    assert contacts[10, 13:17].tolist() == [1, 1, 1, 1]  # two pixels deep on each side of the shared border
    assert contacts[10, 5:12].max() == 0 and contacts[10, 18:27].max() == 0
    assert contacts[labels == 7].max() == 0 and contacts[18:28, 28:38].max() == 0  # the isolated object
    gap = np.zeros((5, 12), np.int32)
    gap[:, 1:5], gap[:, 6:10] = 1, 2  # one background pixel between two objects
    assert contact_map(gap, radius=1)[2].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert contact_map(gap, radius=2)[2].tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]


def test_contact_watershed_without_contacts_is_the_deep_watershed_of_its_first_two_channels():
    from cytolens.tasks.segmentation import contact_watershed

    labels = two_touching_squares()
    targets = contact_watershed.targets(labels)
    assert targets.shape == (3, 30, 40)
    assert set(np.unique(targets[2])) == {0.0, 1.0}
    outputs = logit(targets)
    plain = deep_watershed.postprocess(outputs[:2], marker_dynamic=0.2)
    assert np.array_equal(contact_watershed.postprocess(outputs, marker_dynamic=0.2, contact_weight=0.0), plain)
    assert match(labels, plain, 0.5).average_precision == 1.0


def test_predicted_contacts_split_a_blob_whose_distance_has_one_peak():
    from cytolens.tasks.segmentation import contact_watershed

    labels = two_touching_squares()
    merged = np.where(labels == 2, 1, labels)  # the network "sees" one object: one distance peak
    outputs = logit(np.stack([merged > 0, normalized_inner_distance(merged),
                              contact_watershed.contact_map(labels)]).astype(np.float32))
    merged_result = match(labels, contact_watershed.postprocess(outputs, contact_weight=0.0), 0.5)
    assert merged_result.n_pred == 2 and merged_result.average_precision < 1  # three true objects
    split = contact_watershed.postprocess(outputs, contact_weight=1.0)
    assert match(labels, split, 0.5).average_precision == 1.0


def test_contact_emphasis_weighs_errors_at_contacts_only():
    import torch

    from cytolens.tasks.segmentation import contact_watershed
    from cytolens.tasks.segmentation.training import make_loss

    targets = torch.from_numpy(contact_watershed.targets(two_touching_squares()))[None]
    contacts = targets[:, 2:3].bool().expand_as(targets)
    right = 8 * (2 * targets - 1)
    wrong_at_contacts, wrong_elsewhere = torch.where(contacts, -right, right), torch.where(contacts, right, -right)
    plain, emphasis = make_loss("contact_watershed"), make_loss("contact_watershed", contact_emphasis=4.0)

    def extra(loss, outputs):  # what the errors add to the loss of near-right outputs
        return float(loss(outputs, targets) - loss(right, targets))

    # an error elsewhere costs what it did; one at the contacts costs 1 + 4 times its cross-entropy
    assert extra(emphasis, wrong_elsewhere) == pytest.approx(extra(plain, wrong_elsewhere), rel=1e-4)
    assert extra(emphasis, wrong_at_contacts) > 2 * extra(plain, wrong_at_contacts)  # the Dice term is not weighed


def test_contact_watershed_rejects_bad_parameters_and_shapes():
    from cytolens.tasks.segmentation import contact_watershed

    outputs = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(InvalidParameterError, match="contact_weight"):
        contact_watershed.postprocess(outputs, contact_weight=1.5)
    with pytest.raises(InvalidModelError, match=r"\(3, Y, X\)"):
        contact_watershed.postprocess(outputs[:2])
