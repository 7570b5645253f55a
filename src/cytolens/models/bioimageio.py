"""Write a model package as a bioimage.io model package (``rdf.yaml`` format 0.5), for Fiji, ilastik, QuPath, the Zoo.

The zip holds ``rdf.yaml``; the network as TorchScript (``model.pt``), ONNX (``model.onnx``)
and a PyTorch state dict (``weights.pt``, whose architecture is
:class:`cytolens.models.export.ExportNetwork`); a test input and the PyTorch network's
outputs for it (``.npy``); a cover; a ``README.md`` that says what the outputs are and how
cytolens turns them into labels (the post-processing is not inside the network); and
``cytolens.json`` (``model.json`` and its extras) that ``cytolens models import`` and
``cytolens.segment(image, model="package.zip")`` read.

The input's normalization is in ``rdf.yaml`` as a preprocessing step that consumers
apply: percentiles of the whole image over all channels together (``scale_range``) for
segmentation and restoration models (each channel on its own for a segmentation model that declares
its channels, ``input.file_channels``), fixed per-channel training-set percentiles
(``scale_linear``) for classifiers.
"""

from __future__ import annotations

import gc
import json
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from cytolens.models.export import (
    META_FILE,
    META_KEY,
    OPSET,
    description,
    export_network,
    write_onnx,
    write_torchscript,
)
from cytolens.models.package import ModelPackage
from cytolens.preprocess import PercentileNormalizer
from cytolens.tasks.segmentation.channels import declared_channels

#: side of the test image of a U-Net package (rounded to the network's divisor)
TEST_SIDE = 256
#: the bioimage.io format written
FORMAT_VERSION = "0.5"


def test_input(meta: dict) -> np.ndarray:
    """A raw ``(1, C, Y, X)`` float32 test image for the model: synthetic nuclei (fixed seed) in every channel.

    Classifiers get their input size and each channel spread over its training
    percentiles; other models a ``TEST_SIDE`` square (restoration: each plane blurred a little more).
    """
    from scipy import ndimage

    from cytolens.data.synthetic import synthetic_nuclei
    from cytolens.models.export import example_shape

    _, channels, height, width = example_shape(meta, TEST_SIDE)
    image, _ = synthetic_nuclei(shape=(height, width), n_nuclei=max(3, height * width // 1500), seed=0)
    image = image.astype(np.float32)
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
    planes = []
    for c in range(channels):
        plane = ndimage.gaussian_filter(image, 0.5 * c) if meta.get("task") == "restoration" else image
        if meta.get("task") == "classification":
            norm = meta["normalization"]
            low, high = norm["channel_low"][c % len(norm["channel_low"])], norm["channel_high"][c % len(norm["channel_high"])]
            plane = low + plane * (high - low)
        planes.append(plane)
    return np.stack(planes)[None].astype(np.float32)


def normalized(meta: dict, raw: np.ndarray) -> np.ndarray:
    """``raw`` ``(1, C, Y, X)`` as cytolens normalizes it for the network (the rdf's preprocessing does the same)."""
    norm = meta.get("normalization") or {}
    if meta.get("task") == "classification":
        low = np.asarray(norm["channel_low"], np.float32)[None, :, None, None]
        high = np.asarray(norm["channel_high"], np.float32)[None, :, None, None]
        return ((raw - low) / (high - low)).astype(np.float32)
    normalizer = PercentileNormalizer.from_meta(norm or None)
    lo, hi = normalizer.statistics(np.moveaxis(raw[0], 0, -1))
    return normalizer.apply(raw, lo, hi)


def _identifier(text: str) -> str:
    """``text`` as a bioimage.io identifier (letters, digits, underscores)."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", str(text)).strip("_") or "x"
    return cleaned if cleaned[0].isalpha() else f"c{cleaned}"


def _channel_names(meta: dict) -> tuple[list[str], list[str]]:
    args = meta["architecture"]["args"]
    inputs = [f"c{i}" for i in range(int(args["in_channels"]))]
    if int(args["in_channels"]) == 3 and meta.get("task") == "segmentation":
        inputs = ["red", "green", "blue"]
    if meta.get("task") == "classification" and meta.get("classes"):
        outputs = [_identifier(name) for name in meta["classes"]]
    elif meta.get("task") == "segmentation":
        from cytolens.tasks.segmentation import SCHEMAS

        names = getattr(SCHEMAS[meta["schema"]], "OUTPUT_NAMES", None)
        outputs = [_identifier(n) for n in names] if names else [f"output{i}" for i in range(int(args["out_channels"]))]
    else:
        outputs = [f"output{i}" for i in range(int(args["out_channels"]))]
    if len(set(outputs)) != len(outputs) or len(outputs) != int(args["out_channels"]):
        outputs = [f"output{i}" for i in range(int(args["out_channels"]))]
    return inputs, outputs


def _preprocessing(meta: dict, v0_5) -> list:
    norm = meta.get("normalization") or {}
    if meta.get("task") == "classification":
        if meta.get("input", {}).get("mask_channel"):
            return []  # the mask channel is not normalized: documented in the README instead
        low, high = np.asarray(norm["channel_low"], float), np.asarray(norm["channel_high"], float)
        gain, offset = 1.0 / (high - low), -low / (high - low)
        return [v0_5.ScaleLinearDescr(kwargs=v0_5.ScaleLinearAlongAxisKwargs(
            axis=v0_5.AxisId("channel"), gain=gain.tolist(), offset=offset.tolist()))]
    normalizer = PercentileNormalizer.from_meta(norm or None)
    # a segmentation model that declares its channels (cytoplasm + nucleus) normalizes each on its own
    per_channel = declared_channels(meta) is not None
    return [v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
        axes=[v0_5.AxisId(a) for a in (("y", "x") if per_channel else ("channel", "y", "x"))],
        min_percentile=normalizer.low, max_percentile=normalizer.high))]


def _postprocessing_text(meta: dict) -> str:
    """The README's account of how the outputs become the result."""
    task = meta.get("task")
    if task == "segmentation":
        from cytolens.tasks.segmentation import SCHEMAS

        schema = SCHEMAS[meta["schema"]]
        doc = (schema.__doc__ or "").split("\nExample")[0].strip()
        settings = "\n".join(f"- `{k}`: {v}" for k, v in (meta.get("postprocess") or {}).items())
        return (f"The network's outputs are not labels. cytolens turns them into a label image with the "
                f"`{meta['schema']}` post-processing (`cytolens.tasks.segmentation.{meta['schema']}.postprocess`):\n\n"
                f"{doc}\n\nIts settings in this model (sizes in model pixels, i.e. at the model's scale):\n\n"
                f"{settings}\n\nScale: the network works on objects of about "
                f"{meta['scale']['target_diameter']} px diameter; cytolens resizes the image by "
                "`target_diameter / diameter` first (the diameter estimated from the `style` output with the size "
                "model in `cytolens.json` when it is not given), tiles it with overlapping, blended tiles, resizes "
                "the outputs back and post-processes them at the image's own resolution."
                + (" An object filter (gradient-boosted trees in `cytolens.json`) then drops spurious objects."
                   if "object_filter" in (meta.get("_extras") or ()) else ""))
    if task == "classification":
        return ("The output is one logit per class (softmax → class probabilities), in the order of the output's "
                f"channel names. Inputs are resized to {meta['input'].get('size')} px square first.")
    return ("The outputs are the restored image's channels in normalized units"
            + (" (multiply by the input's percentile range and add its low percentile to get the input's units)."
               if (meta.get("restoration") or {}).get("target_normalization") == "source" else "."))


def _readme(meta: dict, extras: dict) -> str:
    args = meta["architecture"]
    scores = (meta.get("validation") or {}).get("overall") or {}
    lines = [f"# {meta['name']} (cytolens {meta.get('task')} model, version {meta.get('version', '?')})", "",
             (f"Exported from the cytolens model package `{meta['name']}`. Network: `{args['name']}` with "
              f"{json.dumps(args.get('args', {}))}."), "",
             "## Input", "",
             (f"`input`: `(batch, channel, y, x)` float32, {args['args']['in_channels']} channel(s) "
              f"({meta.get('input', {}).get('conversion', '')}). Normalization (in `rdf.yaml` as preprocessing): "
              f"{json.dumps(meta.get('normalization'))}.")]
    if args["name"] == "unet":
        lines.append(f"Spatial sides must be multiples of {2 ** int(args['args']['depth'])}.")
    lines += ["", "## Outputs and post-processing", "", _postprocessing_text({**meta, "_extras": extras})]
    if meta.get("task") == "segmentation" and args["name"] == "unet":
        lines += ["", ("`style`: the bottleneck features averaged over space, which the size model "
                       "(`size_model` in `cytolens.json`) turns into a first diameter estimate.")]
    lines += ["", "## Use it with cytolens", "", "```python", "import cytolens",
              'labels = cytolens.segment(image, model="this_package.zip")' if meta.get("task") == "segmentation"
              else "# cytolens models import this_package.zip -o my_model", "```", "",
              "`cytolens models import this_package.zip -o FOLDER` gives the cytolens model package back.", ""]
    if scores:
        lines += ["## Validation scores (from model.json)", "", json.dumps(scores, indent=1), ""]
    lines += ["## License", "", str(meta.get("license", "")), ""]
    return "\n".join(lines)


def _cover(path: Path, raw: np.ndarray, outputs: np.ndarray, task: str) -> None:
    """A 2:1 picture: the input's first channel, and the first output channel (sigmoid for segmentation)."""
    import imageio.v3 as iio

    def gray(plane: np.ndarray) -> np.ndarray:
        plane = plane.astype(np.float32)
        lo, hi = np.percentile(plane, [1, 99.8])
        return (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)

    left = gray(raw[0, 0])
    if outputs.ndim == 4:
        right = outputs[0, 0]
        right = gray(1 / (1 + np.exp(-right)) if task == "segmentation" else right)
    else:  # a classifier: the input again
        right = left
    iio.imwrite(path, np.concatenate([left, right], axis=1))


def write_bioimageio(package: ModelPackage, path: Path) -> None:
    """Write ``package`` as a bioimage.io model package zip at ``path`` (validated by bioimageio.spec)."""
    with warnings.catch_warnings():
        # bioimageio.spec leaves the files it hashes open: collect them here, where their ResourceWarnings are ignored
        warnings.simplefilter("ignore", ResourceWarning)
        _write_bioimageio(package, path)
        gc.collect()


def _write_bioimageio(package: ModelPackage, path: Path) -> None:
    from bioimageio.spec import ValidationContext, save_bioimageio_package
    from bioimageio.spec.model import v0_5

    meta, extras = package.meta, package.extras
    with tempfile.TemporaryDirectory(prefix="cytolens-bioimageio-") as tmp:
        folder = Path(tmp)
        fused, plain = export_network(package), export_network(package, fused=False)
        write_torchscript(package, folder / "model.pt", fused)
        write_onnx(package, folder / "model.onnx", fused)
        torch.save(plain.state_dict(), folder / "weights.pt")
        (folder / META_FILE).write_text(json.dumps(description(package)))
        (folder / "README.md").write_text(_readme(meta, extras))
        raw = test_input(meta)
        with torch.no_grad():
            out = plain(torch.from_numpy(normalized(meta, raw)))
        outs = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
        np.save(folder / "test_input.npy", raw)
        names = ["output", "style"][: len(outs)]
        for name, array in zip(names, outs):
            np.save(folder / f"test_{name}.npy", array)
        _cover(folder / "cover.png", raw, outs[0], meta.get("task"))

        in_names, out_names = _channel_names(meta)
        args = meta["architecture"]["args"]
        if meta.get("task") == "classification":
            side = int(meta["input"]["size"])
            in_space = [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=side) for a in "yx"]
            out_axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier(n) for n in out_names])]
        else:
            step = 2 ** int(args["depth"])
            in_space = [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(min=step, step=step))
                        for a in "yx"]
            out_axes = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier(n) for n in out_names]),
                        *[v0_5.SpaceOutputAxis(id=v0_5.AxisId(a), size=v0_5.SizeReference(
                            tensor_id=v0_5.TensorId("input"), axis_id=v0_5.AxisId(a))) for a in "yx"]]
        inputs = [v0_5.InputTensorDescr(
            id=v0_5.TensorId("input"), description="raw image; normalized by the preprocessing",
            axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier(n) for n in in_names]), *in_space],
            test_tensor=v0_5.FileDescr(source=folder / "test_input.npy"), preprocessing=_preprocessing(meta, v0_5))]
        outputs = [v0_5.OutputTensorDescr(id=v0_5.TensorId("output"), description="raw network outputs (logits)",
                                          axes=out_axes, test_tensor=v0_5.FileDescr(source=folder / "test_output.npy"))]
        if len(outs) > 1:
            outputs.append(v0_5.OutputTensorDescr(
                id=v0_5.TensorId("style"), description="bottleneck features averaged over space (size model input)",
                axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(
                    channel_names=[v0_5.Identifier(f"s{i}") for i in range(outs[1].shape[1])])],
                test_tensor=v0_5.FileDescr(source=folder / "test_style.npy")))
        torch_version = v0_5.Version(torch.__version__.split("+")[0])
        weights = v0_5.WeightsDescr(
            pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
                source=folder / "weights.pt", pytorch_version=torch_version,
                architecture=v0_5.ArchitectureFromLibraryDescr(
                    callable=v0_5.Identifier("ExportNetwork"), import_from="cytolens.models.export",
                    kwargs={"architecture": meta["architecture"], "style": len(outs) > 1})),
            torchscript=v0_5.TorchscriptWeightsDescr(source=folder / "model.pt", pytorch_version=torch_version,
                                                     parent="pytorch_state_dict"),
            onnx=v0_5.OnnxWeightsDescr(source=folder / "model.onnx", opset_version=OPSET, parent="pytorch_state_dict"))
        summary = {k: meta[k] for k in ("task", "schema", "postprocess", "scale", "normalization") if k in meta}
        with ValidationContext(root=folder, perform_io_checks=True):
            descr = v0_5.ModelDescr(
                name=f"cytolens {meta['name']}",
                description=f"cytolens {meta.get('task')} model {meta['name']} "
                            f"({meta.get('schema') or meta['architecture']['name']}), exported by cytolens",
                authors=[v0_5.Author(name="cytolens contributors")],
                cite=[v0_5.CiteEntry(text="Caicedo et al. 2019, Nucleus segmentation across imaging experiments: the "
                                          "2018 Data Science Bowl (the bundled segmentation models' training data)",
                                     doi=v0_5.Doi("10.1038/s41592-019-0612-7"))],
                license=v0_5.LicenseId("MIT"),  # cytolens and its weights are MIT licensed
                documentation=v0_5.FileDescr(source=folder / "README.md"),
                covers=[v0_5.FileDescr(source=folder / "cover.png")],
                attachments=[v0_5.FileDescr(source=folder / META_FILE)],
                tags=["cytolens", str(meta.get("task")), *([meta["schema"]] if meta.get("schema") else []), "2d"],
                inputs=inputs, outputs=outputs, weights=weights,
                version=v0_5.Version(str(meta.get("version", "1"))) if _is_version(meta.get("version")) else None,
                config=v0_5.Config(**{META_KEY: {"description": META_FILE, **summary}}),
            )
        save_bioimageio_package(descr, output_path=path)


def _is_version(text) -> bool:
    return text is not None and re.fullmatch(r"\d+(\.\d+)*", str(text)) is not None
