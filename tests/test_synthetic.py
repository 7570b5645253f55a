"""Tests for cytolens.data.synthetic: seeded images and movies with consistent ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from cytolens.data import Mitosis, synthetic_movie, synthetic_nuclei
from cytolens.errors import InvalidParameterError


def _touching_pairs(labels: np.ndarray, diagonal: bool = False) -> set[tuple[int, int]]:
    """Pairs of different labels that are 4-neighbours (8-neighbours if ``diagonal``) somewhere."""
    pairs = set()
    shifted = [(labels[1:, :], labels[:-1, :]), (labels[:, 1:], labels[:, :-1])]
    if diagonal:
        shifted += [(labels[1:, 1:], labels[:-1, :-1]), (labels[1:, :-1], labels[:-1, 1:])]
    for a, b in shifted:
        edge = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[edge].tolist(), b[edge].tolist())}
    return pairs


@pytest.fixture(scope="module")
def nuclei():
    return synthetic_nuclei(shape=(192, 192), n_nuclei=25, diameter_range=(10, 20), touching_fraction=0.4, seed=3)


def test_dtypes_and_shapes(nuclei):
    image, labels = nuclei
    assert image.shape == labels.shape == (192, 192)
    assert image.dtype == np.uint16
    assert labels.dtype == np.uint16


def test_same_seed_same_arrays_other_seed_differs(nuclei):
    image, labels = synthetic_nuclei(shape=(192, 192), n_nuclei=25, diameter_range=(10, 20),
                                     touching_fraction=0.4, seed=3)
    np.testing.assert_array_equal(image, nuclei[0])
    np.testing.assert_array_equal(labels, nuclei[1])
    other_image, other_labels = synthetic_nuclei(shape=(192, 192), n_nuclei=25, diameter_range=(10, 20),
                                                 touching_fraction=0.4, seed=4)
    assert not np.array_equal(other_labels, labels)
    assert not np.array_equal(other_image, image)


def test_labels_are_one_to_n_each_one_connected_region(nuclei):
    _, labels = nuclei
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, 26))  # 25 nuclei fit easily in 192x192
    for label, region in enumerate(ndimage.find_objects(labels), start=1):
        assert ndimage.label(labels[region] == label)[1] == 1


def test_crowded_image_returns_fewer_nuclei():
    _, labels = synthetic_nuclei(shape=(48, 48), n_nuclei=200, diameter_range=(10, 14), seed=0)
    n = len(np.unique(labels[labels > 0]))
    assert 1 <= n < 200
    assert labels.max() == n  # still numbered 1..n without gaps


def test_no_nuclei():
    image, labels = synthetic_nuclei(shape=(32, 32), n_nuclei=0, diameter_range=(6, 8))
    assert not labels.any()
    assert image.shape == (32, 32)


def test_areas_follow_diameter_range(nuclei):
    _, labels = nuclei
    areas = np.bincount(labels.ravel())[1:]
    smallest, largest = math.pi * 5**2, math.pi * 10**2  # disks of diameter 10 and 20
    # touching nuclei lose up to a quarter of their ellipse; outlines wobble by a few percent
    assert areas.min() >= 0.6 * smallest
    assert areas.max() <= 1.3 * largest
    assert np.median(areas) > smallest


def test_touching_fraction_controls_shared_borders(nuclei):
    _, labels = nuclei
    assert len(_touching_pairs(labels)) >= 3
    _, apart = synthetic_nuclei(shape=(192, 192), n_nuclei=25, diameter_range=(10, 20),
                                touching_fraction=0.0, seed=3)
    assert _touching_pairs(apart) == set()
    assert _touching_pairs(apart, diagonal=True) == set()  # not even corner to corner


def test_nuclei_brighter_than_background(nuclei):
    image, labels = nuclei
    inside = image[labels > 0].astype(float)
    far_outside = image[~ndimage.binary_dilation(labels > 0, iterations=6)].astype(float)
    assert np.median(inside) > 2 * np.median(far_outside)


def test_image_is_noisy_and_background_uneven():
    image, labels = synthetic_nuclei(shape=(128, 128), n_nuclei=0, diameter_range=(6, 8), seed=5)
    background = image.astype(float)
    assert background.std() > 5  # noise and gradient, not a constant
    # the smooth background differs between far-apart corners (block means average the noise away)
    blocks = [background[:32, :32], background[:32, -32:], background[-32:, :32], background[-32:, -32:]]
    means = [b.mean() for b in blocks]
    assert max(means) - min(means) > 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (8, 8)},
        {"shape": (64,)},
        {"n_nuclei": -1},
        {"n_nuclei": 2.5},
        {"diameter_range": (20, 10)},
        {"diameter_range": (2, 10)},
        {"shape": (32, 32), "diameter_range": (10, 30)},
        {"touching_fraction": 1.5},
    ],
)
def test_invalid_parameters_raise(kwargs):
    with pytest.raises(InvalidParameterError):
        synthetic_nuclei(**kwargs)


# --- movie ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movie():
    return synthetic_movie(n_frames=8, shape=(128, 128), n_cells=8, divisions=2, seed=1)


def test_movie_shapes_and_determinism(movie):
    frames, labels, tracks = movie
    assert frames.shape == labels.shape == (8, 128, 128)
    assert frames.dtype == np.uint16 and labels.dtype == np.uint16
    again = synthetic_movie(n_frames=8, shape=(128, 128), n_cells=8, divisions=2, seed=1)
    np.testing.assert_array_equal(again[0], frames)
    np.testing.assert_array_equal(again[1], labels)
    assert again[2].equals(tracks)


def test_each_label_present_exactly_from_begin_to_end(movie):
    _, labels, tracks = movie
    assert list(tracks.columns) == ["label", "begin", "end", "parent"]
    assert sorted(tracks["label"]) == sorted(np.unique(labels[labels > 0]).tolist())
    for row in tracks.itertuples():
        present = [t for t in range(len(labels)) if (labels[t] == row.label).any()]
        assert present == list(range(row.begin, row.end + 1)), row


def test_divisions_follow_ctc_convention(movie):
    _, labels, tracks = movie
    daughters = tracks[tracks["parent"] > 0]
    assert len(daughters) == 4  # two divisions, two daughters each
    by_label = tracks.set_index("label")
    for mother, pair in daughters.groupby("parent"):
        assert len(pair) == 2
        assert pair["begin"].nunique() == 1
        born = pair["begin"].iloc[0]
        assert by_label.loc[mother, "end"] == born - 1
        # daughters appear where the mother was
        mother_mask = labels[born - 1] == mother
        for daughter in pair["label"]:
            assert (mother_mask & (labels[born] == daughter)).any()


def test_cells_move_a_little_between_frames(movie):
    _, labels, tracks = movie
    steps = []
    for row in tracks.itertuples():
        centers = [ndimage.center_of_mass(labels[t] == row.label) for t in range(row.begin, row.end + 1)]
        steps += [math.dist(a, b) for a, b in zip(centers, centers[1:])]
    steps = np.array(steps)
    assert steps.max() < 8
    assert (steps > 0.5).mean() > 0.3  # most cells do move


def test_movie_nuclei_brighter_than_background(movie):
    frames, labels, _ = movie
    for frame, label in zip(frames, labels):
        assert np.median(frame[label > 0]) > 2 * np.median(frame[label == 0])


def test_movie_without_divisions_keeps_its_tracks():
    _, labels, tracks = synthetic_movie(n_frames=3, shape=(64, 64), n_cells=3, divisions=0, seed=0)
    assert tracks["begin"].tolist() == [0, 0, 0]
    assert tracks["end"].tolist() == [2, 2, 2]
    assert (tracks["parent"] == 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [{"n_frames": 0}, {"n_frames": 1, "divisions": 1}, {"divisions": -1}, {"n_cells": "many"}],
)
def test_movie_invalid_parameters_raise(kwargs):
    with pytest.raises(InvalidParameterError):
        synthetic_movie(**kwargs)


# --- movie with varied mitoses ------------------------------------------------------------

VARIED = Mitosis(condensation=(0.5, 0.6), condensation_frames=(2, 2), daughter_area=(0.3, 0.7), held=(3, 3),
                 separation_speed=(2.0, 2.0), growth_frames=(6, 6))


@pytest.fixture(scope="module")
def varied_movie():
    return synthetic_movie(n_frames=20, shape=(160, 160), n_cells=8, divisions=3, seed=3, mitosis=VARIED)


def test_varied_movie_is_deterministic_and_keeps_the_ctc_convention(varied_movie):
    _, labels, tracks = varied_movie
    again = synthetic_movie(n_frames=20, shape=(160, 160), n_cells=8, divisions=3, seed=3, mitosis=VARIED)
    np.testing.assert_array_equal(again[1], labels)
    for row in tracks.itertuples():
        present = [t for t in range(len(labels)) if (labels[t] == row.label).any()]
        assert present == list(range(row.begin, row.end + 1)), row
    daughters = tracks[tracks.parent > 0]
    assert len(daughters) >= 4 and daughters.groupby("parent").size().eq(2).all()
    by_label = tracks.set_index("label")
    for mother, pair in daughters.groupby("parent"):
        assert by_label.loc[mother, "end"] == pair["begin"].iloc[0] - 1


def test_varied_mothers_condense_and_daughters_touch_then_separate_and_grow(varied_movie):
    _, labels, tracks = varied_movie
    by_label = tracks.set_index("label")
    for mother, pair in tracks[tracks.parent > 0].groupby("parent"):
        end = by_label.loc[mother, "end"]
        area = [(labels[t] == mother).sum() for t in (end - 2, end)]
        assert area[1] < 0.75 * area[0]  # condensed to 0.5-0.6 over its last 2 frames
        first, second = pair["label"].tolist()
        born = pair["begin"].iloc[0]

        def gap(t):  # pixels between the sisters' masks
            a = ndimage.distance_transform_edt(labels[t] != first)
            return a[labels[t] == second].min()

        assert gap(born) <= 2  # held together at first
        later = born + 3 + 3  # held 3 frames, then 2 px per frame apart each
        if later <= by_label.loc[first, "end"]:
            assert gap(later) > 2
            grown = [(labels[t] == first).sum() for t in (born, later)]
            assert grown[1] > grown[0]


def test_varied_daughters_differ_in_size():
    _, labels, tracks = synthetic_movie(n_frames=12, shape=(160, 160), n_cells=8, divisions=4, seed=5,
                                        mitosis=Mitosis(daughter_area=(0.25, 0.75), spacing=(1.0, 1.0)))
    ratios = []
    for _, pair in tracks[tracks.parent > 0].groupby("parent"):
        born = pair["begin"].iloc[0]
        a, b = ((labels[born] == d).sum() for d in pair["label"])
        ratios.append(max(a, b) / min(a, b))
    assert max(ratios) > 1.3


@pytest.mark.parametrize("kwargs", [{"condensation": (0.0, 0.5)}, {"daughter_area": (0.5, 1.5)}, {"held": (3, 1)},
                                    {"condensation_frames": (0, 2)}, {"held": (0.5, 1)}])
def test_invalid_mitosis_raises(kwargs):
    with pytest.raises(InvalidParameterError):
        Mitosis(**kwargs)


def test_movie_invalid_step_or_mitosis_raise():
    with pytest.raises(InvalidParameterError):
        synthetic_movie(step=-1)
    with pytest.raises(InvalidParameterError):
        synthetic_movie(mitosis={"held": (1, 2)})
