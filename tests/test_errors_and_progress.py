"""Progress through callbacks (training loop, ``cytolens segment``), the loaded-model cache, and the
error a diverging training ends in."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from skimage.draw import disk
from typer.testing import CliRunner

import cytolens
from cytolens import api, models
from cytolens.cli import segment_cmds, train_cmds
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import CytolensError, TrainingDivergedError
from cytolens.io import write_image, write_labels
from cytolens.models.package import BUNDLED_DIR
from cytolens.progress import ProgressEvent
from cytolens.train.loop import LoopConfig, fit


def tiny_fit(tmp_path, progress, *, loss_fn=torch.nn.functional.mse_loss, learning_rate=0.05, epochs=2, steps=3):
    """Fit a 1-to-1 linear model to y = 3x with ``fit``; the history."""
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 16)[:, None]
    config = LoopConfig(epochs=epochs, optimizer="sgd", learning_rate=learning_rate, warmup_epochs=0, patience=0,
                        schedule="constant", device="cpu")
    return fit(torch.nn.Linear(1, 1), loss_fn, lambda epoch: [(x, 3 * x)] * steps,
               lambda net: {"val_loss": 1.0}, config, tmp_path, progress=progress)


# --- progress -----------------------------------------------------------------------------------------------------

def test_fit_reports_each_step_and_each_epoch_to_a_callback_and_prints_nothing(tmp_path, capsys):
    events: list[ProgressEvent] = []
    history = tiny_fit(tmp_path, events.append)
    steps = [(e.stage, e.done, e.total) for e in events if e.stage != "epochs"]
    assert steps == [(f"epoch {epoch}/2", step, 3) for epoch in (1, 2) for step in (1, 2, 3)]
    epochs = [e for e in events if e.stage == "epochs"]
    assert [(e.done, e.total) for e in epochs] == [(1, 2), (2, 2)]
    assert epochs[-1].message.startswith("epoch 2: lr=0.05, train_loss=") and "val_loss=1" in epochs[-1].message
    assert len(history) == 2 and capsys.readouterr().out == ""


@pytest.mark.parametrize("progress", [False, None])
def test_fit_without_progress_is_silent(tmp_path, capsys, progress):
    tiny_fit(tmp_path, progress, epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_fit_with_progress_true_prints_each_epoch(tmp_path, capsys):
    tiny_fit(tmp_path, True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]


def test_segment_command_reports_progress_per_file(tmp_path, monkeypatch):
    for seed in (1, 2):
        image, _ = synthetic_nuclei(shape=(96, 96), n_nuclei=4, seed=seed)
        write_image(tmp_path / f"img{seed}.tif", image)
    events: list[ProgressEvent] = []
    monkeypatch.setattr(segment_cmds, "progress_listener", lambda quiet: None if quiet else events.append)
    app = typer.Typer()
    segment_cmds.register(app)
    arguments = ["segment", str(tmp_path / "img1.tif"), str(tmp_path / "img2.tif"), "-o", str(tmp_path / "out"),
                 "--model", "nuclei_fast", "--diameter", "20"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert [(e.stage, e.done, e.total, e.message) for e in events] == [
        ("segmenting", 1, 2, "img1.tif"), ("segmenting", 2, 2, "img2.tif")]
    assert "objects in 2 image(s)" in result.output
    events.clear()
    assert CliRunner().invoke(app, [*arguments, "--overwrite", "--quiet"]).exit_code == 0
    assert events == []


# --- the loaded-model cache ---------------------------------------------------------------------------------------

@pytest.fixture
def count_loads(monkeypatch):
    """Empty the model cache and count the packages loaded from disk: a list of the folders loaded."""
    api.clear_model_cache()
    loaded: list[Path] = []
    real_load = models.load

    def counting_load(name_or_path):
        loaded.append(Path(name_or_path))
        return real_load(name_or_path)

    monkeypatch.setattr(models, "load", counting_load)
    yield loaded
    api.clear_model_cache()


def test_a_model_is_loaded_once_for_many_calls_and_again_when_its_files_change(tmp_path, count_loads):
    folder = shutil.copytree(BUNDLED_DIR / "nuclei_fast", tmp_path / "package")
    image, _ = synthetic_nuclei(shape=(96, 96), n_nuclei=4, seed=3)
    first = cytolens.segment(image, folder, diameter=20)
    assert np.array_equal(cytolens.segment(image, str(folder), diameter=20), first)
    assert len(count_loads) == 1
    (folder / "model.json").write_text((folder / "model.json").read_text() + "\n")  # e.g. retrained in place
    cytolens.segment(image, folder, diameter=20)
    assert len(count_loads) == 2
    api.clear_model_cache()
    cytolens.segment(image, folder, diameter=20)
    assert len(count_loads) == 3


def test_the_model_cache_is_bounded_and_thread_safe(count_loads, monkeypatch):
    monkeypatch.setattr(api, "MODEL_CACHE_SIZE", 1)
    assert api._load("nuclei_fast") is api._load("nuclei_fast")
    api._load("nuclei")  # pushes nuclei_fast out
    api._load("nuclei_fast")
    assert [path.name for path in count_loads] == ["nuclei_fast", "nuclei", "nuclei_fast"]
    api.clear_model_cache()
    count_loads.clear()
    packages = []
    threads = [threading.Thread(target=lambda: packages.append(api._load("nuclei_fast"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(count_loads) == 1 and len(packages) == 4 and all(p is packages[0] for p in packages)


def test_segment_settings_are_keyword_only():
    image, _ = synthetic_nuclei(shape=(64, 64), n_nuclei=2, seed=0)
    with pytest.raises(TypeError, match="positional"):
        cytolens.segment(image, "nuclei_fast", 20)


# --- a diverging training -----------------------------------------------------------------------------------------

def test_an_infinite_loss_raises_training_diverged_naming_epoch_and_step(tmp_path):
    calls = iter(range(100))

    def loss_that_explodes_at_the_second_step(outputs, targets):
        loss = torch.nn.functional.mse_loss(outputs, targets)
        return loss * float("inf") if next(calls) == 1 else loss

    with pytest.raises(TrainingDivergedError, match=r"at epoch 1, step 2 .*lower the learning rate") as caught:
        tiny_fit(tmp_path, False, loss_fn=loss_that_explodes_at_the_second_step)
    assert isinstance(caught.value, CytolensError) and isinstance(caught.value, FloatingPointError)


def test_a_huge_learning_rate_diverges(tmp_path):
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        tiny_fit(tmp_path, False, learning_rate=1e25, epochs=3)


def test_cli_train_prints_a_diverging_training_on_one_line(tmp_path, monkeypatch):
    from cytolens.tasks.segmentation import training

    rng = np.random.default_rng(0)
    for k in range(6):
        labels = np.zeros((48, 48), np.uint16)
        for label, centre in enumerate(((12, 12), (30, 34), (36, 10)), start=1):
            labels[disk(centre, 5, shape=labels.shape)] = label
        write_image(tmp_path / "data" / "images" / f"img{k}.tif",
                    (100 + 800 * (labels > 0) + rng.normal(0, 40, labels.shape)).astype(np.float32))
        write_labels(tmp_path / "data" / "labels" / f"img{k}.tif", labels)
    config = {"name": "tiny", "data": {"images": "data/images", "labels": "data/labels", "val_fraction": 0.2,
                                       "test_fraction": 0.1},
              "architecture": {"depth": 1, "base_channels": 4},
              "optimization": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "crop_size": 32, "patience": 0},
              "target_diameter": 10, "output": "models/tiny"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    real_make_loss = training.make_loss

    def make_infinite_loss(*args, **kwargs):
        loss_fn = real_make_loss(*args, **kwargs)
        return lambda outputs, targets: loss_fn(outputs, targets) * float("inf")

    monkeypatch.setattr(training, "make_loss", make_infinite_loss)
    app = typer.Typer()
    train_cmds.register(app)
    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "config.yaml"), "--quiet"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training loss became"), result.stderr
    assert "epoch 1, step 1" in lines[0] and "lower the learning rate" in lines[0]
