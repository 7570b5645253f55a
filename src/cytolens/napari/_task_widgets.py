"""Dock widgets for the restoration and classification tasks (the pattern of :mod:`._widgets`).

* :class:`RestoreWidget` — restore the current image (each plane of a stack for a one-channel
  model) with a bundled restoration model or a package folder (``cytolens train-denoiser``
  writes one), into a new Image layer (one per predicted channel, named by the model);
* :class:`ClassifyWidget` — classify every cell of a Labels layer from the image under it with
  a classifier: the per-cell table (``label, predicted, p_<class>``) is shown and becomes the
  Labels layer's features (one row per label), and a Labels layer coloured by class is added.
  For a label stack the frame on screen is classified: the table and the class layer are that
  frame's, and the stack's features are left as they are (its ids need not be one cell over time).

Both run in a napari thread worker with a progress bar; errors are one status line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Table

from cytolens.errors import InvalidImageError
from cytolens.napari._widgets import _Task, chosen_model, current_plane, layer_names, task_models
from cytolens.progress import ProgressEvent


def restore_units(data: np.ndarray, rgb: bool, channels: int) -> tuple[list[np.ndarray], bool]:
    """The images a restoration model reading ``channels`` channels takes from a layer's data, and whether a stack.

    ``(Y, X)``, an RGB ``(Y, X, C)`` or a ``(C, Y, X)`` stack of the model's planes is one
    image; ``(T, Y, X)`` for a one-channel model, or ``(T, C, Y, X)``, is restored frame by frame.

    >>> [u.shape for u in restore_units(np.zeros((4, 8, 8)), False, 1)[0]]
    [(8, 8), (8, 8), (8, 8), (8, 8)]
    >>> restore_units(np.zeros((13, 8, 8)), False, 13)[1], restore_units(np.zeros((2, 13, 8, 8)), False, 13)[1]
    (False, True)
    """
    data = np.asarray(data)
    frame_ndim = (3 if rgb else 2) + (0 if rgb or channels == 1 else 1)
    if data.ndim == frame_ndim + 1:
        return list(data), True
    return [data], False  # one image; restore says what is wrong with a shape it cannot read


def cells_image(data: np.ndarray, rgb: bool, labels_shape: tuple[int, ...], frame: int | None = None,
                frames: int = 0) -> np.ndarray:
    """The ``(Y, X[, C])`` image under a 2D label image: frame ``frame`` of a ``frames``-long stack, channels last.

    >>> cells_image(np.zeros((3, 8, 9)), False, (8, 9)).shape  # (C, Y, X) channels first
    (8, 9, 3)
    >>> cells_image(np.zeros((2, 8, 9)), False, (8, 9), frame=1, frames=2).shape  # frame 1 of a stack
    (8, 9)
    """
    data = np.asarray(data)
    spatial = data.shape[:-1] if rgb else data.shape
    if frame is not None and len(spatial) in (3, 4) and spatial[0] == frames:
        data, spatial = data[frame], spatial[1:]
    if len(spatial) == 3 and not rgb and spatial[1:] == tuple(labels_shape):
        data, spatial = np.moveaxis(data, 0, -1), spatial[1:]  # (C, Y, X): channels first
    if tuple(spatial) != tuple(labels_shape):
        raise InvalidImageError(f"the image has shape {np.shape(data)}, which does not go with the labels "
                                f"{tuple(labels_shape)}: give a (Y, X[, C]) image, or a stack with a frame per label "
                                "frame")
    return data


class RestoreWidget(_Task):
    """Restore the chosen image layer (denoise, or predict fluorescence) into a new Image layer."""

    def __init__(self, napari_viewer) -> None:
        models = task_models("restoration")
        self.image = ComboBox(label="image", choices=layer_names(napari_viewer, "Image"))
        self.model = ComboBox(label="model", choices=models, value=models[0] if models else None)
        self.package = FileEdit(label="or a model folder", mode="d", value="")
        super().__init__(napari_viewer, "Restore", [self.image, self.model, self.package])

    def start(self) -> None:
        from cytolens.api import restore
        from cytolens.errors import CytolensError
        from cytolens.models import read_meta

        if not self.image.value:
            self.status.value = "error: open an image first"
            return
        model = chosen_model(self.model, self.package)
        try:
            meta = read_meta(model)
        except CytolensError as exc:
            self.status.value = f"error: {exc}"
            return
        layer = self.viewer.layers[self.image.value]
        images, stack = restore_units(layer.data, layer.rgb, int(meta.get("input", {}).get("channels", 1)))
        names = meta.get("restoration", {}).get("output_names") or []

        def call(report):
            out = []
            for k, image in enumerate(images):
                out.append(restore(image, model=model))
                report(ProgressEvent("restoring", k + 1, len(images)))
            return np.stack(out) if stack else out[0]

        def done(restored) -> None:
            channel_axis = (1 if stack else 0) if restored.ndim == (4 if stack else 3) else None
            scale = ((layer.scale[0],) if stack else ()) + tuple(layer.scale[-2:])
            if channel_axis is None:
                titles: str | list[str] = f"{layer.name} restored"
            else:
                count = restored.shape[channel_axis]
                labels = names if len(names) == count else [f"channel {c}" for c in range(count)]
                titles = [f"{layer.name} {name}" for name in labels]
            for title in [titles] if isinstance(titles, str) else titles:
                if title in self.viewer.layers:
                    self.viewer.layers.remove(title)
            self.viewer.add_image(restored, name=titles, channel_axis=channel_axis, scale=scale)
            self.status.value = f"restored {layer.name} ({len(images)} image{'s' if stack else ''})"

        self.run_in_worker(call, done)


class ClassifyWidget(_Task):
    """Classify each cell of a Labels layer (the current frame of a stack) from the image under it."""

    def __init__(self, napari_viewer) -> None:
        models = task_models("classification")
        self.image = ComboBox(label="image", choices=layer_names(napari_viewer, "Image"))
        self.label_layer = ComboBox(label="cells (labels)", choices=layer_names(napari_viewer, "Labels"))
        self.model = ComboBox(label="model", choices=models, value="blood-cells" if "blood-cells" in models else None)
        self.package = FileEdit(label="or a model folder", mode="d", value="")
        self.by_class = CheckBox(text="add a labels layer coloured by class", value=True)
        self.table = Table(value={"data": [], "index": [], "columns": []})
        super().__init__(napari_viewer, "Classify", [self.image, self.label_layer, self.model, self.package,
                                                     self.by_class, self.table])
        self.result: pd.DataFrame | None = None

    def start(self) -> None:
        from cytolens.api import classify
        from cytolens.errors import CytolensError

        if not self.image.value or not self.label_layer.value:
            self.status.value = "error: choose an image and its cells' labels layer"
            return
        layer = self.viewer.layers[self.label_layer.value]
        labels, frame = current_plane(self.viewer, layer.data, 2)
        source = self.viewer.layers[self.image.value]
        try:
            image = cells_image(source.data, source.rgb, labels.shape, frame, len(layer.data))
        except CytolensError as exc:
            self.status.value = f"error: {exc}"
            return
        model = chosen_model(self.model, self.package)

        def call(report):
            table = classify(image, model=model, labels=labels).drop(columns="path")
            report(ProgressEvent("classifying", 1, 1))
            return table

        def done(table: pd.DataFrame) -> None:
            self.result = table
            self.table.value = table.round(3).to_dict("split")
            where = f" (frame {frame})" if frame is not None else ""
            if frame is None:  # one row per label of this layer
                layer.features = table.assign(index=table["label"])
            if self.by_class.value:
                self._add_class_layer(layer, labels, table, where)
            counts = table["predicted"].value_counts()
            self.status.value = f"{len(table)} cells{where}: " + ", ".join(f"{n} {c}" for c, n in counts.items())

        self.run_in_worker(call, done)

    def _add_class_layer(self, layer, labels: np.ndarray, table: pd.DataFrame, where: str) -> None:
        """A Labels layer whose value is each cell's class (1 = the model's first class; its name on hover)."""
        classes = [c[2:] for c in table.columns if c.startswith("p_")]
        code = {name: k + 1 for k, name in enumerate(classes)}
        lookup = np.zeros(int(labels.max()) + 1, np.uint16)
        lookup[table["label"].to_numpy()] = table["predicted"].map(code).to_numpy()
        name = f"{layer.name} classes{where}"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_labels(lookup[labels], name=name, scale=layer.scale[-2:],
                               features=pd.DataFrame({"index": range(len(classes) + 1),
                                                      "class": ["none", *classes]}))
