"""Divisions on tiny hand-made movies: late daughters, condensed mothers, and look-alikes that are not divisions."""

from __future__ import annotations

import pytest

import cytolens.track as tracking
from cytolens.data import Mitosis, synthetic_movie
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


def late_separating(frames_touching: int | None):
    """A mother, then two daughters of 0.7 of her area side by side, touching for ``frames_touching`` frames before
    they drift apart (None: touching to the end, as the two pieces of a nucleus cut by the segmentation)."""
    bystander = (10, 52, 5)
    objects = [[(32, 32, 8), bystander] for _ in range(4)]
    radius = 8 * 0.7**0.5
    for k in range(8):
        apart = 0.0 if frames_touching is None or k < frames_touching else 1.5 * (k - frames_touching + 1)
        objects.append([(32, 32 - radius - apart, radius), (32, 32 + radius + apart, radius), bystander])
    return movie_of(objects)


@pytest.mark.parametrize("frames_touching", [1, 3, 5])
def test_daughters_that_touch_at_first_and_separate_later_are_a_division(frames_touching):
    # daughters this large (0.7 of the mother's area each) earn no size bonus: the touch penalty alone
    # would refuse them if touching in their first frame counted against them
    one_division(tracking.track(labels=late_separating(frames_touching)), (0, 3), 4)


def test_touching_pieces_that_never_part_are_no_division():
    result = tracking.track(labels=late_separating(None))
    assert result.divisions.empty
    # the same movie with the touch penalty off: only touching throughout told them apart
    assert len(tracking.track(labels=late_separating(None), division_touch_penalty=0.0).divisions) == 1


def divisions_found(result) -> set[tuple[int, tuple[int, ...]]]:
    """(mother label, daughters' labels) of every division found, by the input movie's labels."""
    rows, ctc = result.tracks, result.ctc_tracks
    found = set()
    for mother, children in ctc[ctc.parent > 0].groupby("parent"):
        if len(children) == 2:
            last = rows[rows.track_id == mother].sort_values("t")["label"].iloc[-1]
            first = [rows[rows.track_id == c].sort_values("t")["label"].iloc[0] for c in children["label"]]
            found.add((int(last), tuple(sorted(int(f) for f in first))))
    return found


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthetic_divisions_whose_daughters_separate_late_are_found(seed):
    # daughters held together for 2-3 frames, then pushed apart; 0.6-0.75 of the mother's area each
    mitosis = Mitosis(held=(2, 3), daughter_area=(0.6, 0.75), separation_speed=(1.5, 2.0), condensation=(0.7, 1.0))
    _, labels, lineage = synthetic_movie(n_frames=24, shape=(160, 160), n_cells=10, divisions=4, seed=seed,
                                         mitosis=mitosis)
    truth = {(int(m), tuple(sorted(c["label"].tolist()))) for m, c in lineage[lineage.parent > 0].groupby("parent")}
    separated = {d for d in truth if lineage.set_index("label").loc[d[1][0], "begin"] <= 16}  # apart before the end
    found = divisions_found(tracking.track(labels=labels))
    assert separated and separated <= found
    assert found <= truth


@pytest.mark.parametrize("seed", [0, 1])
def test_no_division_in_a_crowded_fast_synthetic_movie_without_divisions(seed):
    _, labels, _ = synthetic_movie(n_frames=20, shape=(192, 192), n_cells=40, divisions=0, seed=seed, step=3.0)
    assert tracking.track(labels=labels).divisions.empty
