"""Segmentation scores on tiny label images whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from cytolens.errors import InvalidParameterError
from cytolens.metrics.segmentation import (
    aggregated_jaccard_index,
    mean_matched_iou,
    object_errors,
    panoptic_quality,
    pixel_dice,
    pixel_jaccard,
    pixel_scores,
)


def halves():
    """4x8 image: object 1 on the left half, object 2 on the right half (16 pixels each)."""
    truth = np.zeros((4, 8), int)
    truth[:, :4] = 1
    truth[:, 4:] = 2
    return truth


# --------------------------------------------------------------------------- panoptic quality


def test_panoptic_quality_by_hand():
    truth = halves()
    pred = np.zeros_like(truth)
    pred[:, :3] = 5  # IoU 12/16 with object 1
    pred[0, 6:] = 6  # IoU 2/16 with object 2: no match, a false positive
    pq = panoptic_quality(truth, pred)
    assert (pq.tp, pq.fp, pq.fn) == (1, 1, 1)
    assert pq.sq == pytest.approx(0.75)
    assert pq.rq == pytest.approx(1 / (1 + 0.5 + 0.5))
    assert pq.pq == pytest.approx(0.75 * 0.5)


def test_panoptic_quality_needs_more_than_half_overlap():
    truth = halves()
    pred = np.zeros_like(truth)
    pred[:, 2:6] = 1  # IoU 8/24 with each: nothing matches
    assert panoptic_quality(truth, pred).pq == 0.0
    assert panoptic_quality(truth, truth).pq == 1.0
    empty = np.zeros_like(truth)
    assert panoptic_quality(empty, empty).pq == 1.0


# --------------------------------------------------------------------------- AJI


def test_aggregated_jaccard_index_by_hand():
    truth = halves()
    pred = np.zeros_like(truth)
    pred[:, 2:] = 7  # one object over half of 1 and all of 2
    # Kumar: both truth objects pick object 7: (8 + 16) / (32 + 24)
    assert aggregated_jaccard_index(truth, pred) == pytest.approx(24 / 56)
    # one-to-one: 7 pairs with 2 (IoU 16/24); object 1 adds its area
    assert aggregated_jaccard_index(truth, pred, one_to_one=True) == pytest.approx(16 / 40)


def test_aggregated_jaccard_index_counts_unused_and_unmatched_objects():
    truth = halves()
    pred = truth.copy()
    pred[pred == 2] = 0
    pred[0, 4] = 9  # a 1-pixel object inside object 2
    pred[3, 7] = 0
    extra = np.zeros_like(truth)
    # object 1 perfect (16/16); object 2 pairs with 9: 1 / 16
    assert aggregated_jaccard_index(truth, pred) == pytest.approx((16 + 1) / (16 + 16))
    pred2 = truth.copy()
    pred2[pred2 == 2] = 0
    # object 2 overlaps nothing: its area joins the denominator
    assert aggregated_jaccard_index(truth, pred2) == pytest.approx(16 / 32)
    # a spurious object joins the denominator
    pred2[:, 6:] = 3
    pred2[:, 4:6] = 0
    assert aggregated_jaccard_index(truth, pred2) == pytest.approx((16 + 8) / (16 + 16))
    assert aggregated_jaccard_index(extra, extra) == 1.0
    assert aggregated_jaccard_index(truth, extra) == 0.0


# --------------------------------------------------------------------------- pixel scores


def test_pixel_scores_by_hand():
    truth = np.zeros((2, 4), int)
    truth[:, :2] = 1
    pred = np.zeros((2, 4), int)
    pred[:, 1:3] = 3
    s = pixel_scores(truth, pred)
    assert s["dice"] == pytest.approx(0.5) and s["jaccard"] == pytest.approx(1 / 3)
    assert pixel_dice(truth, pred) == s["dice"] and pixel_jaccard(truth, pred) == s["jaccard"]
    empty = np.zeros_like(truth)
    assert pixel_scores(empty, empty)["dice"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_pixel_scores_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, (20, 30)) * (rng.random((20, 30)) < 0.6)
    pred = rng.integers(0, 3, (20, 30)) * (rng.random((20, 30)) < 0.5)
    s = pixel_scores(truth, pred)
    assert s["dice"] == pytest.approx(f1_score(truth.ravel() > 0, pred.ravel() > 0), abs=1e-12)
    assert s["jaccard"] == pytest.approx(jaccard_score(truth.ravel() > 0, pred.ravel() > 0), abs=1e-12)


def test_mean_matched_iou_by_hand():
    truth = halves()
    pred = truth.copy()
    pred[:, 3] = 0  # object 1: IoU 12/16
    assert mean_matched_iou(truth, pred) == pytest.approx((0.75 + 1.0) / 2)
    assert mean_matched_iou(truth, np.zeros_like(truth)) == 0.0


# --------------------------------------------------------------------------- Caicedo et al. error counts


def test_object_errors_perfect():
    e = object_errors(halves(), halves())
    assert (e.correct, e.missed, e.extra, e.merge, e.split, e.catastrophe) == (2, 0, 0, 0, 0, 0)


def test_object_errors_merge_and_split():
    truth = halves()
    merged = (truth > 0).astype(int)  # IoU 1/2 with each: no direct match, one hub
    e = object_errors(truth, merged)
    # one merge; the second truth object is a detection lost to it (DeepCell: nodes - 2)
    assert (e.correct, e.merge, e.split, e.missed, e.extra, e.missed_from_merge) == (0, 1, 0, 0, 0, 1)
    e = object_errors(merged, truth)  # the same, seen from the other side
    assert (e.correct, e.merge, e.split, e.missed, e.extra, e.extra_from_split) == (0, 0, 1, 0, 0, 1)
    three = np.zeros((4, 9), int)
    three[:, :3], three[:, 3:6], three[:, 6:] = 1, 2, 3
    e = object_errors(three, (three > 0).astype(int))
    assert (e.merge, e.missed_from_merge) == (1, 2)


def test_object_errors_missed_extra_and_poor_pair():
    truth = np.zeros((10, 10), int)
    truth[:4, :4] = 1
    truth[6:, 6:] = 2
    pred = np.zeros_like(truth)
    pred[2:6, 2:6] = 5  # overlaps object 1 in 4 pixels: IoU 4/28, a pair too poor to match
    pred[6:, :3] = 6  # a spurious object
    e = object_errors(truth, pred)
    assert (e.correct, e.missed, e.extra, e.merge, e.split) == (0, 2, 2, 0, 0)


def test_object_errors_catastrophe():
    truth = halves()
    pred = np.zeros_like(truth)
    pred[:2] = 1
    pred[2:] = 2  # top/bottom halves against left/right halves: every pair has IoU 1/3
    e = object_errors(truth, pred)
    assert (e.catastrophe, e.true_in_catastrophe, e.pred_in_catastrophe) == (1, 2, 2)
    assert e.correct == e.merge == e.split == 0


def test_object_errors_cutoffs_are_exposed():
    truth = np.zeros((4, 10), int)
    truth[:, :10] = 1
    pred = np.zeros_like(truth)
    pred[:, :7] = 1  # IoU 0.7
    assert object_errors(truth, pred).correct == 1  # direct match needs IoU > 1 - 0.4
    strict = object_errors(truth, pred, cutoff1=0.2)  # needs IoU > 0.8
    assert (strict.correct, strict.missed, strict.extra) == (0, 1, 1)
    with pytest.raises(InvalidParameterError):
        object_errors(truth, pred, cutoff1=1.5)


def test_object_errors_force_event_links_turns_a_swallowed_fragment_into_a_split():
    truth = np.zeros((6, 6), int)
    truth[:, :] = 1
    pred = np.zeros_like(truth)
    pred[:5] = 1  # IoU 30/36: a direct match
    pred[5] = 2  # a fragment inside the truth object, IoU 6/36
    e = object_errors(truth, pred)
    assert (e.correct, e.extra, e.split) == (1, 1, 0)
    e = object_errors(truth, pred, force_event_links=True)
    assert (e.correct, e.extra, e.split) == (0, 0, 1)


def test_segmentation_scores_refuse_bad_inputs():
    with pytest.raises(InvalidParameterError, match="shapes differ"):
        panoptic_quality(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(InvalidParameterError, match="integer"):
        aggregated_jaccard_index(np.zeros((3, 3)), np.zeros((3, 3), int))
    with pytest.raises(InvalidParameterError, match="shapes differ"):
        pixel_scores(np.zeros((3, 3), int), np.zeros((3, 4), int))
