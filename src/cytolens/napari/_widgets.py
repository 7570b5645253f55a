"""The plugin's dock widgets (magicgui containers); long work runs in napari thread workers.

* :class:`SegmentWidget` — segment the current image, or each plane of a stack, into a Labels layer;
* :class:`TrackWidget` — link a label movie ``(T, Y, X)`` into a Tracks layer (divisions included);
* :class:`TableWidget` — the per-cell table of a label image (the current plane of a stack);
* :class:`FinetuneWidget` — keep corrected labels in a project folder and fine-tune on them.

Every long call reports :class:`~cytolens.progress.ProgressEvent` s; :func:`run_in_worker` runs
it in a thread, passes the events to the GUI thread through the worker's ``yielded`` signal
(widgets are only touched there) and shows a :class:`~cytolens.errors.CytolensError` as one line
in the widget's status.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    Table,
)

from cytolens.errors import CytolensError
from cytolens.progress import ProgressEvent

#: post-processing settings the segment widget offers, when the model's schema has them
POSTPROCESS = {"foreground_threshold": (0.05, 0.95, 0.05), "marker_threshold": (0.05, 0.95, 0.05),
               "min_size": (0, 10000, 1)}


def _with_progress(call: Callable):
    """A generator that runs ``call(report)`` in a thread and yields each event it reports, then returns its result."""
    events: queue.Queue = queue.Queue()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = call(events.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the worker thread, which raises it
            outcome["error"] = exc
        finally:
            events.put(None)

    threading.Thread(target=target, daemon=True).start()
    while (event := events.get()) is not None:
        yield event
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _Task(Container):
    """A widget with a run button, a progress bar, a status line, and at most one worker at a time."""

    def __init__(self, viewer, button: str, widgets: list) -> None:
        self.viewer = viewer
        self.button = PushButton(text=button)
        self.progress = ProgressBar(min=0, max=1, value=0, label="progress")
        self.status = Label(value="")
        super().__init__(widgets=[*widgets, self.button, self.progress, self.status])
        self.worker = None
        self.button.changed.connect(self.start)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def run_in_worker(self, call: Callable, done: Callable) -> None:
        """Run ``call(report)`` in a thread worker; ``done(result)`` runs in the GUI thread."""
        from napari.qt.threading import create_worker

        if self.busy:
            self.status.value = "busy: wait for the running job"
            return
        self.button.enabled = False
        self.status.value = "running…"
        self.progress.value = 0
        worker = create_worker(_with_progress, call, _ignore_errors=True)  # errors go to the status line
        worker.yielded.connect(self._on_event)
        worker.returned.connect(done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def _on_event(self, event: ProgressEvent) -> None:
        if event.total:
            self.progress.max = event.total
            self.progress.value = min(event.done, event.total)
        self.status.value = f"{event.stage}: {event.done}" + (f"/{event.total}" if event.total else "") + (
            f" ({event.message[:60]})" if event.message else "")

    def _on_error(self, exc: BaseException) -> None:
        self.status.value = f"error: {exc}" if isinstance(exc, CytolensError) else f"error: {type(exc).__name__}: {exc}"

    def _on_finished(self) -> None:
        self.worker = None
        self.button.enabled = True

    def start(self) -> None:  # pragma: no cover - each widget defines it
        raise NotImplementedError


def layer_names(viewer, kind: str) -> Callable:
    """The choices of a layer picker: the names of the viewer's layers of ``kind`` ("Image", "Labels")."""
    def names(_widget=None) -> list[str]:
        import napari

        return [layer.name for layer in viewer.layers if isinstance(layer, getattr(napari.layers, kind))]
    return names


def task_models(task: str) -> list[str]:
    """The bundled models of a task ("segmentation", "restoration", "classification")."""
    from cytolens.models import bundled_models, read_meta

    return [name for name in bundled_models() if read_meta(name).get("task") == task]


def segmentation_models() -> list[str]:
    """The bundled segmentation models' names."""
    return task_models("segmentation")


def chosen_model(bundled: ComboBox, folder: FileEdit) -> str:
    """The model a widget names: the package folder when one is chosen, else the bundled model."""
    path = str(folder.value or "")
    return path if path not in ("", ".") and Path(path).is_dir() else bundled.value


def planes_of(data: np.ndarray, rgb: bool) -> tuple[list[np.ndarray], bool]:
    """The 2D images of a layer's data (``(Y, X[, C])`` or a stack ``(T, Y, X[, C])``) and whether it is a stack."""
    data = np.asarray(data)
    image_ndim = 3 if rgb else 2
    if data.ndim == image_ndim:
        return [data], False
    if data.ndim == image_ndim + 1:
        return list(data), True
    raise CytolensError(f"the layer's data has shape {data.shape}: give a 2D image or a stack of them")


def current_plane(viewer, data: np.ndarray, ndim: int) -> tuple[np.ndarray, int | None]:
    """The plane of a stack the viewer shows (its first axis) and its index, or ``ndim``-D data itself and None."""
    data = np.asarray(data)
    if data.ndim == ndim:
        return data, None
    frame = min(int(viewer.dims.current_step[0]), len(data) - 1)
    return data[frame], frame


class SegmentWidget(_Task):
    """Segment the chosen image layer (each plane of a stack) with a model into a Labels layer."""

    def __init__(self, napari_viewer) -> None:
        self.image = ComboBox(label="image", choices=layer_names(napari_viewer, "Image"))
        self.model = ComboBox(label="model", choices=segmentation_models(), value="nuclei")
        self.package = FileEdit(label="or a model folder", mode="d", value="")
        self.diameter = FloatSpinBox(label="diameter (0: estimate)", min=0, max=2000, step=1, value=0)
        self.channel = SpinBox(label="channel (-1: all)", min=-1, max=63, value=-1)
        self.settings = {name: (FloatSpinBox if step < 1 else SpinBox)(label=name.replace("_", " "), min=low,
                                                                        max=high, step=step)
                         for name, (low, high, step) in POSTPROCESS.items()}
        self.filter_objects = CheckBox(text="object filter", value=True)
        super().__init__(napari_viewer, "Segment", [self.image, self.model, self.package, self.diameter, self.channel,
                                                    *self.settings.values(), self.filter_objects])
        self.model.changed.connect(self._model_defaults)
        self.package.changed.connect(self._model_defaults)
        self._model_defaults()

    def chosen_model(self) -> str:
        return chosen_model(self.model, self.package)

    def _model_defaults(self, *_) -> None:
        from cytolens.models import read_meta

        try:
            defaults = read_meta(self.chosen_model()).get("postprocess", {})
        except CytolensError as exc:
            self.status.value = f"error: {exc}"
            return
        for name, widget in self.settings.items():
            widget.enabled = name in defaults
            if name in defaults:
                widget.value = defaults[name]

    def segment_options(self) -> dict:
        """The keyword arguments of :func:`cytolens.segment` the widget's settings make."""
        options = {"diameter": self.diameter.value or None, "filter_objects": self.filter_objects.value,
                   "channel": None if self.channel.value < 0 else self.channel.value}
        options.update({name: widget.value for name, widget in self.settings.items() if widget.enabled})
        return options

    def start(self) -> None:
        from cytolens.api import segment

        if not self.image.value:
            self.status.value = "error: open an image first"
            return
        layer = self.viewer.layers[self.image.value]
        planes, stack = planes_of(layer.data, layer.rgb)
        model, options = self.chosen_model(), self.segment_options()

        def call(report):
            labels = []
            for k, plane in enumerate(planes):
                labels.append(segment(plane, model=model, **options))
                report(ProgressEvent("segmenting", k + 1, len(planes)))
            return np.stack(labels) if stack else labels[0]

        def done(labels) -> None:
            name = f"{layer.name} labels"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = labels
            else:
                self.viewer.add_labels(labels, name=name, scale=layer.scale[-labels.ndim:])
            self.status.value = f"{int(labels.max())} objects" if not stack else f"{len(planes)} planes segmented"

        self.run_in_worker(call, done)


class TrackWidget(_Task):
    """Link a label movie ``(T, Y, X)`` into a napari Tracks layer (cytolens.track)."""

    def __init__(self, napari_viewer) -> None:
        self.label_layer = ComboBox(label="label movie", choices=layer_names(napari_viewer, "Labels"))
        self.max_gap = SpinBox(label="frames a cell may be missed", min=0, max=10, value=2)
        self.divisions = CheckBox(text="divisions", value=True)
        super().__init__(napari_viewer, "Track", [self.label_layer, self.max_gap, self.divisions])
        self.result = None

    def start(self) -> None:
        from cytolens.track import track

        if not self.label_layer.value:
            self.status.value = "error: open or segment a label movie first"
            return
        layer = self.viewer.layers[self.label_layer.value]
        movie = np.asarray(layer.data)
        settings = {"max_gap": self.max_gap.value, **({} if self.divisions.value else {"divisions": False})}

        def call(report):
            if movie.ndim != 3:
                raise CytolensError(f"tracking needs a label movie (T, Y, X); {layer.name!r} has shape {movie.shape}")
            return track(labels=movie, progress=report, **settings)

        def done(result) -> None:
            self.result = result
            data, graph = result.to_napari()
            name = f"{layer.name} tracks"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            self.viewer.add_tracks(data, graph=graph, name=name)
            self.status.value = f"{result.tracks['track_id'].nunique()} tracks, {len(graph)} with a parent"

        self.run_in_worker(call, done)


class TableWidget(_Task):
    """The per-cell table (cytolens.measure) of a label layer, with intensities from an image layer."""

    def __init__(self, napari_viewer) -> None:
        self.label_layer = ComboBox(label="labels", choices=layer_names(napari_viewer, "Labels"))
        self.image = ComboBox(label="intensities from", choices=self._with_none(napari_viewer))
        self.table = Table(value={"data": [], "index": [], "columns": []})
        super().__init__(napari_viewer, "Measure", [self.label_layer, self.image, self.table])
        self.frame = None

    @staticmethod
    def _with_none(viewer) -> Callable:
        images = layer_names(viewer, "Image")
        return lambda _widget=None: ["(none)", *images()]

    def _current(self, data: np.ndarray, ndim: int) -> np.ndarray:
        """The plane of a stack the viewer shows (its first axis), or the 2D data itself."""
        plane, frame = current_plane(self.viewer, data, ndim)
        self.frame = frame if frame is not None else self.frame
        return plane

    def start(self) -> None:
        from cytolens.measure import measure

        if not self.label_layer.value:
            self.status.value = "error: segment an image first"
            return
        layer = self.viewer.layers[self.label_layer.value]
        labels = self._current(layer.data, 2)
        image = None
        if self.image.value not in (None, "(none)"):
            source = self.viewer.layers[self.image.value]
            image = self._current(source.data, 3 if source.rgb else 2)

        def call(report):
            table = measure(labels, image)
            report(ProgressEvent("measuring", 1, 1))
            return table

        def done(table) -> None:
            self.table.value = table.round(3).to_dict("split")
            self.status.value = f"{len(table)} objects" + (f" (frame {self.frame})" if self.frame is not None else "")

        self.run_in_worker(call, done)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._-") or "image"


class FinetuneWidget(_Task):
    """Keep corrected labels in a project folder, and fine-tune the model on them ("fine-tune on my corrections")."""

    def __init__(self, napari_viewer) -> None:
        self.folder = FileEdit(label="project folder", mode="d", value="")
        self.model = ComboBox(label="start from (new project)", choices=segmentation_models(), value="nuclei")
        self.image = ComboBox(label="image", choices=layer_names(napari_viewer, "Image"))
        self.label_layer = ComboBox(label="corrected labels", choices=layer_names(napari_viewer, "Labels"))
        self.save = PushButton(text="Save correction")
        self.minutes = FloatSpinBox(label="minutes of training", min=0.05, max=600, step=1, value=10)
        self.summary = Label(value="")
        super().__init__(napari_viewer, "Fine-tune on my corrections",
                         [self.folder, self.model, self.image, self.label_layer, self.save, self.minutes, self.summary])
        self.save.changed.connect(self.save_correction)
        self.folder.changed.connect(self._show_project)
        self.result = None

    def project(self):
        """The project at the chosen folder (created, starting from the chosen model, when new)."""
        from cytolens.project import Project

        folder = str(self.folder.value or "")
        if folder in ("", "."):
            raise CytolensError("choose a project folder first")
        return Project.create(folder, model=self.model.value, exist_ok=True)

    def _show_project(self, *_) -> None:
        try:
            project = self.project()
        except CytolensError as exc:
            self.summary.value = f"error: {exc}"
            return
        self.summary.value = (f"{len(project.images())} image(s), {len(project.corrected())} corrected; "
                              f"model: {Path(project.model).name}")

    def save_correction(self, *_) -> None:
        """Add the image to the project (once) and keep the labels layer as its corrected labels."""
        try:
            project = self.project()
            if not self.image.value or not self.label_layer.value:
                raise CytolensError("choose the image and its corrected labels layer")
            image_layer = self.viewer.layers[self.image.value]
            name = _safe_name(image_layer.name)
            if name not in project.images():
                source = getattr(image_layer.source, "path", None)
                project.add_image(source if source and Path(source).is_file() else np.asarray(image_layer.data),
                                  name=name)
            project.save_correction(name, np.asarray(self.viewer.layers[self.label_layer.value].data))
        except CytolensError as exc:
            self.status.value = f"error: {exc}"
            return
        self.status.value = f"saved the correction of {name}"
        self._show_project()

    def start(self) -> None:
        try:
            project = self.project()
        except CytolensError as exc:
            self.status.value = f"error: {exc}"
            return
        minutes = self.minutes.value

        def call(report):
            return project.finetune(minutes=minutes, progress=report)

        def done(result) -> None:
            self.result = result
            scores = ", ".join(f"{k} {v:.3f}" for k, v in result.best.items() if k.startswith("val_ap"))
            self.status.value = f"wrote {result.package.name} ({scores}); the project now segments with it"
            self._show_project()

        self.run_in_worker(call, done)
