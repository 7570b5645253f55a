"""CTC tracking scores: hand-made graphs, and equality with py-ctcmetrics on the real CTC ground truth.

The reference comparisons perturb the ground truth the way trackers fail (dropped links,
swapped ids, false divisions, missed/merged/spurious detections, missed divisions), write it
as a CTC result folder and score it with both ``cytolens.metrics.tracking`` and
``py-ctcmetrics`` (and track purity / target effectiveness with ``traccuracy``). The default
run uses frame windows of the movies and all error kinds at once; ``-m slow`` adds each
kind alone and the full movies (65 and 92 frames).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytolens.errors import CytolensError, InvalidParameterError
from cytolens.io import read_ctc_masks, read_ctc_tracks, write_ctc_result, write_labels
from cytolens.metrics.tracking import (
    AOGMWeights,
    aogm_counts,
    ctc_evaluation,
    ctc_scores,
    division_scores,
    match_ctc,
    match_movie,
    seg_score,
    track_overlap_scores,
    tracking_scores,
)

# --------------------------------------------------------------------------- hand-made cases


def _square(shape, y, x, size=3):
    out = np.zeros(shape, bool)
    out[y:y + size, x:x + size] = True
    return out


def _movie(objects, n_frames=4, shape=(12, 12)):
    """``objects``: {label: {frame: (y, x)}} → (T, Y, X) movie of 3x3 squares."""
    movie = np.zeros((n_frames, *shape), np.uint16)
    for label, where in objects.items():
        for t, (y, x) in where.items():
            movie[t][_square(shape, y, x)] = label
    return movie


def _table(rows):
    return pd.DataFrame(rows, columns=["label", "begin", "end", "parent"])


# one cell (1) that divides after frame 1 into 2 and 3
DIVIDING = _movie({1: {0: (0, 0), 1: (0, 1)}, 2: {2: (0, 0), 3: (0, 0)}, 3: {2: (6, 6), 3: (7, 7)}})
DIVIDING_TRACKS = _table([[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1]])


def test_ctc_match_rule_is_more_than_half_of_the_reference():
    ref = np.zeros((4, 4), int)
    ref[0, :4] = 1  # 4 pixels
    comp = np.zeros((4, 4), int)
    comp[0, :2] = 5  # exactly half: no match
    assert match_ctc(ref, comp).ref_matched.size == 0
    comp[0, 2] = 5  # 3 of 4: match, IoU 3/4
    m = match_ctc(ref, comp)
    assert m.ref_matched.tolist() == [1] and m.comp_matched.tolist() == [5]
    assert m.iou.tolist() == [0.75]


def test_perfect_result_scores_one():
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, DIVIDING, DIVIDING_TRACKS)
    # 6 vertices; edges: 1→1, 2→2, 3→3 (track links) + 1→2, 1→3 (parent links)
    assert (c.n_vertices, c.n_edges) == (6, 5)
    assert (c.ns, c.fn, c.fp, c.ed, c.ea, c.ec) == (0, 0, 0, 0, 0, 0)
    assert c.tra == c.det == c.lnk == 1.0


def test_missed_division_costs_two_missing_edges():
    # the result tracks the cells but does not link the daughters to the mother
    comp_tracks = _table([[1, 0, 1, 0], [2, 2, 3, 0], [3, 2, 3, 0]])
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, DIVIDING, comp_tracks)
    assert (c.ea, c.ed, c.ec) == (2, 0, 0)
    assert c.det == 1.0
    assert c.lnk == pytest.approx(1 - 3.0 / (1.5 * 5))
    assert c.tra == pytest.approx(1 - 3.0 / (10 * 6 + 1.5 * 5))
    div = division_scores(DIVIDING_TRACKS, comp_tracks, match_movie(DIVIDING, DIVIDING))
    assert (div.tp, div.fp, div.fn) == (0, 0, 1)


def test_id_switch_is_a_parent_link_with_wrong_semantics():
    # daughter 2 continues as a new label 4 from frame 3, linked as its child (a "gap" link)
    comp = DIVIDING.copy()
    comp[3][comp[3] == 2] = 4
    comp_tracks = _table([[1, 0, 1, 0], [2, 2, 2, 1], [3, 2, 3, 1], [4, 3, 3, 2]])
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, comp, comp_tracks)
    assert (c.ea, c.ed, c.ec, c.fn, c.fp) == (0, 0, 1, 0, 0)
    # the same break without the link: one missing edge instead
    comp_tracks.loc[3, "parent"] = 0
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, comp, comp_tracks)
    assert (c.ea, c.ed, c.ec) == (1, 0, 0)


def test_merged_cells_need_a_split_and_lose_their_edges():
    # in frame 3 one computed object covers both daughters
    comp = DIVIDING.copy()
    comp[3][comp[3] == 3] = 2
    comp_tracks = _table([[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 2, 1]])
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, comp, comp_tracks)
    # the merged vertex is split once; the edges into frame 3 touch a non-unique vertex and are missing
    assert (c.ns, c.fn, c.fp) == (1, 0, 0)
    assert (c.ea, c.ed, c.ec) == (2, 0, 0)
    assert c.det == pytest.approx(1 - 5 / 60)


def test_false_positive_and_missed_detection():
    comp = DIVIDING.copy()
    comp[0][9:, 9:] = 7  # a spurious object
    comp[1][comp[1] == 1] = 0  # the mother is missed in frame 1
    comp_tracks = _table([[1, 0, 0, 0], [2, 2, 3, 1], [3, 2, 3, 1], [7, 0, 0, 0]])
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, comp, comp_tracks)
    assert (c.fn, c.fp, c.ns) == (1, 1, 0)
    # edges: 1(0)→1(1) missing; 1(1)→2, 1(1)→3 missing; computed 1(0)→2(2), 1(0)→3(2) are redundant
    assert (c.ea, c.ed, c.ec) == (3, 2, 0)
    w = c.weights
    assert c.aogm == w.fn + w.fp + 3 * w.ea + 2 * w.ed


def test_custom_weights_change_the_score():
    comp_tracks = _table([[1, 0, 1, 0], [2, 2, 3, 0], [3, 2, 3, 0]])
    c = aogm_counts(DIVIDING, DIVIDING_TRACKS, DIVIDING, comp_tracks, weights=AOGMWeights(ea=3.0))
    assert c.lnk == pytest.approx(1 - 6.0 / 15.0)
    with pytest.raises(InvalidParameterError):
        AOGMWeights(fn=-1)


def test_division_found_within_the_frame_tolerance():
    # the computed division happens one frame late
    comp = DIVIDING.copy()
    comp[2][comp[2] == 3] = 0
    comp[2][comp[2] == 2] = 1
    comp_tracks = _table([[1, 0, 2, 0], [2, 3, 3, 1], [3, 3, 3, 1]])
    matches = match_movie(DIVIDING, comp)
    assert (division_scores(DIVIDING_TRACKS, comp_tracks, matches, tolerance=0).tp) == 0
    late = division_scores(DIVIDING_TRACKS, comp_tracks, matches, tolerance=1)
    assert (late.tp, late.fp, late.fn) == (1, 0, 0)
    assert late.precision == late.recall == late.f1 == 1.0
    with pytest.raises(InvalidParameterError):
        division_scores(DIVIDING_TRACKS, comp_tracks, matches, tolerance=-1)


def test_false_division_counts_as_false_positive():
    ref = _movie({1: {0: (0, 0), 1: (0, 0), 2: (0, 0)}}, n_frames=3)
    ref_tracks = _table([[1, 0, 2, 0]])
    comp = ref.copy()
    comp[2][comp[2] == 1] = 2
    comp[2][8:11, 8:11] = 3
    comp_tracks = _table([[1, 0, 1, 0], [2, 2, 2, 1], [3, 2, 2, 1]])
    div = division_scores(ref_tracks, comp_tracks, match_movie(ref, comp), tolerance=2)
    assert (div.tp, div.fp, div.fn) == (0, 1, 0)
    assert np.isnan(div.f1) and div.precision == 0.0
    c = aogm_counts(ref, ref_tracks, comp, comp_tracks)
    assert (c.fp, c.ec, c.ed, c.ea) == (1, 1, 0, 0)


def test_seg_score_by_hand():
    ref = np.zeros((6, 6), int)
    ref[:2, :2] = 1
    ref[3:, 3:] = 2
    comp = np.zeros((2, 6, 6), int)
    comp[1, :2, :3] = 4  # IoU 4/6 with object 1
    comp[1, 3:5, 3:] = 5  # covers 6/9 of object 2, IoU 6/9
    score, table = seg_score({1: ref}, comp, per_frame=True)
    assert score == pytest.approx((4 / 6 + 6 / 9) / 2)
    assert table["n_matched"].tolist() == [2]
    with pytest.raises(InvalidParameterError, match="frame 5"):
        seg_score({5: ref}, comp)


def test_invalid_result_tracks_are_refused_with_a_reason():
    bad_span = _table([[1, 0, 0, 0], [2, 2, 3, 1], [3, 2, 3, 1]])  # label 1 is also in frame 1
    with pytest.raises(InvalidParameterError, match="frame 1"):
        aogm_counts(DIVIDING, DIVIDING_TRACKS, DIVIDING, bad_span)
    bad_parent = _table([[1, 0, 1, 0], [2, 2, 3, 9], [3, 2, 3, 1]])
    with pytest.raises(InvalidParameterError, match="parent 9"):
        aogm_counts(DIVIDING, DIVIDING_TRACKS, DIVIDING, bad_parent)
    with pytest.raises(InvalidParameterError, match="frames"):
        aogm_counts(DIVIDING, DIVIDING_TRACKS, DIVIDING[:3], DIVIDING_TRACKS)


def test_tracking_scores_summary_and_per_frame_table():
    ev = tracking_scores(DIVIDING, DIVIDING_TRACKS, DIVIDING, DIVIDING_TRACKS, ref_seg={2: DIVIDING[2]})
    assert ev.scores["SEG"] == ev.scores["TRA"] == ev.scores["division_f1"] == 1.0
    assert ev.per_frame["n_truth"].tolist() == [1, 1, 2, 2]
    assert np.isnan(ev.per_frame["seg"][0]) and ev.per_frame["seg"][2] == 1.0


def test_folder_errors_say_what_is_missing(tmp_path):
    write_ctc_result(tmp_path / "01_RES", DIVIDING, DIVIDING_TRACKS)
    with pytest.raises(CytolensError, match="TRA"):
        ctc_scores(tmp_path / "01_RES", tmp_path / "01_GT")
    gt = tmp_path / "01_GT" / "TRA"
    for t, frame in enumerate(DIVIDING[:3]):
        write_labels(gt / f"man_track{t:03d}.tif", frame)
    DIVIDING_TRACKS.assign(end=lambda d: d["end"].clip(upper=2)).to_csv(
        gt / "man_track.txt", sep=" ", header=False, index=False)
    with pytest.raises(CytolensError, match="4 mask frames but"):
        ctc_scores(tmp_path / "01_RES", tmp_path / "01_GT")
    with pytest.raises(CytolensError, match="not found"):
        ctc_scores(tmp_path / "nothing", tmp_path / "01_GT")


# --------------------------------------------------------------------------- against py-ctcmetrics


def tracks_from_masks(masks: np.ndarray, parents: dict[int, int]) -> pd.DataFrame:
    """A valid CTC track table for ``masks`` (changed in place): labels with temporal gaps are
    split into new labels linked to the previous piece; parents that are gone or end too late
    become 0."""
    frames: dict[int, list[int]] = {}
    for t, frame in enumerate(masks):
        for label in np.unique(frame[frame > 0]).tolist():
            frames.setdefault(label, []).append(t)
    next_label = max(frames, default=0) + 1
    parents = dict(parents)
    last_piece: dict[int, int] = {}
    spans: dict[int, tuple[int, int]] = {}
    for label, ts in sorted(frames.items()):
        runs = np.split(np.asarray(ts), np.flatnonzero(np.diff(ts) > 1) + 1)
        previous = None
        for k, run in enumerate(runs):
            piece = label
            if k:
                piece = next_label
                next_label += 1
                for t in run:
                    masks[t][masks[t] == label] = piece
                parents[piece] = previous
            spans[piece] = (int(run[0]), int(run[-1]))
            previous = piece
        last_piece[label] = previous
    rows = []
    for piece, (begin, end) in sorted(spans.items()):
        parent = parents.get(piece, 0)
        parent = last_piece.get(parent, parent) if piece in frames else parent  # children attach to the last piece
        if parent not in spans or spans[parent][1] >= begin:
            parent = 0
        rows.append([piece, begin, end, parent])
    return _table(rows)


def _parents(tracks: pd.DataFrame) -> dict[int, int]:
    return dict(zip(tracks["label"].tolist(), tracks["parent"].tolist()))


def _children(parents: dict[int, int], label: int) -> list[int]:
    return [c for c, p in parents.items() if p == label]


def _free_square(masks, t0, t1, rng, size=6):
    """A random square that is background in frames t0..t1-1."""
    busy = (masks[t0:t1] > 0).any(axis=0)
    for _ in range(1000):
        y, x = rng.integers(0, busy.shape[0] - size), rng.integers(0, busy.shape[1] - size)
        if not busy[y:y + size, x:x + size].any():
            return slice(y, y + size), slice(x, x + size)
    raise RuntimeError("no free square")


def _spans(masks):
    out: dict[int, list[int]] = {}
    for t, frame in enumerate(masks):
        for label in np.unique(frame[frame > 0]).tolist():
            out.setdefault(label, []).append(t)
    return {k: (v[0], v[-1]) for k, v in out.items()}


def perturb(masks, tracks, kind, rng, n=3):
    """Return (masks, tracks) with ``n`` errors of ``kind`` made the way trackers make them."""
    masks = masks.copy()
    parents = _parents(tracks)
    spans = _spans(masks)
    new = int(masks.max()) + 1
    kinds = ["drop_links", "swap_ids", "false_divisions", "detections", "missed_divisions"] if kind == "mixed" \
        else [kind]
    for error in kinds:
        spans = _spans(masks)
        long = [lab for lab, (b, e) in spans.items() if e - b >= 4]
        for _ in range(n):
            if error == "drop_links":  # a track breaks; half the time re-linked as a child (wrong semantics)
                lab = int(rng.choice(long))
                b, e = spans[lab]
                t = int(rng.integers(b + 1, e + 1))
                masks[t:][masks[t:] == lab] = new
                for child in _children(parents, lab):
                    parents[child] = new
                parents[new] = lab if rng.random() < 0.5 else 0
                new += 1
            elif error == "swap_ids":  # two tracks exchange identities from frame t on
                for _ in range(100):
                    a, b_ = (int(v) for v in rng.choice(long, 2, replace=False))
                    lo = max(spans[a][0], spans[b_][0]) + 1
                    hi = min(spans[a][1], spans[b_][1])
                    if lo <= hi:
                        break
                t = int(rng.integers(lo, hi + 1))
                tail = masks[t:]
                is_a, is_b = tail == a, tail == b_
                tail[is_a], tail[is_b] = b_, a
                ka, kb = _children(parents, a), _children(parents, b_)
                parents.update({c: b_ for c in ka})
                parents.update({c: a for c in kb})
            elif error == "false_divisions":  # a cell "divides" into itself and a spurious object
                lab = int(rng.choice([v for v in long if not _children(parents, v)]))
                b, e = spans[lab]
                t = int(rng.integers(b + 1, e))
                masks[t:][masks[t:] == lab] = new
                ys, xs = _free_square(masks, t, min(t + 3, len(masks)), rng)
                masks[t:min(t + 3, len(masks)), ys, xs] = new + 1
                parents.update({new: lab, new + 1: lab})
                new += 2
            elif error == "detections":  # a missed object, two merged objects, a spurious object
                t = int(rng.integers(0, len(masks)))
                present = np.unique(masks[t][masks[t] > 0])
                masks[t][masks[t] == rng.choice(present)] = 0
                present = np.unique(masks[t][masks[t] > 0])
                if len(present) >= 2:
                    a, b_ = rng.choice(present, 2, replace=False)
                    masks[t][masks[t] == b_] = a
                ys, xs = _free_square(masks, t, t + 1, rng)
                masks[t, ys, xs] = new
                new += 1
            elif error == "missed_divisions":  # daughters lose their mother
                dividing = [p for p in set(parents.values()) if p and len(_children(parents, p)) > 1]
                if dividing:
                    for child in _children(parents, int(rng.choice(dividing))):
                        parents[child] = 0
    return masks, tracks_from_masks(masks, parents)


def write_gt_window(gt_dir: Path, out: Path, t0: int, t1: int) -> Path:
    """A CTC ``*_GT`` folder for frames t0..t1-1 of ``gt_dir`` (renumbered from 0), under ``out``."""
    masks = read_ctc_masks(gt_dir / "TRA")[t0:t1].copy()
    tracks = tracks_from_masks(masks, _parents(read_ctc_tracks(gt_dir / "TRA" / "man_track.txt")))
    for t, frame in enumerate(masks):
        write_labels(out / "TRA" / f"man_track{t:03d}.tif", frame)
    (out / "TRA" / "man_track.txt").write_text("".join(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks.values))
    from cytolens.io import read_image

    for path in sorted((gt_dir / "SEG").glob("man_seg*.tif")):
        t = int(path.stem[len("man_seg"):])
        if t0 <= t < t1:
            write_labels(out / "SEG" / f"man_seg{t - t0:03d}.tif", read_image(path))
    return out


def reference_scores(res: Path, gt: Path) -> dict:
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # py-ctcmetrics prints and warns on its own
        out = evaluate_sequence(str(res), str(gt), metrics=["Valid", "SEG", "DET", "TRA", "LNK", "BC(3)"], threads=1)
    assert out["Valid"] == 1, "the perturbed result must be a valid CTC result"
    return out


def assert_equal_to_reference(res: Path, gt: Path) -> dict:
    ours = ctc_evaluation(res, gt, division_tolerance=1)
    ref = reference_scores(res, gt)
    for key in ("SEG", "DET", "TRA", "LNK"):
        assert ours.scores[key] == pytest.approx(ref[key], abs=1e-6), key
    for key in ("NS", "FN", "FP", "ED", "EA", "EC"):
        assert ours.scores[f"AOGM_{key}"] == ref[f"AOGM_{key}"], key
    assert ours.scores["AOGM"] == pytest.approx(ref["AOGM"], abs=1e-9)
    assert ours.scores["AOGM_0"] == pytest.approx(ref["AOGM_0"], abs=1e-9)
    matches = match_movie(read_ctc_masks(gt / "TRA"), read_ctc_masks(res))
    ref_tracks, comp_tracks = read_ctc_tracks(gt / "TRA" / "man_track.txt"), read_ctc_tracks(res / "res_track.txt")
    for i in range(4):
        div = division_scores(ref_tracks, comp_tracks, matches, tolerance=i)
        assert (div.tp, div.fp, div.fn) == (ref[f"tp_div({i})"], ref[f"fp_div({i})"], ref[f"fn_div({i})"]), i
        if ref[f"BC({i})"] is not None:
            assert div.f1 == pytest.approx(ref[f"BC({i})"], abs=1e-6)
    return ref


SIM = "ctc_Fluo-N2DH-SIM+"
GOWT1 = "ctc_Fluo-N2DH-GOWT1"


def test_tracks_from_masks_rebuilds_the_ground_truth_table(shared_data):
    gt = shared_data / SIM / "01_GT" / "TRA"
    masks = read_ctc_masks(gt)
    truth = read_ctc_tracks(gt / "man_track.txt")
    rebuilt = tracks_from_masks(masks.copy(), _parents(truth))
    pd.testing.assert_frame_equal(rebuilt, truth.sort_values("label").reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) for k in
                                  ("drop_links", "swap_ids", "false_divisions", "detections")] + ["mixed"])
def test_equal_to_py_ctcmetrics_on_a_window_of_sim(shared_data, tmp_path, kind):
    """Each kind of error alone (slow), and all of them together."""
    gt = write_gt_window(shared_data / SIM / "01_GT", tmp_path / "01_GT", 5, 30)
    masks = read_ctc_masks(gt / "TRA")
    tracks = read_ctc_tracks(gt / "TRA" / "man_track.txt")
    rng = np.random.default_rng(["drop_links", "swap_ids", "false_divisions", "detections", "mixed"].index(kind))
    res_masks, res_tracks = perturb(masks, tracks, kind, rng)
    write_ctc_result(tmp_path / "01_RES", res_masks, res_tracks)
    ref = assert_equal_to_reference(tmp_path / "01_RES", gt)
    assert ref["TRA"] < 1.0  # the perturbation did something


def test_equal_to_py_ctcmetrics_on_a_window_of_gowt1(shared_data, tmp_path):
    gt = write_gt_window(shared_data / GOWT1 / "01_GT", tmp_path / "01_GT", 12, 50)
    masks = read_ctc_masks(gt / "TRA")
    res_masks, res_tracks = perturb(masks, read_ctc_tracks(gt / "TRA" / "man_track.txt"), "mixed",
                                    np.random.default_rng(7), n=2)
    write_ctc_result(tmp_path / "01_RES", res_masks, res_tracks)
    ref = assert_equal_to_reference(tmp_path / "01_RES", gt)
    assert ref["gt_divisions"] >= 1 and ref["SEG"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("dataset", [SIM, GOWT1])
@pytest.mark.parametrize("kind", ["identity", "drop_links", "swap_ids", "false_divisions", "mixed"])
def test_equal_to_py_ctcmetrics_on_full_movies(shared_data, tmp_path, dataset, kind):
    gt = shared_data / dataset / "01_GT"
    masks = read_ctc_masks(gt / "TRA")
    tracks = read_ctc_tracks(gt / "TRA" / "man_track.txt")
    if kind != "identity":
        masks, tracks = perturb(masks, tracks, kind, np.random.default_rng(11), n=5)
    write_ctc_result(tmp_path / "01_RES", masks, tracks)
    assert_equal_to_reference(tmp_path / "01_RES", gt)


def test_track_overlap_by_hand():
    # the result breaks daughter 2's track after frame 2: TE loses that edge, TP is perfect
    comp = DIVIDING.copy()
    comp[3][comp[3] == 2] = 4
    comp_tracks = _table([[1, 0, 1, 0], [2, 2, 2, 1], [3, 2, 3, 1], [4, 3, 3, 0]])
    s = track_overlap_scores(DIVIDING_TRACKS, comp_tracks, match_movie(DIVIDING, comp))
    # reference tracklets: {1→1} (1 edge), {1→2, 2→2} (2), {1→3, 3→3} (2) = 5 edges, 4 shared at best
    assert s["target_effectiveness"] == pytest.approx(4 / 5)
    assert s["track_purity"] == 1.0


@pytest.mark.parametrize("dataset,window", [(SIM, (5, 30)), (GOWT1, (12, 50))])
@pytest.mark.parametrize("kind", ["drop_links", "swap_ids", "false_divisions", "detections", "mixed"])
def test_track_overlap_equal_to_traccuracy(shared_data, tmp_path, dataset, window, kind):
    from traccuracy import run_metrics
    from traccuracy.loaders import load_ctc_data
    from traccuracy.matchers import CTCMatcher
    from traccuracy.metrics import TrackOverlapMetrics

    gt = write_gt_window(shared_data / dataset / "01_GT", tmp_path / "01_GT", *window)
    masks = read_ctc_masks(gt / "TRA")
    tracks = read_ctc_tracks(gt / "TRA" / "man_track.txt")
    res_masks, res_tracks = perturb(masks, tracks, kind, np.random.default_rng(3))
    write_ctc_result(tmp_path / "01_RES", res_masks, res_tracks)
    ours = track_overlap_scores(tracks, res_tracks, match_movie(masks, res_masks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth_graph = load_ctc_data(str(gt / "TRA"), str(gt / "TRA" / "man_track.txt"))
        pred_graph = load_ctc_data(str(tmp_path / "01_RES"), str(tmp_path / "01_RES" / "res_track.txt"))
        [result], _ = run_metrics(truth_graph, pred_graph, CTCMatcher(), [TrackOverlapMetrics()])
    for key in ("track_purity", "target_effectiveness"):
        assert ours[key] == pytest.approx(result["results"][key], abs=1e-6), key
    assert ours["target_effectiveness"] < 1.0


def test_3d_frames_and_annotated_slices():
    movie = np.zeros((2, 3, 6, 6), np.uint16)  # (T, Z, Y, X)
    movie[:, :, 1:4, 1:4] = 1
    tracks = _table([[1, 0, 1, 0]])
    comp = movie.copy()
    comp[1, 2] = 0  # the last slice of frame 1 is lost: 18 of 27 voxels remain, still matched
    ev = tracking_scores(movie, tracks, comp, tracks, ref_seg={(1, 2): movie[1, 2], 0: movie[0]})
    assert ev.scores["TRA"] == 1.0
    # frame 0 (whole volume): IoU 1; slice 2 of frame 1: nothing left, IoU 0
    assert ev.scores["SEG"] == pytest.approx(0.5)
