"""Divisions on tiny hand-made movies: late daughters, condensed mothers, and look-alikes that are not divisions."""

from __future__ import annotations

import pytest

import cytolens.track as tracking
from track_movies import movie_of


def one_division(result, mother_span: tuple[int, int], daughters_begin: int) -> None:
    ctc = result.ctc_tracks.set_index("label")
    assert len(result.divisions) == 1
    mother = int(result.divisions["parent_track_id"].iloc[0])
    assert tuple(ctc.loc[mother, ["begin", "end"]]) == mother_span
    daughters = ctc[ctc.parent == mother]
    assert len(daughters) == 2 and (daughters["begin"] == daughters_begin).all()
    assert (ctc.drop(index=daughters.index)["parent"] == 0).all()


@pytest.mark.parametrize("missed_frames", [1, 2])
def test_daughters_appearing_after_the_mother_vanished(missed_frames):
    # the mother is last seen in frame 3; both daughters are missed for 1 or 2 frames, then appear
    bystander = (10, 50, 4)
    objects = [[(32, 32, 7), bystander] for _ in range(4)] + [[bystander]] * missed_frames
    objects += [[(32, 25, 5), (32, 39, 5), bystander] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects))
    one_division(result, (0, 3), 4 + missed_frames)


def test_late_daughters_are_not_looked_for_beyond_max_gap():
    bystander = (10, 50, 4)
    objects = [[(32, 32, 7), bystander] for _ in range(4)] + [[bystander]] * 2
    objects += [[(32, 25, 5), (32, 39, 5), bystander] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects), max_gap=1)
    assert result.divisions.empty


def test_division_of_a_mother_that_condensed_before_splitting():
    # the mother shrinks to 0.7 of its size in its last frame (chromatin condensation); each daughter is
    # larger than that last area but smaller than the mother was: still a division
    bystander = (10, 52, 5)
    objects = [[(32, 32, 8), bystander] for _ in range(3)] + [[(32, 32, 6.6), bystander]]
    objects += [[(32, 21, 7.2), (32, 43, 7.2), bystander] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects))
    one_division(result, (0, 3), 4)


def test_a_collapsed_cell_next_to_a_newcomer_is_not_a_division():
    # the cell collapses to a third of its area and stays small; a larger cell appears beside it: that
    # is no division (condensation does not shrink a nucleus that much, so the newcomer is too big)
    bystander = (10, 52, 5)
    objects = [[(32, 32, 7), bystander] for _ in range(3)] + [[(32, 32, 4), bystander]]
    objects += [[(32, 32, 4), (32, 41, 5.6), bystander] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects))
    assert result.divisions.empty
    assert (result.ctc_tracks["parent"] == 0).all()


@pytest.mark.parametrize("unlike_weight, divides", [(0.5, False), (0.0, True)])
def test_a_speck_beside_a_nucleus_is_no_sister(unlike_weight, divides):
    # the nucleus shifts and shrinks a little while a speck of debris appears inside its old outline:
    # geometry and overlap alone make that a cheap split; a sister 20x smaller is not believable
    bystander = (8, 8, 5)
    objects = [[(32, 32, 8), bystander] for _ in range(3)]
    objects += [[(32, 29, 7), (32, 40, 1.5), bystander] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects, seed=1), division_unlike_weight=unlike_weight)
    assert len(result.divisions) == int(divides)


@pytest.mark.parametrize("symmetry_weight, divides", [(0.8, True), (0.0, False)])
def test_two_alike_half_size_daughters_off_the_mothers_axis_are_a_division(symmetry_weight, divides):
    # both daughters lie on one side of where the mother was (as when a marker sits off-centre), so geometry
    # alone refuses the split; their sizes (each under half the mother's, alike) speak for a division.
    # The daughters have separated (masks 3 px apart): touching ones would cost more
    bystander = (56, 8, 5)
    objects = [[(32, 30, 8), bystander] for _ in range(4)]
    objects += [[(37, 37, 5.5), (25, 43, 5.5), bystander] for _ in range(3)]
    result = tracking.track(labels=movie_of(objects), division_symmetry_weight=symmetry_weight)
    if divides:
        one_division(result, (0, 3), 4)
    else:
        assert result.divisions.empty


def test_unlike_daughters_off_the_mothers_axis_are_no_division():
    bystander = (56, 8, 5)
    objects = [[(32, 30, 8), bystander] for _ in range(4)]
    objects += [[(36, 38, 5.5), (26, 42, 3.6), bystander] for _ in range(3)]
    assert tracking.track(labels=movie_of(objects)).divisions.empty
