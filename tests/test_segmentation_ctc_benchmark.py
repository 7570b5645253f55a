"""The CTC segmentation measures of benchmarks/segmentation_ctc.py on hand-made frames."""

import numpy as np


def test_a_nucleus_in_two_pieces_is_cut_and_an_object_on_background_is_a_speck(benchmark_script):
    measures = benchmark_script("segmentation_ctc")
    truth = np.zeros((20, 30), np.uint16)
    truth[2:10, 2:12], truth[12:18, 15:25] = 1, 2
    predicted = np.zeros_like(truth)
    predicted[2:10, 2:7], predicted[2:10, 7:12] = 1, 2  # nucleus 1 in two halves
    predicted[12:18, 15:25] = 3  # nucleus 2 whole
    predicted[0:2, 27:30] = 4  # a speck on background
    predicted[9:12, 11:14] = 5  # mostly outside nucleus 1: not a piece of it
    predicted[12:13, 15:17] = 6  # inside nucleus 2 but covers 2 of its 60 pixels: a fleck, not a piece
    pieces, specks = measures.pieces_and_specks(truth, predicted)
    assert pieces == {1: 2, 2: 1} and specks == 1
