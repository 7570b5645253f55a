"""The research scripts of training/nuclei_cpu/ that made or judged candidate weights, run on tiny synthetic data.

train_keeping_epochs.py keeps every epoch's checkpoint, swa_average.py averages them (stochastic weight
averaging, batch-norm statistics re-estimated on train crops), average_weights.py averages two packages,
small_objects.py trains with the loss weighted up on small objects; hard_images.py marks the worst-segmented
train images for oversampling; colour_decoder.py trains named modules only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train_workflows import write_config, write_disks

import cytolens
from cytolens.models import load


@pytest.fixture(scope="module")
def run_script(training_script):
    """Run ``training/nuclei_cpu/<name>.py`` with command-line arguments, as ``python <script> ARGS`` would."""
    def run(name: str, *arguments) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", [name, *map(str, arguments)])
            training_script(f"nuclei_cpu/{name}.py").main()
    return run


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory, run_script) -> tuple[Path, Path]:
    """A tiny run trained by train_keeping_epochs.py (3 epochs); its config and its package."""
    root = tmp_path_factory.mktemp("kept")
    write_disks(root / "data", 6, seed=3)
    config = write_config(root, data={"test_fraction": 0.0, "val_fraction": 0.2},
                          optimization={"epochs": 3, "steps_per_epoch": 2, "warmup_epochs": 0, "patience": 0})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_script("train_keeping_epochs", config)
    finally:
        torch.set_num_threads(threads)
    return config, root / "models" / "tiny"


def epoch_weights(package: Path, epoch: int) -> dict[str, torch.Tensor]:
    return torch.load(Path(f"{package}.work") / f"epoch_{epoch}.pt", weights_only=False)["model"]


def test_every_epoch_is_kept_and_they_differ(kept_run):
    _, package = kept_run
    kept = sorted(p.name for p in Path(f"{package}.work").glob("epoch_*.pt"))
    assert kept == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt"]
    first, last = epoch_weights(package, 1), epoch_weights(package, 3)
    assert any(not torch.equal(first[k], last[k]) for k in first if first[k].is_floating_point())


def test_swa_average_is_the_mean_of_the_snapshots_with_fresh_batchnorm_statistics(kept_run, run_script, tmp_path):
    config, package = kept_run
    averaged = tmp_path / "averaged"
    shutil.copytree(package, averaged)
    snapshots = [Path(f"{package}.work") / f"epoch_{n}.pt" for n in (2, 3)]
    run_script("swa_average", config, averaged, *snapshots, "--batches", 2)

    states = [epoch_weights(package, n) for n in (2, 3)]
    written = load_file(str(averaged / "weights.safetensors"))
    conv = next(k for k in written if k.endswith("weight") and written[k].ndim == 4)
    expected = (states[0][conv].float() + states[1][conv].float()) / 2
    torch.testing.assert_close(written[conv].float(), expected, atol=1e-3, rtol=1e-3)  # stored in float16
    variance = next(k for k in written if k.endswith("running_var"))
    assert not torch.allclose(written[variance].float(), (states[0][variance] + states[1][variance]).float() / 2)
    assert torch.isfinite(written[variance]).all() and (written[variance] > 0).all()
    model = load(averaged)
    assert model.meta["training"]["weight_averaging"]["snapshots"] == [str(p) for p in snapshots]
    labels = cytolens.segment(np.pad(np.full((12, 12), 900.0), 18) + 100, model=model, diameter=10)
    assert labels.shape == (48, 48)


def test_swa_average_refuses_snapshots_of_different_architectures(kept_run, run_script, tmp_path):
    config, package = kept_run
    other = {"model": {"only.weight": torch.zeros(2)}}
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match="architecture"):
        run_script("swa_average", config, package, Path(f"{package}.work") / "epoch_1.pt", tmp_path / "other.pt")


def test_average_weights_writes_the_mean_of_two_packages(kept_run, run_script, tmp_path):
    _, package = kept_run
    soup = tmp_path / "soup"
    shutil.copytree(package, soup)
    other = tmp_path / "other"
    shutil.copytree(package, other)
    weights = load_file(str(package / "weights.safetensors"))
    shifted = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(shifted, str(other / "weights.safetensors"))
    run_script("average_weights", package, other, soup)
    mixed = load_file(str(soup / "weights.safetensors"))
    for key, value in weights.items():
        if value.is_floating_point():
            torch.testing.assert_close(mixed[key].float(), value.float() + 0.5, atol=2e-3, rtol=1e-3)
        else:
            assert torch.equal(mixed[key], value)


def test_small_object_weights_rise_on_small_objects_and_their_rim_only(training_script):
    script = training_script("nuclei_cpu/small_objects.py")
    labels = np.zeros((60, 60), int)
    for k, (y, x) in enumerate([(5, 5), (5, 25), (5, 45), (30, 5)], start=1):
        labels[y : y + 10, x : x + 10] = k  # four of median size
    labels[40:42, 40:42] = 5  # 4 px: 0.04 of the median area, full strength
    labels[50:56, 20:26] = 6  # 36 px: 0.36 of the median area, part strength
    weights = script.small_object_weights(labels, emphasis=8.0)
    assert weights[41, 41] == weights[43, 43] == 9.0  # on the object and 2 px around it
    assert 1.0 < weights[52, 22] < 9.0
    assert weights[10, 10] == weights[0, 59] == 1.0  # median-sized objects and far background
    assert (script.small_object_weights(np.zeros((8, 8), int), 8.0) == 1).all()


def test_small_object_loss_with_unit_weights_is_the_plain_loss_and_patches_are_undone(training_script):
    import cytolens.tasks.segmentation.contact_watershed as contact_watershed
    import cytolens.tasks.segmentation.training as training

    script = training_script("nuclei_cpu/small_objects.py")
    plain_targets, plain_make_loss = contact_watershed.targets, training.make_loss
    labels = np.zeros((32, 32), int); labels[4:14, 4:14] = 1; labels[4:14, 14:26] = 2; labels[20:22, 20:22] = 3
    with script.small_object_weighting(emphasis=8.0):
        targets = contact_watershed.targets(labels)
        loss = training.make_loss("contact_watershed")
    assert contact_watershed.targets is plain_targets and training.make_loss is plain_make_loss
    assert targets.shape == (4, 32, 32) and targets[3].max() == 9.0
    outputs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batch = torch.from_numpy(np.stack([targets, targets])).float()
    unit = batch.clone(); unit[:, 3] = 1
    plain = plain_make_loss("contact_watershed")(outputs, batch[:, :3])
    assert torch.isclose(loss(outputs, unit), plain)
    assert loss(outputs, batch) > plain  # the small object's pixels count 9 times


def test_hard_images_marks_the_worst_third_per_modality_and_keeps_every_id(training_script):
    import pandas as pd

    script = training_script("nuclei_cpu/hard_images.py")
    train = pd.DataFrame({"id": [f"f{k}" for k in range(6)] + [f"h{k}" for k in range(3)],
                          "modality": ["fluo"] * 6 + ["he"] * 3,
                          "train_ap50": [0.9, 0.1, 0.8, 0.3, 0.95, 0.7, 0.5, 0.9, 0.6]})
    marked = script.mark_hard_images(train)
    hard = set(marked.id[marked.sampling_group.str.endswith("/hard")])
    assert hard == {"f1", "f3", "h0"}  # the lowest third of each modality, not of all images
    index = pd.DataFrame({"id": [*train.id, "val0", "test0"], "modality": [*train.modality, "fluo", "he"]})
    table = script.strata_table(marked, index.set_index("id"))
    assert sorted(table.id) == sorted(index.id)
    assert table.set_index("id").loc[["val0", "test0"], "sampling_group"].tolist() == ["fluo", "he"]


def test_colour_decoder_trains_only_the_named_modules(training_script):
    from cytolens.nn import UNet

    script = training_script("nuclei_cpu/colour_decoder.py")
    torch.manual_seed(0)
    network = UNet(3, 3, depth=2, base_channels=4, norm="batch")
    before = {k: v.clone() for k, v in network.state_dict().items()}
    network.train()
    script.freeze_all_but(network, ("decoders.1", "head"))
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.1)
    network(torch.randn(2, 3, 16, 16)).square().mean().backward()
    optimizer.step()
    after = network.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("decoders.1", "head")) for k in changed)
