"""The CLI's rough edges, in process: --version, one-line warnings, an empty well, measure --force, models info."""

from __future__ import annotations

import json
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cytolens.cli import app
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.io import read_image, write_image


def run(*args):
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a user's shell has them (the test suite turns warnings into errors)
        return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    """Two small synthetic images and an empty well (a constant image)."""
    folder = tmp_path_factory.mktemp("plate")
    for seed, name in ((1, "a.tif"), (2, "b.tif")):
        write_image(folder / name, synthetic_nuclei(shape=(96, 96), n_nuclei=5, seed=seed)[0])
    write_image(folder / "empty.tif", np.full((96, 96), 100, np.uint16))
    return folder


def test_version_prints_the_installed_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout == f"cytolens {version('cytolens')}\n"


def test_a_warning_is_one_line_naming_the_image_without_a_source_line(plate, tmp_path):
    showwarning = warnings.showwarning
    result = run("segment", plate / "a.tif", plate / "b.tif", "-o", tmp_path, "-q", "--model", "nuclei_fast",
                 "--diameter", "1000",  # beyond the model's range (as --diameter 1, but the image shrinks: fast)
                 "--keep-all-objects")  # (the filter would add a second warning: it removes what a 0.1x image finds)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [["warning", str(plate / "a.tif")],
                                                           ["warning", str(plate / "b.tif")]], result.stderr
    assert all("diameter 1000 px is outside what this model handles" in line for line in lines)
    assert ".py:" not in result.stderr and "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr
    # the Python API keeps Python's own warnings
    assert warnings.showwarning is showwarning


def test_a_warning_outside_the_image_loop_is_one_line_too(plate, tmp_path, monkeypatch):
    import cytolens.nn.precision as precision

    monkeypatch.setattr(precision, "bfloat16_is_fast", lambda device: False)  # a CPU without native bfloat16
    result = run("segment", plate / "a.tif", plate / "b.tif", "-o", tmp_path, "-q", "--model", "nuclei_fast",
                 "--diameter", "20", "--precision", "bfloat16")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "warning: this CPU has no native bfloat16 support; computing in float32 instead\n"


def test_an_empty_well_gives_empty_labels_and_table_and_the_plate_run_exits_0(plate, tmp_path):
    result = run("segment", plate, "-o", tmp_path, "--model", "nuclei_fast", "--diameter", "20", "--overlay",
                 "--rois", "--geojson")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == (f"warning: {plate / 'empty.tif'}: image is constant (all pixels equal): "
                                     "no objects")
    labels = read_image(tmp_path / "empty_labels.tif")
    assert labels.shape == (96, 96) and not labels.any()
    table = pd.read_csv(tmp_path / "empty_cells.csv")
    assert len(table) == 0 and list(table.columns) == list(pd.read_csv(tmp_path / "a_cells.csv").columns)
    assert json.loads((tmp_path / "empty_objects.geojson").read_text())["features"] == []
    assert read_image(tmp_path / "a_labels.tif").max() > 0  # the others are segmented
    assert "in 3 image(s)" in result.stdout


def test_measure_refuses_an_intensity_image_unless_forced(plate, tmp_path):
    refused = run("measure", plate / "a.tif", "-o", tmp_path / "t.csv")
    assert refused.exit_code == 1 and not (tmp_path / "t.csv").exists()
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: this does not look like a label image")
    assert "--force" in refused.stderr
    forced = run("measure", plate / "a.tif", "-o", tmp_path / "t.csv", "--force")
    assert forced.exit_code == 0, forced.stderr
    intensity = read_image(plate / "a.tif")
    assert len(pd.read_csv(tmp_path / "t.csv")) == len(np.unique(intensity[intensity > 0])) > 100
    # a float image that is not whole numbers is no label image, forced or not
    write_image(tmp_path / "float.tif", np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    fractional = run("measure", tmp_path / "float.tif", "-o", tmp_path / "f.csv", "--force")
    assert fractional.exit_code == 1 and "fractional values" in fractional.stderr


def test_models_info_is_a_readable_summary_and_json_gives_model_json():
    from cytolens.models import read_meta

    summary = run("models", "info", "nuclei")
    assert summary.exit_code == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert 15 <= len(lines) <= 32 and lines[0].startswith("nuclei ") and "contact_watershed" in lines[0]
    for fragment in ("M parameters", "percentile 1.0 to 99.8", "objects resized to 20 px", "min_size 8",
                     "543 train / 41 val", "best val", "overall (80 images): ap50 0.839", "object_filter",
                     "size_model", "license", "--json"):
        assert fragment in summary.stdout, fragment
    assert max(map(len, lines)) <= 112
    full = run("models", "info", "nuclei", "--json")
    assert full.exit_code == 0 and json.loads(full.stdout) == read_meta("nuclei")


def test_models_info_of_a_sparse_package(tmp_path):
    """A package with only what model.json must hold (a task other than segmentation) is described too."""
    import shutil

    from cytolens.models.package import BUNDLED_DIR

    folder = tmp_path / "toy"
    shutil.copytree(BUNDLED_DIR / "nuclei_fast", folder, ignore=shutil.ignore_patterns("*.json"))
    meta = {"name": "toy", "task": "denoising", "architecture": read_json(BUNDLED_DIR / "nuclei_fast")["architecture"]}
    (folder / "model.json").write_text(json.dumps(meta))
    result = run("models", "info", folder)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "toy 1: denoising" and "1.9 M parameters" in result.stdout
    assert "scores" not in result.stdout and "license            not stated" in result.stdout


def read_json(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())
