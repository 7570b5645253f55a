"""A project folder per user dataset: images, the model's predictions, the person's corrections.

Human-in-the-loop work spans sessions: a person segments some images, corrects a few, fine-tunes,
and comes back another day. A project keeps everything in one folder, so a later session (the
CLI, the napari plugin or Python) resumes where the person stopped::

    my_project/
      project.json        which images, which model, what was predicted and corrected when,
                          and the models fine-tuned from the corrections
      images/<name>.<ext> copies of the images (the originals are never touched)
      predictions/<name>.tif   the model's labels
      labels/<name>.tif        the corrected labels (what fine-tuning learns from)
      models/<name>/           fine-tuned model packages

``project.json`` is rewritten atomically after every change. Names are the images' file stems.

>>> import tempfile, numpy as np
>>> project = Project.create(tempfile.mkdtemp() + "/p", model="nuclei")
>>> name = project.add_image(np.zeros((8, 8), np.uint8), name="well1")
>>> project.save_correction(name, np.eye(8, dtype=np.uint16))
>>> Project.open(project.root).corrected()
['well1']
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidImageError, InvalidParameterError, OutputExistsError

PROJECT_FILE = "project.json"
FORMAT_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _checked_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise InvalidParameterError(f"image name {name!r} must be letters, digits, '.', '_' or '-' (a file stem)")
    return name


@dataclass
class Project:
    """A project folder (see the module docstring); create it with :meth:`create`, reopen it with :meth:`open`."""

    root: Path
    record: dict

    # -- opening -------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, model: str = "nuclei", *, exist_ok: bool = False) -> Project:
        """A new, empty project at ``root`` (with ``exist_ok``, an existing project there is opened instead)."""
        root = Path(root)
        if (root / PROJECT_FILE).is_file():
            if exist_ok:
                return cls.open(root)
            raise OutputExistsError(f"{root} is already a project; open it instead")
        if root.exists() and any(root.iterdir()):
            raise OutputExistsError(f"{root} exists and is not an empty folder; choose a new folder for the project")
        for sub in ("images", "predictions", "labels", "models"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        project = cls(root, {"format_version": FORMAT_VERSION, "created": _now(), "model": str(model),
                             "images": {}, "models": []})
        project._write()
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> Project:
        """The project at ``root``; a one-line error when there is none or its record is damaged."""
        root = Path(root)
        path = root / PROJECT_FILE
        if not path.is_file():
            raise InvalidParameterError(f"{root} is not a cytolens project (no {PROJECT_FILE}); create one first")
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidParameterError(f"{path} is damaged ({exc})") from None
        if not isinstance(record, dict) or "images" not in record:
            raise InvalidParameterError(f"{path} is not a project record (no 'images')")
        if record.get("format_version", 1) > FORMAT_VERSION:
            raise InvalidParameterError(f"{path} was written by a newer cytolens")
        return cls(root, record)

    def _write(self) -> None:
        from cytolens.io import atomic_write

        text = json.dumps(self.record, indent=1) + "\n"
        atomic_write(self.root / PROJECT_FILE, lambda tmp: tmp.write_text(text), overwrite=True)

    # -- images ----------------------------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """The model the project segments with: the latest fine-tuned one chosen with :meth:`use_model`, else the start."""
        return self.record["model"]

    def use_model(self, model: str | os.PathLike) -> None:
        self.record["model"] = str(model)
        self._write()

    def images(self) -> list[str]:
        """The images' names, in the order they were added."""
        return list(self.record["images"])

    def _entry(self, name: str) -> dict:
        if name not in self.record["images"]:
            raise InvalidParameterError(f"no image {name!r} in project {self.root}; it has "
                                        f"{', '.join(self.images()[:5]) or 'none'}")
        return self.record["images"][name]

    def add_image(self, image, name: str | None = None) -> str:
        """Copy an image file (or write an array) into the project; returns its name (the file stem by default)."""
        from cytolens.io import write_image

        if isinstance(image, str | os.PathLike):
            source = Path(image)
            if not source.is_file():
                raise InvalidParameterError(f"image file not found: {source}")
            name = _checked_name(name or source.stem)
            target = self.root / "images" / f"{name}{source.suffix.lower()}"
            origin = str(source.resolve())
        else:
            array = np.asarray(image)
            if array.ndim not in (2, 3) or array.size == 0:
                raise InvalidImageError(f"an image must be (Y, X) or (Y, X, C), got shape {array.shape}")
            name = _checked_name(name or f"image{len(self.record['images']):03d}")
            target = self.root / "images" / f"{name}.tif"
            origin = None
        if name in self.record["images"]:
            raise OutputExistsError(f"project {self.root} already has an image named {name!r}; give another name")
        if origin is None:
            write_image(target, array, overwrite=True)
        else:
            shutil.copyfile(origin, target)
        self.record["images"][name] = {"file": target.name, "source": origin, "added": _now(),
                                       "predicted": None, "prediction_model": None, "corrected": None,
                                       "objects": None}
        self._write()
        return name

    def image_path(self, name: str) -> Path:
        return self.root / "images" / self._entry(name)["file"]

    def read_image(self, name: str) -> np.ndarray:
        from cytolens.io import read_image

        return read_image(self.image_path(name))

    # -- predictions and corrections ------------------------------------------------------------------------------
    def _write_labels(self, folder: str, name: str, labels) -> np.ndarray:
        from cytolens.io import write_labels

        labels = np.asarray(labels)
        if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise InvalidImageError(f"labels for {name!r} must be a 2D integer image, got shape {labels.shape} of "
                                    f"{labels.dtype}")
        shape = self.read_image(name).shape[:2]
        if labels.shape != shape:
            raise InvalidImageError(f"labels for {name!r} are {labels.shape} but the image is {shape}; they must "
                                    "match pixel for pixel")
        write_labels(self.root / folder / f"{name}.tif", labels.astype(np.int64), overwrite=True)
        return labels

    def save_prediction(self, name: str, labels, model: str | None = None) -> None:
        """Keep the model's labels for ``name`` (``predictions/<name>.tif``)."""
        self._write_labels("predictions", name, labels)
        entry = self._entry(name)
        entry.update(predicted=_now(), prediction_model=str(model or self.model))
        self._write()

    def save_correction(self, name: str, labels) -> None:
        """Keep the person's corrected labels for ``name`` (``labels/<name>.tif``) and when they were saved."""
        labels = self._write_labels("labels", name, labels)
        entry = self._entry(name)
        entry.update(corrected=_now(), objects=len(np.unique(labels[labels > 0])))
        self._write()

    def _read(self, folder: str, name: str) -> np.ndarray | None:
        from cytolens.io import read_image

        path = self.root / folder / f"{name}.tif"
        self._entry(name)
        return read_image(path) if path.is_file() else None

    def prediction(self, name: str) -> np.ndarray | None:
        return self._read("predictions", name)

    def correction(self, name: str) -> np.ndarray | None:
        return self._read("labels", name)

    def corrected(self) -> list[str]:
        """Names of the images with corrected labels, in the order they were added."""
        return [n for n, e in self.record["images"].items() if e.get("corrected")]

    def status(self) -> list[dict]:
        """One row per image: name, file, when predicted (by which model) and corrected, corrected objects."""
        return [{"name": n, **{k: e.get(k) for k in ("file", "predicted", "prediction_model", "corrected",
                                                        "objects")}} for n, e in self.record["images"].items()]

    # -- the loop ---------------------------------------------------------------------------------------------------
    def segment(self, name: str, **options) -> np.ndarray:
        """Segment ``name`` with the project's model and keep the result as its prediction."""
        from cytolens.api import segment

        labels = segment(self.read_image(name), model=self.model, **options)
        self.save_prediction(name, labels)
        return labels

    def finetune(self, output: str | os.PathLike | None = None, *, minutes: float = 10.0, use: bool = True,
                 overwrite: bool = False, **options):
        """Fine-tune the project's model on the corrected images (:func:`cytolens.finetune`).

        The package goes to ``models/<model>-ftN`` unless ``output`` is given; with ``use``
        the project segments with it from now on. Returns the :class:`FinetuneResult`.
        """
        from cytolens.tasks.segmentation.finetune import finetune

        names = self.corrected()
        if not names:
            raise InvalidParameterError(f"project {self.root} has no corrected images yet: correct some labels "
                                        "first (save_correction, or the plugin's 'save correction')")
        if output is None:
            output = self.root / "models" / f"{Path(self.record['model']).name.split('-ft')[0]}-ft{len(self.record['models']) + 1}"
        started = self.model
        result = finetune([self.image_path(n) for n in names], self.root / "labels", output, model=started,
                          minutes=minutes, overwrite=overwrite, **options)
        self.record["models"].append({"path": str(Path(output).resolve()), "parent": started, "trained": _now(),
                                      "images": names, "minutes": minutes, "held_out": result.held_out,
                                      "best": {k: v for k, v in result.best.items() if k.startswith("val_")}})
        if use:
            self.record["model"] = str(Path(output).resolve())
        self._write()
        return result


__all__ = ["PROJECT_FILE", "Project"]
