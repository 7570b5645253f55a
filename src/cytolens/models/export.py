"""Export a model package to ONNX, TorchScript or a bioimage.io model package, and load such exports back.

Every export carries the package's description: ``model.json`` and its plain-JSON extras
(``size_model.json``, ``object_filter.json``) as one JSON object (:func:`description`), in the
ONNX file's ``metadata_props`` (key ``cytolens``), in the TorchScript file's extra file
``cytolens.json``, and in a bioimage.io package as the attachment ``cytolens.json`` (named by
``rdf.yaml``'s ``config.cytolens``). So :func:`load_exported` (and so ``cytolens.segment(image,
model="nuclei.onnx")``) normalizes, estimates the diameter and post-processes exactly as with
the package, running the exported network: ONNX Runtime for ``.onnx``, TorchScript for ``.pt``.

What the exported networks compute: the network of the package with its batch-norms folded
(:func:`~cytolens.nn.unet.fuse_batchnorm`), ``(N, C, Y, X)`` float32 normalized input to raw
outputs (logits). A segmentation U-Net also returns its bottleneck "style" ``(N, S)``, which the
size model turns into a first diameter estimate (two outputs: ``output`` and ``style``).
Spatial axes are dynamic; a U-Net's sides must be multiples of ``2 ** depth``.

Example
-------
>>> import tempfile, pathlib, numpy as np, torch
>>> path = export_model("nuclei_fast", "onnx", pathlib.Path(tempfile.mkdtemp()) / "nuclei_fast.onnx")
>>> package = load_exported(path)
>>> package.meta["name"], package.extras["size_model"]["alpha"] > 0
('nuclei_fast', True)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from cytolens.errors import InvalidModelError, InvalidParameterError, OutputExistsError
from cytolens.io.images import atomic_write
from cytolens.models.meta import ModelMeta
from cytolens.models.package import ModelPackage, load
from cytolens.nn.registry import build_network
from cytolens.nn.unet import fuse_batchnorm

#: the formats :func:`export_model` writes
FORMATS = ("onnx", "torchscript", "bioimageio")
#: the ONNX metadata key, TorchScript extra file and bioimage.io attachment that carry the description
META_KEY, META_FILE = "cytolens", "cytolens.json"
#: file suffixes of exported networks that :func:`load_exported` reads
NETWORK_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".torchscript": "torchscript"}
#: the ONNX operator set written (ONNX Runtime 1.16 and later read it)
OPSET = 17


class ExportNetwork(nn.Module):
    """A registered network as it is exported: its outputs, and a segmentation U-Net's style too.

    The bioimage.io package's ``pytorch_state_dict`` weights are this module's state
    (``network.`` + the package's weight names); ``rdf.yaml`` names it as the architecture.
    """

    def __init__(self, architecture: dict, style: bool = False) -> None:
        super().__init__()
        self.network = build_network(architecture["name"], **architecture.get("args", {}))
        self.with_style = style

    def forward(self, x: torch.Tensor):
        if self.with_style:
            return self.network.forward_with_style(x)
        return self.network(x)


def description(package: ModelPackage) -> dict:
    """What travels inside an export: ``{"model": model.json, "extras": {name: extra JSON}}``."""
    return {"model": package.meta, "extras": package.extras}


def _has_style(meta: dict) -> bool:
    return meta.get("task") == "segmentation" and meta["architecture"]["name"] == "unet"


def export_network(package: ModelPackage, *, fused: bool = True) -> ExportNetwork:
    """The package's network wrapped for export (eval mode, contiguous weights; batch-norms folded when ``fused``)."""
    wrapper = ExportNetwork(package.meta["architecture"], style=_has_style(package.meta))
    wrapper.network.load_state_dict(package.network.state_dict())
    wrapper.eval().requires_grad_(False)
    return fuse_batchnorm(wrapper) if fused else wrapper


def example_shape(meta: dict, side: int = 64) -> tuple[int, ...]:
    """``(1, C, Y, X)`` of an input the network takes: a classifier's own size, else ``side`` rounded to its divisor."""
    args = meta["architecture"]["args"]
    if meta.get("task") == "classification":
        side = int(meta["input"]["size"])
    elif meta["architecture"]["name"] == "unet":
        divisor = 2 ** int(args["depth"])
        side = max(divisor, -(-side // divisor) * divisor)
    return (1, int(args["in_channels"]), side, side)


def _output_names(meta: dict) -> list[str]:
    return ["output", "style"] if _has_style(meta) else ["output"]


def write_onnx(package: ModelPackage, path: Path, network: nn.Module | None = None) -> None:
    """Write the network to ``path`` as ONNX (dynamic batch and spatial axes), with the description in its metadata."""
    import onnx

    network = network or export_network(package)
    names = _output_names(package.meta)
    dynamic = {"input": {0: "batch", 2: "y", 3: "x"}, "output": {0: "batch"}, "style": {0: "batch"}}
    if package.meta.get("task") != "classification":
        dynamic["output"].update({2: "y", 3: "x"})
    with warnings.catch_warnings():  # the TorchScript-based exporter warns that it is the legacy one
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.zeros(example_shape(package.meta)),), str(path), input_names=["input"],
                          output_names=names, dynamic_axes={k: v for k, v in dynamic.items() if k in (*names, "input")},
                          opset_version=OPSET, dynamo=False)
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(description(package))
    onnx.save(graph, str(path))


def write_torchscript(package: ModelPackage, path: Path, network: nn.Module | None = None) -> None:
    """Write the traced network to ``path`` (TorchScript), with the description as the extra file ``cytolens.json``."""
    network = network or export_network(package)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the shape arithmetic of the style's mean
        traced = torch.jit.trace(network, torch.zeros(example_shape(package.meta)), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={META_FILE: json.dumps(description(package))})


def export_model(model: str | os.PathLike | ModelPackage, fmt: str, output: str | os.PathLike, *,
                 overwrite: bool = False) -> Path:
    """Export a model (bundled name, package folder/.zip, or a loaded package) to ``output`` in format ``fmt``.

    ``fmt`` is ``"onnx"`` (a ``.onnx`` file), ``"torchscript"`` (a ``.pt`` file) or
    ``"bioimageio"`` (a bioimage.io model package ``.zip``: ``rdf.yaml``, the network as
    TorchScript, ONNX and a PyTorch state dict, a test input and output, a cover and a
    README that says how outputs become labels). ``output`` is written atomically and
    never replaced unless ``overwrite``.
    """
    if fmt not in FORMATS:
        raise InvalidParameterError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    package = model if isinstance(model, ModelPackage) else load(model)
    if fmt == "bioimageio":
        from cytolens.models.bioimageio import write_bioimageio

        writer = lambda tmp: write_bioimageio(package, tmp)
    else:
        writer = lambda tmp: (write_onnx if fmt == "onnx" else write_torchscript)(package, tmp)
    return atomic_write(output, writer, overwrite=overwrite)


# --- loading exported networks -----------------------------------------------------------------------------------


class ExportedNetwork(nn.Module):
    """An exported network behind the interface inference uses: ``forward``, ``style``, ``config``, a device.

    Holds no weights of its own (one empty parameter says the device: the CPU).
    """

    def __init__(self, meta: dict, source: Path) -> None:
        super().__init__()
        args = meta["architecture"]["args"]
        self.config = SimpleNamespace(**{"dims": 2, **args})
        self.source = source
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]

    def style(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.run(x)
        if len(outputs) < 2:
            raise InvalidModelError(f"{self.source} has no style output, so its diameter cannot be estimated: "
                                    "give the diameter, or export the model again with this cytolens")
        return outputs[1]


class OnnxNetwork(ExportedNetwork):
    """An ONNX network run by ONNX Runtime on the CPU."""

    def __init__(self, meta: dict, source: Path, session) -> None:
        super().__init__(meta, source)
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return tuple(torch.from_numpy(out) for out in self.session.run(None, {self.input_name: array}))


class TorchScriptNetwork(ExportedNetwork):
    """A TorchScript network (kept out of the module tree, so moving this wrapper never touches its weights)."""

    def __init__(self, meta: dict, source: Path, module) -> None:
        super().__init__(meta, source)
        object.__setattr__(self, "module", module)

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            out = self.module(x.float())
        return tuple(out) if isinstance(out, tuple | list) else (out,)


def exported_format(path: str | os.PathLike) -> str | None:
    """``"onnx"`` or ``"torchscript"`` for an exported network file (by its suffix), else None."""
    if isinstance(path, ModelPackage):
        return None
    candidate = Path(path)
    return NETWORK_SUFFIXES.get(candidate.suffix.lower()) if candidate.is_file() else None


def _parse_description(text: str, source: Path) -> tuple[dict, dict]:
    try:
        blob = json.loads(text)
        meta, extras = blob["model"], blob.get("extras", {})
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidModelError(f"{source} has a damaged cytolens description ({exc}); export the model again") from None
    if not isinstance(meta, dict) or "architecture" not in meta:
        raise InvalidModelError(f"{source} has a damaged cytolens description (no architecture); export it again")
    ModelMeta.from_json(meta, f"the cytolens description in {source}")
    return meta, extras


def _onnx_channels(session) -> int | None:
    shape = session.get_inputs()[0].shape
    return shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None


def load_exported(path: str | os.PathLike) -> ModelPackage:
    """A :class:`ModelPackage` running an ONNX (``.onnx``) or TorchScript (``.pt``) file that cytolens exported.

    Raises :class:`~cytolens.errors.InvalidModelError` (one line) for a file that is not
    readable, was not exported by cytolens (no description inside), or whose network takes
    another channel count than its description says.
    """
    source = Path(path)
    fmt = exported_format(source)
    if fmt == "onnx":
        import onnxruntime

        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # the threads torch would use, as set for torch
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own exception types
            raise InvalidModelError(f"{source} is not a readable ONNX model ({' '.join(str(exc).split())[:200]})") \
                from None
        text = session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if text is None:
            raise InvalidModelError(f"{source} holds no cytolens description (ONNX metadata {META_KEY!r}): "
                                    "cytolens runs ONNX models it exported (`cytolens models export`)")
        meta, extras = _parse_description(text, source)
        expected, found = int(meta["architecture"]["args"]["in_channels"]), _onnx_channels(session)
        if found is not None and found != expected:
            raise InvalidModelError(f"{source}: its network takes {found} input channel(s) but its cytolens "
                                    f"description says {expected}; the file was changed after export: export it again")
        network: ExportedNetwork = OnnxNetwork(meta, source, session)
    elif fmt == "torchscript":
        files = {META_FILE: ""}
        try:
            module = torch.jit.load(str(source), map_location="cpu", _extra_files=files)
        except Exception as exc:  # torch raises RuntimeError or its own types for damaged archives
            raise InvalidModelError(f"{source} is not a readable TorchScript model "
                                    f"({' '.join(str(exc).split())[:200]})") from None
        if not files[META_FILE]:
            raise InvalidModelError(f"{source} holds no cytolens description (extra file {META_FILE}): cytolens "
                                    "runs TorchScript models it exported (`cytolens models export`)")
        meta, extras = _parse_description(files[META_FILE], source)
        network = TorchScriptNetwork(meta, source, module.eval())
    else:
        raise InvalidModelError(f"{source} is not an exported network (.onnx or .pt)")
    return ModelPackage(meta=meta, network=network.eval(), path=None, extras=extras)


# --- bioimage.io packages back to cytolens packages --------------------------------------------------------------


def import_bioimageio(source: str | os.PathLike, output: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """A bioimage.io package (``.zip`` or folder) of a cytolens model back to a cytolens package folder ``output``.

    The weights are the package's ``pytorch_state_dict``, so the imported package gives
    the same labels as the one exported. Raises :class:`~cytolens.errors.InvalidModelError`
    for a package that was not exported by cytolens or lacks its weights.
    """
    from cytolens.models.package import save

    source, output = Path(source), Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    with tempfile.TemporaryDirectory(prefix="cytolens-import-") as tmp:
        folder = _unpacked(source, Path(tmp))
        meta, extras, state = _read_bioimageio(folder, source)
        extra_files = {}
        for name, content in extras.items():
            extra_files[f"{name}.json"] = Path(tmp) / f"extra-{name}.json"
            extra_files[f"{name}.json"].write_text(json.dumps(content) + "\n")
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        save(output, {k: v for k, v in meta.items() if k != "format_version"}, state, extra_files)
    return output


def _unpacked(source: Path, tmp: Path) -> Path:
    if source.is_dir():
        return source
    if not source.is_file():
        raise InvalidModelError(f"{source} does not exist: give a bioimage.io package (.zip) or its folder")
    try:
        with zipfile.ZipFile(source) as archive:
            archive.extractall(tmp)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidModelError(f"{source} is not a readable zip archive ({exc})") from None
    return tmp


def _read_bioimageio(folder: Path, source: Path) -> tuple[dict, dict, dict]:
    import yaml

    rdf_path = folder / "rdf.yaml"
    if not rdf_path.is_file():
        rdf_path = next(iter(folder.glob("*.bioimageio.yaml")), rdf_path)
    if not rdf_path.is_file():
        raise InvalidModelError(f"{source} holds no rdf.yaml: not a bioimage.io model package")
    rdf = yaml.safe_load(rdf_path.read_text()) or {}
    named = ((rdf.get("config") or {}).get(META_KEY) or {}).get("description")
    if not named or not (folder / named).is_file():
        raise InvalidModelError(f"{source} is not a bioimage.io package of a cytolens model (no config.{META_KEY} "
                                f"description file); only packages written by `cytolens models export` import")
    meta, extras = _parse_description((folder / named).read_text(), source)
    weights = ((rdf.get("weights") or {}).get("pytorch_state_dict") or {}).get("source")
    if not weights or not (folder / weights).is_file():
        raise InvalidModelError(f"{source} lacks its pytorch_state_dict weights ({weights or 'none named'}): "
                                "the package is incomplete; export the model again")
    try:
        state = torch.load(folder / weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged pickle/zip: torch raises several types
        raise InvalidModelError(f"{source}: its weights {weights} cannot be read ({exc})") from None
    prefix = "network."
    return meta, extras, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def imported_folder(archive: Path, target: Path) -> Path:
    """The cytolens package inside ``target`` (a bioimage.io zip extracted by ``models.resolve``), imported once."""
    folder = target / ".cytolens-imported"
    if not (folder / "model.json").is_file():
        staging = Path(tempfile.mkdtemp(prefix=".cytolens-importing-", dir=target))
        try:
            import_bioimageio(target, staging / "package", overwrite=True)
            os.replace(staging / "package", folder)
        except OSError:  # another process imported it first
            pass
        except InvalidModelError as exc:  # name the user's archive, not its extraction folder
            raise InvalidModelError(str(exc).replace(str(target), str(archive))) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
