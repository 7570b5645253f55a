"""Model packages: a folder with ``model.json`` + ``weights.safetensors``.

``model.json`` describes everything needed to use the weights: task, schema,
architecture and its arguments, input channels/axes, normalization, scale,
post-processing defaults, training provenance and validation scores.

Example
-------
>>> from cytolens.models import load
>>> model = load("nuclei")  # doctest: +SKIP
>>> model.meta["schema"]  # doctest: +SKIP
'deep_watershed'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cytolens.errors import InvalidModelError, UnknownModelError
from cytolens.io.images import atomic_write, make_folder
from cytolens.models.meta import FORMAT_VERSION, ModelMeta
from cytolens.nn import fuse_batchnorm
from cytolens.nn.registry import build_network as _build_registered
from cytolens.nn.registry import channels_last

BUNDLED_DIR = Path(str(resources.files("cytolens.models") / "bundled"))


@dataclass
class ModelPackage:
    """A loaded model: its metadata and its network (in eval mode)."""

    meta: dict
    network: torch.nn.Module
    path: Path | None = None
    extras: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def size_divisor(self) -> int:
        """Every spatial side the network reads must be a multiple of this (``2 ** depth`` of its pooling steps)."""
        return 2 ** self.meta["architecture"]["args"]["depth"]

    @cached_property
    def info(self) -> ModelMeta:
        """``meta`` as a typed :class:`~cytolens.models.meta.ModelMeta`."""
        return ModelMeta.from_json(self.meta, str(self.path / "model.json") if self.path else "model.json")

    @cached_property
    def inference_network(self) -> torch.nn.Module:
        """``network`` with its batch-norms folded into its convolutions: what segmenting runs.

        The same outputs to float rounding, ~10-15 % faster on a CPU
        (:func:`~cytolens.nn.unet.fuse_batchnorm`); made on first use and kept. Training
        from this package (a parent's weights) reads ``network``, which keeps its batch-norms.
        """
        return channels_last(fuse_batchnorm(self.network.eval()))


def build_network(architecture: dict) -> torch.nn.Module:
    """Build the network described by ``model.json``'s ``architecture`` entry (:mod:`cytolens.nn.registry`)."""
    return _build_registered(architecture.get("name"), **architecture.get("args", {}))


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "model.json").is_file())


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Folder of a bundled model name, a package folder, or an extracted ``.zip`` package.

    An exported network file (``.onnx``, ``.pt``) is returned as it is; a bioimage.io
    package ``.zip`` that cytolens exported is imported once into its extraction folder.
    """
    candidate = Path(name_or_path)
    if candidate.is_dir() and (candidate / "model.json").is_file():
        return candidate
    if candidate.is_file() and candidate.suffix.lower() in (".onnx", ".pt", ".torchscript"):
        return candidate  # an exported network: load() reads it (cytolens.models.export)
    if candidate.is_file() and candidate.suffix == ".zip":
        target = _extracted(candidate)
        inner = [p.parent for p in target.rglob("model.json")]
        if not inner and (target / "rdf.yaml").is_file():  # a bioimage.io package of a cytolens model
            from cytolens.models.export import imported_folder

            return imported_folder(candidate, target)
        if not inner:
            raise UnknownModelError(f"{candidate} holds no model.json: not a cytolens model package")
        return inner[0]
    bundled = BUNDLED_DIR / str(name_or_path)
    if (bundled / "model.json").is_file():
        return bundled
    known = ", ".join(bundled_models()) or "none"
    raise UnknownModelError(
        f"unknown model {str(name_or_path)!r}: give a bundled name ({known}) or a model package folder/.zip")


def _extracted(archive_path: Path) -> Path:
    """The folder a zip package is extracted to: one per archive content, reused by later loads."""
    digest = hashlib.sha256(archive_path.read_bytes()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"cytolens-model-{digest}"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".cytolens-model-{digest}-"))
    try:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(staging)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InvalidModelError(f"{archive_path} is not a readable zip archive ({exc}); the package is damaged "
                                "or was not fully copied") from None
    try:
        os.replace(staging, target)  # atomic: a concurrent load sees the whole folder or none
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_meta(name_or_path: str | os.PathLike) -> dict:
    """The ``model.json`` of a bundled model or package, or the description inside an exported network file."""
    found = resolve(name_or_path)
    if found.is_file():  # an exported .onnx / .pt: cytolens wrote its description into the file
        from cytolens.models.export import load_exported

        return load_exported(found).meta
    return _read_json(found / "model.json")


def update_meta(folder: str | os.PathLike, change: Callable[[dict], None]) -> dict:
    """Let ``change`` edit a package folder's ``model.json`` in place; write it back atomically.

    For the steps that run after training and record what they did (threshold search,
    size model, object filter, test scores). Returns the new metadata.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()); _ = (folder / "model.json").write_text('{"name": "x"}')
    >>> update_meta(folder, lambda meta: meta.setdefault("training", {}).update(epochs=3))
    {'name': 'x', 'training': {'epochs': 3}}
    """
    path = Path(folder) / "model.json"
    meta = _read_json(path)
    change(meta)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"), overwrite=True)
    return meta


#: what every model.json holds
REQUIRED_META = ("name", "task", "architecture")


def load(name_or_path: str | os.PathLike = "nuclei") -> ModelPackage:
    """Load a model package (no network access: bundled weights live in the package).

    Raises :class:`~cytolens.errors.UnknownModelError` when nothing is found under that
    name and :class:`~cytolens.errors.InvalidModelError` when a package is damaged
    (unreadable JSON or weights, weights that do not fit the architecture) or needs a
    newer cytolens.
    """
    folder = resolve(name_or_path)
    if folder.is_file():  # an ONNX or TorchScript file cytolens exported
        from cytolens.models.export import load_exported

        return load_exported(folder)
    meta = _read_json(folder / "model.json")
    if meta.get("format_version", 1) > FORMAT_VERSION:
        raise UnknownModelError(f"{folder} needs a newer cytolens (format {meta['format_version']})")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise InvalidModelError(f"{folder / 'model.json'} lacks {', '.join(missing)}: not a complete model package")
    ModelMeta.from_json(meta, str(folder / "model.json"))
    weights = folder / "weights.safetensors"
    if not weights.is_file():
        raise UnknownModelError(f"{folder} has no weights.safetensors")
    try:
        network = build_network(meta["architecture"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidModelError(f"{folder / 'model.json'}: its architecture cannot be built ({exc})") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise InvalidModelError(f"{weights} cannot be read ({' '.join(str(exc).split())}); the file is damaged "
                                "or was not fully copied") from None
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise InvalidModelError(f"{weights} does not fit the architecture in model.json ({first})") from None
    network.eval()
    # oneDNN's CPU convolutions run ~1.6x faster with channels-last (NHWC) weights; the outputs agree to 1e-5
    channels_last(network)
    extras = {}
    for extra in folder.glob("*.json"):  # e.g. size_model.json: plain numbers, no pickles
        if extra.name not in ("model.json", "split.json"):
            extras[extra.stem] = _read_json(extra)
    return ModelPackage(meta=meta, network=network, path=folder, extras=extras)


def _read_json(path: Path) -> dict:
    """A package's JSON file, which must hold one object; InvalidModelError otherwise."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{path} is not valid JSON ({exc}); the package is damaged") from None
    if not isinstance(data, dict):
        raise InvalidModelError(f"{path} must hold a JSON object, found a {type(data).__name__}; "
                                "the package is damaged")
    return data


def save(folder: str | os.PathLike, meta: dict | ModelMeta, state_dict: dict,
         extra_files: dict[str, Path] | None = None) -> Path:
    """Write a package folder atomically (temporary folder, then rename); ``meta`` is checked first."""
    folder = Path(folder)
    if isinstance(meta, ModelMeta):
        meta = meta.to_json()
    ModelMeta.from_json({"format_version": FORMAT_VERSION, **meta}, f"the model description for {folder}")
    make_folder(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    meta = {"format_version": FORMAT_VERSION, **meta}
    (staging / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    save_file({k: v.detach().contiguous() for k, v in state_dict.items()}, str(staging / "weights.safetensors"))
    for name, source in (extra_files or {}).items():
        if Path(source).is_file():
            shutil.copyfile(source, staging / name)
    if folder.exists():
        backup = folder.with_name(folder.name + ".previous")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(folder, backup)
        os.replace(staging, folder)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, folder)
    return folder
