"""Learned link costs: fitted to one tiny synthetic movie's tracks, used on others; JSON round trip; bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import cytolens.track as tracking
from cytolens.data import synthetic_movie
from cytolens.errors import InvalidParameterError
from cytolens.io import write_ctc_result
from cytolens.track import TrackingConfig, fit_link_model, fit_link_model_ctc, load_link_model


def annotated(seed: int, divisions: int = 4):
    _, labels, lineage = synthetic_movie(n_frames=12, shape=(128, 128), n_cells=10, divisions=divisions, seed=seed)
    return labels, lineage


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned")
    labels, lineage = annotated(seed=0)
    write_ctc_result(folder / "gt", labels, lineage)
    model = fit_link_model_ctc(folder / "gt", trained_on="synthetic seed 0")
    return model.save(folder / "model.json")


@pytest.mark.parametrize("seed", [1, 2])
def test_learned_cost_reproduces_the_tracks_of_another_movie(model_path, seed):
    labels, lineage = annotated(seed)
    result = tracking.track(labels=labels, link_cost="learned", link_model=str(model_path))
    tracks = result.tracks
    assert (tracks.groupby("label")["track_id"].nunique() == 1).all()  # no track broken
    assert (tracks.groupby("track_id")["label"].nunique() == 1).all()  # no two cells joined
    found = sorted(tuple(sorted(tracks[tracks.track_id.isin(d)]["label"].unique())) for d in result.divisions["daughters"])
    truth = sorted(tuple(sorted(kids["label"])) for _, kids in lineage[lineage.parent > 0].groupby("parent"))
    assert found == truth and len(truth) == 4
    assert result.config["link_cost"] == "learned"


def test_model_file_is_plain_json_and_round_trips(model_path):
    data = json.loads(model_path.read_text())
    assert data["format"] == "cytolens.track.learned/1"
    assert data["trained_on"] == "synthetic seed 0"
    assert data["division"] is not None and data["uses_masks"] is True
    model = load_link_model(model_path)
    features = {"distance": np.array([0.0, 0.5, 2.0]), "area_change": np.zeros(3), "overlap": np.array([0.9, 0.3, 0.0]),
                "intensity_change": np.zeros(3), "gap": np.zeros(3)}
    logit = model.link_logit(features)
    assert logit[0] > 0 > logit[2]  # a still, overlapping pair is the same cell; one two diameters away is not
    assert np.all(np.diff(logit) < 0)


def test_divisions_are_left_to_the_hand_made_cost_without_enough_annotated_ones(tmp_path):
    labels, lineage = annotated(seed=0, divisions=1)
    write_ctc_result(tmp_path / "gt", labels, lineage)
    model = fit_link_model_ctc(tmp_path / "gt", min_divisions=3)
    assert model.division is None
    path = model.save(tmp_path / "model.json")
    labels, lineage = annotated(seed=1)
    result = tracking.track(labels=labels, link_cost="learned", link_model=str(path))
    assert len(result.divisions) == len(tracking.track(labels=labels).divisions) == 4


def test_fit_from_a_table_of_points_without_masks():
    rng = np.random.default_rng(0)
    rows = []
    for cell in range(6):
        y, x = 20.0 + 12 * (cell // 3), 20.0 + 12 * (cell % 3)
        for t in range(8):
            y, x = y + rng.normal(0, 1.5), x + rng.normal(0, 1.5)
            rows.append({"t": t, "y": y, "x": x, "area": 50.0, "track_id": cell + 1, "parent_track_id": 0})
    table = pd.DataFrame(rows)
    model = fit_link_model(table)
    assert not model.uses_masks and "overlap" not in model.link.columns
    linked = tracking.link(table.drop(columns=["track_id", "parent_track_id"]).assign(cell=table["track_id"]),
                           cost=model)
    assert (linked.groupby("cell")["track_id"].nunique() == 1).all()
    assert linked["track_id"].nunique() == 6


def test_bad_learned_settings_raise_cytolens_errors(tmp_path, model_path):
    with pytest.raises(InvalidParameterError, match="link_model"):
        TrackingConfig.from_kwargs(link_cost="learned")
    with pytest.raises(InvalidParameterError, match="link_cost"):
        TrackingConfig.from_kwargs(link_cost="neural")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InvalidParameterError, match="not a cytolens learned link model"):
        load_link_model(tmp_path / "other.json")
    with pytest.raises(InvalidParameterError, match="cannot read"):
        load_link_model(tmp_path / "missing.json")
    # a model fitted with masks refuses bare points
    points = pd.DataFrame({"t": [0, 1, 2], "y": [5.0, 6.0, 7.0], "x": [5.0, 5.0, 5.0], "area": 40.0})
    with pytest.raises(InvalidParameterError, match="mask overlaps"):
        tracking.track(detections=points, link_cost="learned", link_model=str(model_path))
    with pytest.raises(InvalidParameterError, match="lack columns"):
        fit_link_model(points)


def test_cli_learns_a_link_model_and_tracks_with_it(tmp_path):
    import tifffile
    from typer.testing import CliRunner

    from cytolens.cli import app

    labels, lineage = annotated(seed=0)
    write_ctc_result(tmp_path / "gt", labels, lineage)
    runner = CliRunner()
    learned = runner.invoke(app, ["track-learn", str(tmp_path / "gt"), "-o", str(tmp_path / "link.json")])
    assert learned.exit_code == 0, learned.output
    assert "with a division part" in learned.output
    again = runner.invoke(app, ["track-learn", str(tmp_path / "gt"), "-o", str(tmp_path / "link.json")])
    assert again.exit_code == 1 and "overwrite" in again.output

    other, _ = annotated(seed=1)
    tifffile.imwrite(tmp_path / "labels.tif", other)
    out = tmp_path / "out"
    tracked = runner.invoke(app, ["track", "--labels", str(tmp_path / "labels.tif"), "-o", str(out), "-q",
                                  "--link-model", str(tmp_path / "link.json")])
    assert tracked.exit_code == 0, tracked.output
    assert json.loads((out / "config.json").read_text())["link_cost"] == "learned"
    missing = runner.invoke(app, ["track", "--labels", str(tmp_path / "labels.tif"), "-o", str(tmp_path / "o2"),
                                  "--link-model", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "no such file" in missing.output and "Traceback" not in missing.output
    not_gt = runner.invoke(app, ["track-learn", str(tmp_path), "-o", str(tmp_path / "x.json")])
    assert not_gt.exit_code == 1 and "error:" in not_gt.output


def test_both_costs_are_link_costs_and_link_takes_the_learned_one_as_an_object(model_path):
    from cytolens.track import HandLinkCost, LinkCost

    model = load_link_model(model_path)
    assert isinstance(model, LinkCost) and isinstance(HandLinkCost(), LinkCost)
    labels, _ = annotated(seed=1)
    table = tracking.detect(labels)
    overlaps, contacts = tracking.label_overlaps(labels, table), tracking.label_contacts(labels, table)
    config = TrackingConfig(link_cost="learned", link_model=str(model_path))
    with pytest.raises(InvalidParameterError, match="cost="):
        tracking.link(table, config, overlaps=overlaps, contacts=contacts)
    linked = tracking.link(table, config, overlaps=overlaps, contacts=contacts, cost=model)
    assert linked.equals(tracking.track(labels=labels, config=config).tracks)


def test_linking_and_costs_do_not_import_the_learned_module():
    import ast
    from pathlib import Path

    import cytolens.track.costs
    import cytolens.track.linking

    for module in (cytolens.track.linking, cytolens.track.costs):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "cytolens.track.learned" not in imported, module.__name__
