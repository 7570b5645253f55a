"""The napari plugin, headless (Qt's offscreen platform, pytest-qt, napari's ``make_napari_viewer``).

Skipped when napari (``pip install cytolens[napari]``) or pytest-qt is not installed. The
widgets dock into a real viewer (``make_napari_viewer``); their work is tested on napari's
``ViewerModel`` (the viewer without its canvas), because drawing a layer needs OpenGL, which
Qt's offscreen platform does not offer on a machine without a display. Small synthetic
images; the fine-tune test starts from a tiny model trained in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from napari_helpers import PLUGIN_MARKS, napari, wait  # first: skips the module without napari

from cytolens.data.synthetic import synthetic_movie, synthetic_nuclei
from cytolens.napari import _widgets
from cytolens.project import Project

pytestmark = PLUGIN_MARKS
MANIFEST = Path(_widgets.__file__).with_name("napari.yaml")


def test_the_manifest_names_every_widget():
    import importlib

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    widgets = {commands[w.command].split(":")[1] for w in manifest.contributions.widgets}
    assert widgets == {"SegmentWidget", "TrackWidget", "TableWidget", "FinetuneWidget", "RestoreWidget",
                       "ClassifyWidget"}
    readers = {commands[r.command].split(":")[1] for r in manifest.contributions.readers}
    assert readers == {"get_ctc_reader", "get_tracks_reader"}
    for python_name in commands.values():
        module, name = python_name.split(":")
        assert hasattr(importlib.import_module(module), name), python_name


@pytest.fixture
def viewer(qtbot):
    """A viewer without a canvas (layers, dims, the same add_* methods); qtbot supplies the Qt application."""
    from napari.components import ViewerModel

    return ViewerModel()


def test_every_widget_docks_into_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("SegmentWidget", "TrackWidget", "TableWidget", "FinetuneWidget"):
        widget = getattr(_widgets, name)(viewer)
        viewer.window.add_dock_widget(widget, name=name)
        assert widget.viewer is viewer and widget.button.enabled
    assert len(viewer.window.dock_widgets) == 4 if hasattr(viewer.window, "dock_widgets") else True


def test_segment_a_stack_in_a_worker_then_measure(viewer, qtbot):
    frames = [synthetic_nuclei((96, 96), n_nuclei=6, diameter_range=(14, 18), touching_fraction=0, seed=s)
              for s in (1, 2)]
    viewer.add_image(np.stack([f[0] for f in frames]), name="cells")
    widget = _widgets.SegmentWidget(viewer)
    assert widget.image.value == "cells" and widget.model.value == "nuclei"
    assert widget.settings["foreground_threshold"].enabled  # the model's defaults are offered
    widget.diameter.value = 16
    widget.start()
    assert widget.busy  # the viewer stays free while it works
    wait(qtbot, widget)
    labels = viewer.layers["cells labels"].data
    assert labels.shape == (2, 96, 96) and widget.progress.value == 2
    assert all(5 <= len(np.unique(plane)) - 1 <= 8 for plane in labels), widget.status.value

    table = _widgets.TableWidget(viewer)
    table.image.value = "cells"
    table.start()
    wait(qtbot, table)
    assert len(table.table.value["data"]) == len(np.unique(labels[0])) - 1 and table.frame == 0


def test_errors_are_one_line_in_the_status(viewer, qtbot):
    viewer.add_labels(np.zeros((8, 8), np.int32), name="flat")
    widget = _widgets.TrackWidget(viewer)
    widget.start()
    wait(qtbot, widget)
    assert widget.status.value.startswith("error: tracking needs a label movie (T, Y, X)")


def test_track_a_label_movie_into_tracks(viewer, qtbot):
    _, labels, _ = synthetic_movie(n_frames=5, shape=(96, 96), n_cells=5, seed=0)[:3]
    viewer.add_labels(labels, name="movie")
    widget = _widgets.TrackWidget(viewer)
    widget.start()
    wait(qtbot, widget)
    tracks = viewer.layers["movie tracks"]
    assert isinstance(tracks, napari.layers.Tracks) and len(np.unique(tracks.data[:, 0])) >= 5, widget.status.value


def test_save_corrections_and_fine_tune_from_the_viewer(viewer, qtbot, tmp_path):
    import cytolens.train

    tiny = tmp_path / "tiny"
    (tmp_path / "data/images").mkdir(parents=True)
    (tmp_path / "data/labels").mkdir(parents=True)
    from cytolens.io import write_image, write_labels

    pairs = [synthetic_nuclei((64, 64), n_nuclei=6, diameter_range=(8, 12), touching_fraction=0, seed=s)
             for s in range(4)]
    for k, (image, labels) in enumerate(pairs):
        write_image(tmp_path / f"data/images/i{k}.tif", image)
        write_labels(tmp_path / f"data/labels/i{k}.tif", labels)
    cytolens.train({"name": "tiny", "schema": "deep_watershed", "target_diameter": 10,
                    "data": {"images": str(tmp_path / "data/images"), "labels": str(tmp_path / "data/labels"),
                             "val_fraction": 0.25, "test_fraction": 0.0},
                    "architecture": {"depth": 2, "base_channels": 4},
                    "optimization": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "crop_size": 32,
                                     "device": "cpu"}, "output": str(tiny)}, progress=False)
    widget = _widgets.FinetuneWidget(viewer)
    widget.folder.value = str(tmp_path / "project")
    widget.model.value = "nuclei"
    for k, (image, labels) in enumerate(pairs[:2]):
        viewer.add_image(image, name=f"well {k}")
        viewer.add_labels(labels, name=f"well {k} labels")
        widget.image.value, widget.label_layer.value = f"well {k}", f"well {k} labels"
        widget.save_correction()
    assert widget.status.value == "saved the correction of well_1"
    project = Project.open(tmp_path / "project")  # what a later session sees
    assert project.corrected() == ["well_0", "well_1"]
    np.testing.assert_array_equal(project.correction("well_1"), pairs[1][1])
    project.use_model(str(tiny))  # a tiny start, so the test takes seconds
    widget.minutes.value = 0.05
    widget.start()
    wait(qtbot, widget)
    assert widget.status.value.startswith("wrote tiny-ft1"), widget.status.value
    again = Project.open(tmp_path / "project")
    assert Path(again.model).name == "tiny-ft1" and again.record["models"][0]["images"] == ["well_0", "well_1"]
    assert (Path(again.model) / "weights.safetensors").is_file()


def test_the_committed_screenshot_has_its_script():
    docs = Path(__file__).resolve().parents[1] / "docs"
    assert (docs / "napari_widget.png").is_file() and "canvas_only=False" in (docs / "napari_screenshot.py").read_text()
