"""Classification scores: hand-worked cases, and equality with scikit-learn on random cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from cytolens.errors import InvalidParameterError
from cytolens.metrics.classification import classification_scores, confusion_matrix


def test_hand_worked_three_classes():
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    s = classification_scores(truth, pred)
    assert s.labels.tolist() == ["a", "b", "c"]
    assert s.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a: P 2/2 R 2/3; b: P 1/2 R 1/2; c: P 1/2 R 1/1
    assert s.per_class["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert s.per_class["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert s.per_class["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.balanced_accuracy == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert s.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s.normalized("true")[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0])


def test_class_only_predicted_counts_in_macro_f1_not_in_balanced_accuracy():
    s = classification_scores([0, 0, 1, 1], [0, 2, 1, 1])
    assert s.per_class["f1"].tolist()[2] == 0.0
    assert s.balanced_accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert s.macro_f1 == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


@pytest.mark.parametrize("seed", range(20))
def test_equal_to_scikit_learn_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 7))
    n = int(rng.integers(5, 200))
    truth = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < 0.6, truth, rng.integers(0, n_classes + 1, n))  # sometimes an unseen class
    labels = np.unique(np.concatenate([truth, pred]))
    s = classification_scores(truth, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about classes absent from the truth
        assert np.array_equal(s.confusion, skm.confusion_matrix(truth, pred, labels=labels))
        for norm in ("true", "pred", "all"):
            np.testing.assert_allclose(confusion_matrix(truth, pred, normalize=norm),
                                       np.nan_to_num(skm.confusion_matrix(truth, pred, labels=labels,
                                                                          normalize=norm)), atol=1e-12)
        p, r, f, support = skm.precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
        np.testing.assert_allclose(s.per_class["precision"], p, atol=1e-12)
        np.testing.assert_allclose(s.per_class["recall"], r, atol=1e-12)
        np.testing.assert_allclose(s.per_class["f1"], f, atol=1e-12)
        assert s.per_class["support"].tolist() == support.tolist()
        assert s.accuracy == pytest.approx(skm.accuracy_score(truth, pred), abs=1e-12)
        assert s.balanced_accuracy == pytest.approx(skm.balanced_accuracy_score(truth, pred), abs=1e-12)
        assert s.macro_f1 == pytest.approx(skm.f1_score(truth, pred, average="macro", zero_division=0), abs=1e-12)
        assert s.weighted_f1 == pytest.approx(skm.f1_score(truth, pred, average="weighted", zero_division=0),
                                              abs=1e-12)
        assert s.macro_precision == pytest.approx(
            skm.precision_score(truth, pred, average="macro", zero_division=0), abs=1e-12)
        assert s.macro_recall == pytest.approx(skm.recall_score(truth, pred, average="macro", zero_division=0),
                                               abs=1e-12)


def test_explicit_label_order_and_text_classes():
    s = classification_scores(["dog", "cat"], ["cat", "cat"], labels=["dog", "cat", "bird"])
    assert s.confusion.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert s.per_class["label"].tolist() == ["dog", "cat", "bird"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match="3 items but prediction has 2"):
        classification_scores([1, 2, 3], [1, 2])
    with pytest.raises(InvalidParameterError, match="not in labels"):
        classification_scores([1, 2], [1, 3], labels=[1, 2])
    with pytest.raises(InvalidParameterError, match="empty"):
        classification_scores([], [])
    with pytest.raises(InvalidParameterError, match="normalize"):
        confusion_matrix([1], [1], normalize="rows")
    with pytest.raises(InvalidParameterError, match="mix text"):
        classification_scores(["a", "b"], [1, 2])
