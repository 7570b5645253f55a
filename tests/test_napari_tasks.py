"""The Restore and Classify widgets, headless (Qt's offscreen platform, pytest-qt, napari's ``make_napari_viewer``).

As in ``test_napari_plugin.py``: the widgets dock into a real viewer; their work runs on napari's
``ViewerModel`` (Qt's offscreen platform has no OpenGL here to draw layers). Tiny synthetic
images; the one-channel denoiser is trained for three seconds (so it is checked to run plane by
plane, not to denoise). Skipped without napari
(``pip install cytolens[napari]``) or pytest-qt.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari_helpers import PLUGIN_MARKS, wait  # first: skips the module without napari

import cytolens
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.napari._task_widgets import ClassifyWidget, RestoreWidget

pytestmark = PLUGIN_MARKS


@pytest.fixture
def viewer(qtbot):
    from napari.components import ViewerModel

    return ViewerModel()


def nuclei(seed: int, shape=(96, 96)):
    return synthetic_nuclei(shape, n_nuclei=6, diameter_range=(14, 18), touching_fraction=0, seed=seed)


def test_both_widgets_dock_into_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    for widget in (RestoreWidget(viewer), ClassifyWidget(viewer)):
        viewer.window.add_dock_widget(widget, name=type(widget).__name__)
        assert widget.button.enabled and widget.model.value
    assert RestoreWidget(viewer).model.value == "label-free-nuclei"


def test_restore_a_13_plane_stack_into_a_layer_per_predicted_channel(viewer, qtbot):
    rng = np.random.default_rng(0)
    planes = np.stack([nuclei(0, (64, 64))[0].astype(np.float32) * (1 + k / 13) for k in range(13)])
    viewer.add_image(planes + rng.normal(0, 5, planes.shape).astype(np.float32), name="z")
    widget = RestoreWidget(viewer)
    widget.start()
    assert widget.busy
    wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["z", "z DAPI", "z MAP2", "z NFH"], widget.status.value
    outputs = [viewer.layers[name].data for name in ("z DAPI", "z MAP2", "z NFH")]
    assert all(out.shape == (64, 64) and np.isfinite(out).all() and out.std() > 0 for out in outputs)
    assert not np.allclose(outputs[0], outputs[1]) and widget.progress.value == 1


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    """A one-channel Noise2Void package trained for 3 s on two noisy synthetic images."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("denoiser") / "model"
    rng = np.random.default_rng(1)
    images = [(nuclei(s, (64, 64))[0] + rng.normal(0, 20, (64, 64))).astype(np.float32) for s in (1, 2)]
    try:
        cytolens.train_denoiser(images, folder, minutes=0.05, progress=False, base_channels=8, batch_size=4,
                                crop_size=32)
    finally:
        torch.set_num_threads(threads)
    return folder


def test_restore_a_stack_plane_by_plane_with_a_model_folder(viewer, qtbot, denoiser):
    rng = np.random.default_rng(2)
    stack = np.stack([nuclei(s, (64, 64))[0] + rng.normal(0, 20, (64, 64)) for s in (3, 4, 5)]).astype(np.float32)
    viewer.add_image(stack, name="noisy")
    widget = RestoreWidget(viewer)
    widget.package.value = str(denoiser)
    widget.start()
    wait(qtbot, widget)
    restored = viewer.layers["noisy restored"].data
    assert restored.shape == stack.shape and widget.progress.value == 3, widget.status.value
    assert np.isfinite(restored).all() and np.abs(restored - stack).mean() > 1  # the network's output, not a copy
    np.testing.assert_allclose(restored[1], cytolens.restore(stack[1], model=denoiser), rtol=1e-4, atol=1e-3)


def test_restore_errors_are_one_line(viewer, qtbot):
    viewer.add_image(np.zeros((4, 64, 64), np.float32), name="four planes")
    widget = RestoreWidget(viewer)  # label-free-nuclei reads 13 planes
    widget.start()
    wait(qtbot, widget)
    assert widget.status.value.startswith("error: ") and "the model reads 13" in widget.status.value
    assert "\n" not in widget.status.value and len(viewer.layers) == 1


def rgb(image: np.ndarray) -> np.ndarray:
    """A synthetic fluorescence image as an 8-bit RGB picture (what blood-cells reads)."""
    scaled = 255 * (image - image.min()) / max(np.ptp(image), 1)
    return np.stack([255 - scaled, 255 - 0.8 * scaled, 255 - 0.5 * scaled], -1).astype(np.uint8)


def check_classes(widget, viewer, labels, name):
    table = widget.result
    ids = np.unique(labels[labels > 0])
    assert sorted(table["label"]) == ids.tolist() and len(widget.table.value["data"]) == len(ids)
    probabilities = table.filter(like="p_").to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-4)
    classes = [c[2:] for c in table.filter(like="p_").columns]
    coloured = viewer.layers[name].data
    assert coloured.shape == labels.shape and not coloured[labels == 0].any()
    for row in table.itertuples():
        assert np.all(coloured[labels == row.label] == classes.index(row.predicted) + 1)
    return table


def test_classify_the_cells_of_a_labels_layer(viewer, qtbot):
    image, labels = nuclei(6)
    viewer.add_image(rgb(image), name="smear", rgb=True)
    viewer.add_labels(labels, name="cells")
    widget = ClassifyWidget(viewer)
    assert (widget.image.value, widget.label_layer.value, widget.model.value) == ("smear", "cells", "blood-cells")
    widget.start()
    wait(qtbot, widget)
    table = check_classes(widget, viewer, labels, "cells classes")
    features = viewer.layers["cells"].features
    assert len(features) == len(np.unique(labels)) - 1 and sorted(features["index"]) == sorted(table["label"])
    assert widget.status.value.startswith(f"{len(table)} cells: ")


def test_classify_the_current_frame_of_a_stack(viewer, qtbot):
    frames = [nuclei(s) for s in (7, 8)]
    viewer.add_image(np.stack([rgb(image) for image, _ in frames]), name="movie", rgb=True)
    viewer.add_labels(np.stack([labels for _, labels in frames]), name="cells")
    viewer.dims.set_current_step(0, 1)
    widget = ClassifyWidget(viewer)
    widget.start()
    wait(qtbot, widget)
    check_classes(widget, viewer, frames[1][1], "cells classes (frame 1)")
    assert "(frame 1)" in widget.status.value


def test_classify_errors_are_one_line(viewer, qtbot):
    image, labels = nuclei(9)
    viewer.add_image(image, name="grey")
    viewer.add_labels(labels, name="cells")
    viewer.add_labels(labels[:50], name="cropped")
    widget = ClassifyWidget(viewer)
    widget.start()
    wait(qtbot, widget)
    assert widget.status.value.startswith("error: ") and "the model takes 3" in widget.status.value
    widget.label_layer.value = "cropped"
    widget.start()
    assert widget.status.value.startswith("error: the image has shape (96, 96), which does not go with the labels")
    assert len(viewer.layers) == 3 and "\n" not in widget.status.value
