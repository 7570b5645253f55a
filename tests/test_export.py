"""Export to ONNX, TorchScript and bioimage.io; exported models given to segment; import back; bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cytolens
from cytolens.cli import app
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import CytolensError, InvalidModelError, InvalidParameterError, OutputExistsError
from cytolens.models import bundled_models, load
from cytolens.models.export import export_model, export_network, import_bioimageio, load_exported

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install 'cytolens[export]')")
runner = CliRunner()
#: exported networks must give the PyTorch network's outputs to this (absolute, on logits)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A synthetic fluorescence image of touching nuclei (uint8, 192 x 160)."""
    raw, _ = synthetic_nuclei(shape=(192, 160), n_nuclei=14, seed=3)
    return raw


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """nuclei_fast exported in every format."""
    folder = tmp_path_factory.mktemp("exports")
    return {fmt: export_model("nuclei_fast", fmt, folder / f"nuclei_fast.{suffix}")
            for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt"), ("bioimageio", "zip"))}


def _network_input(meta: dict, image: np.ndarray) -> torch.Tensor:
    """The synthetic image as the network's normalized (1, C, Y, X) input, cropped to the network's divisor."""
    from cytolens.models.bioimageio import normalized

    channels = meta["architecture"]["args"]["in_channels"]
    if meta["task"] == "classification":
        side = meta["input"]["size"]
        raw = np.stack([image[:side, :side].astype(np.float32)] * channels)[None]
        norm = meta["normalization"]
        raw = norm["channel_low"][0] + raw / 255 * (norm["channel_high"][0] - norm["channel_low"][0])
    else:
        divisor = 2 ** meta["architecture"]["args"]["depth"]
        height, width = image.shape[0] // divisor * divisor, image.shape[1] // divisor * divisor
        raw = np.stack([image[:height, :width].astype(np.float32)] * channels)[None]
    return torch.from_numpy(normalized(meta, raw.astype(np.float32)))


@pytest.mark.parametrize("name", bundled_models())
def test_every_bundled_model_exports_to_onnx_and_torchscript_with_the_same_outputs(name, image, tmp_path):
    package = load(name)
    x = _network_input(package.meta, image)
    with torch.no_grad():
        expected = export_network(package, fused=False)(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt")):
        exported = load_exported(export_model(name, fmt, tmp_path / f"{name}.{suffix}"))
        assert exported.meta == package.meta and exported.extras == package.extras
        outputs = exported.network.run(x)
        assert len(outputs) == len(expected)
        for out, ref in zip(outputs, expected):
            assert out.shape == ref.shape
            assert float((out - ref).abs().max()) <= TOLERANCE, (name, fmt)


def test_onnx_has_dynamic_spatial_axes(exports, image):
    """One file takes any multiple of 16 and the batch axis (the outputs follow the input's size)."""
    network = load_exported(exports["onnx"]).network
    for shape in ((1, 3, 32, 48), (2, 3, 80, 16)):
        assert tuple(network.run(torch.zeros(shape))[0].shape) == (shape[0], 3, *shape[2:])


def test_segment_accepts_exported_models(exports, image):
    """Each format gives the package's labels (ONNX / TorchScript to float rounding: >= 99.9 % of pixels)."""
    expected = cytolens.segment(image, "nuclei_fast")
    assert expected.max() > 5
    for fmt, path in exports.items():
        labels = cytolens.segment(image, path)
        if fmt == "bioimageio":  # the package's own PyTorch weights: identical
            np.testing.assert_array_equal(labels, expected)
        else:
            assert np.mean((labels > 0) == (expected > 0)) >= 0.999, fmt
            assert abs(int(labels.max()) - int(expected.max())) <= 1, fmt


def test_bioimageio_package_contents_and_round_trip(exports, image, tmp_path):
    with zipfile.ZipFile(exports["bioimageio"]) as archive:
        names = set(archive.namelist())
        readme = archive.read("README.md").decode()
    assert {"rdf.yaml", "model.onnx", "model.pt", "weights.pt", "test_input.npy", "test_output.npy",
            "cover.png", "README.md", "cytolens.json"} <= names
    assert "contact_watershed" in readme and "post-processing" in readme  # how outputs become labels
    imported = import_bioimageio(exports["bioimageio"], tmp_path / "imported")
    assert json.loads((imported / "model.json").read_text())["name"] == "nuclei_fast"
    np.testing.assert_array_equal(cytolens.segment(image, imported), cytolens.segment(image, "nuclei_fast"))


#: bioimageio.spec's validation and bioimageio.core's test, run in a child process (bioimageio leaves the package's
#: zip open, which this suite's warnings-as-errors would blame on a later test)
BIOIMAGEIO_CHECK = """
import sys
from bioimageio.core import test_model
from bioimageio.spec import load_description
print("spec", load_description(sys.argv[1]).validation_summary.status)
summary = test_model(sys.argv[1])
print("core", summary.status)
for detail in summary.details:
    if detail.status == "failed":
        print(detail.name, [error.msg for error in detail.errors])
"""


def _bioimageio_check(path) -> str:
    source = str(Path(cytolens.__file__).parents[1])  # the cytolens tested: rdf.yaml's architecture imports it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", BIOIMAGEIO_CHECK, str(path)], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    return done.stdout + done.stderr[-2000:]


def test_bioimageio_spec_validates_and_core_test_passes(exports):
    report = _bioimageio_check(exports["bioimageio"])
    assert "spec valid-format" in report or "spec passed" in report, report
    assert "core passed" in report, report


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in bundled_models() if n != "nuclei_fast"])
def test_every_bundled_model_passes_the_bioimageio_core_test(name, tmp_path):
    report = _bioimageio_check(export_model(name, "bioimageio", tmp_path / f"{name}.zip"))
    assert "core passed" in report, report


def test_bad_inputs_are_one_line_errors(exports, tmp_path, image):
    import onnx

    with pytest.raises(InvalidParameterError, match="unknown export format 'tflite'"):
        export_model("nuclei_fast", "tflite", tmp_path / "x.tflite")
    with pytest.raises(OutputExistsError, match="exists"):
        export_model("nuclei_fast", "onnx", exports["onnx"])
    # a bioimage.io package without its weights
    broken = tmp_path / "no_weights.zip"
    with zipfile.ZipFile(exports["bioimageio"]) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.namelist():
            if item != "weights.pt":
                target.writestr(item, source.read(item))
    with pytest.raises(InvalidModelError, match="lacks its pytorch_state_dict weights"):
        import_bioimageio(broken, tmp_path / "imported")
    with pytest.raises(InvalidModelError, match="lacks its pytorch_state_dict weights"):
        cytolens.segment(image, broken)
    # an ONNX model whose network takes another channel count than its description says
    graph = onnx.load(str(exports["onnx"]))
    entry = next(p for p in graph.metadata_props if p.key == "cytolens")
    blob = json.loads(entry.value)
    blob["model"]["architecture"]["args"]["in_channels"] = 1
    entry.value = json.dumps(blob)
    wrong = tmp_path / "wrong_channels.onnx"
    onnx.save(graph, str(wrong))
    with pytest.raises(InvalidModelError, match="takes 3 input channel"):
        cytolens.segment(image, wrong)
    # an ONNX model cytolens did not export
    del graph.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(graph, str(foreign))
    with pytest.raises(InvalidModelError, match="no cytolens description"):
        load_exported(foreign)
    for error in (InvalidModelError, InvalidParameterError, OutputExistsError):
        assert issubclass(error, CytolensError)


def test_cli_export_import_and_one_line_errors(exports, tmp_path):
    result = runner.invoke(app, ["models", "export", "nuclei_fast", "--format", "torchscript", "-o",
                                 str(tmp_path / "n.pt")])
    assert result.exit_code == 0 and (tmp_path / "n.pt").is_file(), result.output
    result = runner.invoke(app, ["models", "export", "nuclei_fast", "--format", "torchscript", "-o",
                                 str(tmp_path / "n.pt")])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0 and "--overwrite" in result.output
    result = runner.invoke(app, ["models", "export", "nuclei_fast", "--format", "caffe", "-o", str(tmp_path / "n")])
    assert result.exit_code == 1 and result.output.strip().startswith("error: unknown export format")
    result = runner.invoke(app, ["models", "import", str(exports["bioimageio"]), "-o", str(tmp_path / "back")])
    assert result.exit_code == 0 and (tmp_path / "back" / "weights.safetensors").is_file(), result.output


def test_models_info_describes_exported_files(exports, tmp_path):
    """`models info` reads the description inside an exported file; a damaged one is a one-line error."""
    for fmt in ("onnx", "torchscript", "bioimageio"):
        result = runner.invoke(app, ["models", "info", str(exports[fmt])])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("nuclei_fast ") and "size_model" in result.output
        if fmt != "bioimageio":
            assert f"exported as {fmt}" in result.output
    result = runner.invoke(app, ["models", "info", str(exports["onnx"]), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["name"] == "nuclei_fast"
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"not a protobuf")
    result = runner.invoke(app, ["models", "info", str(damaged)])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "not a readable ONNX model" in result.output


@pytest.mark.shared_data
def test_exported_networks_equal_pytorch_on_a_dsb2018_image(shared_data, exports):
    from cytolens.io import read_image
    from cytolens.tasks.segmentation.inference import as_yxc, tile_preparer

    folder = shared_data / "dsb2018_stage1_train" / "images"
    path = min(folder.glob("*.tif"))
    package = load("nuclei_fast")
    image_yxc = as_yxc(read_image(path))
    tile = tile_preparer(package, image_yxc)(image_yxc[:256, :256])
    x = torch.from_numpy(tile[None])
    with torch.no_grad():
        expected = package.network(x)
    for fmt in ("onnx", "torchscript"):
        out = load_exported(exports[fmt]).network(x)
        assert float((out - expected).abs().max()) <= TOLERANCE, fmt
