"""The error breakdown of benchmarks/segmentation_errors_dsb.py on hand-made label images."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def error_kinds(benchmark_script):
    return benchmark_script("segmentation_errors_dsb").error_kinds


def squares(shape, boxes):
    labels = np.zeros(shape, np.int32)
    for label, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = label
    return labels


def test_each_kind_of_unmatched_nucleus_is_named(error_kinds):
    truth = squares((40, 60), [(2, 10, 2, 10), (2, 10, 10, 18), (20, 28, 2, 10), (20, 28, 20, 28), (30, 38, 40, 48)])
    pred = squares((40, 60), [(2, 10, 2, 18),       # nuclei 1 and 2 as one object (IoU 0.5 each: one matches)
                              (20, 28, 2, 5),       # nucleus 3 outlined far too small (IoU 0.375)
                              (30, 38, 50, 58)])    # nothing at nucleus 4; nucleus 5 missed: a spurious object
    unfiltered = np.where(truth == 4, 9, pred)      # without the filter nucleus 4 was found
    kinds = error_kinds(truth, pred, unfiltered)
    assert kinds == {"merged with a neighbour": 1, "poorly outlined": 1, "removed by the object filter": 1,
                     "not found": 1, "spurious": 1, "poor": 1}


def test_a_perfect_prediction_has_no_errors_and_an_empty_one_misses_everything(error_kinds):
    truth = squares((20, 20), [(2, 8, 2, 8), (10, 16, 10, 16)])
    assert error_kinds(truth, truth.copy()) == {}
    assert error_kinds(truth, np.zeros_like(truth)) == {"not found": 2}
