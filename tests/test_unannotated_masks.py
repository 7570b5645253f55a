"""Training on partly annotated images: ``data.unannotated`` masks leave unlabelled objects out of the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.test_train_workflows import one_thread, write_config, write_disks  # noqa: F401 (fixture)

from cytolens.errors import InvalidImageError
from cytolens.io import read_image, write_labels
from cytolens.tasks.segmentation.training import make_loss, median_diameter, prepare_data, prepare_sample, target_kind
from cytolens.train import run
from cytolens.train.config import validate_config
from cytolens.train.sampler import Augmentation, CropSampler

SCHEMA_CHANNELS = {"deep_watershed": 2, "contact_watershed": 3, "pixel_classes": 3}


def drop_one_object(data_folder, mask_folder) -> None:
    """Erase the highest id from each label image and mark its disk (grown by 2 px) as unannotated."""
    from scipy import ndimage as ndi

    mask_folder.mkdir(parents=True, exist_ok=True)
    for labels_file in sorted((data_folder / "labels").iterdir()):
        labels = read_image(labels_file)
        dropped = labels == labels.max()
        write_labels(labels_file, np.where(dropped, 0, labels).astype(np.uint16), overwrite=True)
        write_labels(mask_folder / labels_file.name, ndi.binary_dilation(dropped, iterations=2).astype(np.uint8))


@pytest.mark.parametrize("schema", sorted(SCHEMA_CHANNELS))
def test_unannotated_pixels_give_no_gradient(schema):
    loss = make_loss(schema, np.ones(3) if schema == "pixel_classes" else None, masked=True)
    labels = np.zeros((16, 16), np.int32)
    labels[2:7, 2:7] = 1
    unannotated = np.zeros((16, 16), np.uint8)
    unannotated[9:15, 9:15] = 1  # an object nobody labelled sits here
    sample = prepare_sample(np.random.default_rng(0).random((16, 16)), labels, schema, median_diameter(labels),
                            unannotated=unannotated, masked=True)  # at its own scale: no resizing
    assert sample.targets.shape[0] == (1 if schema == "pixel_classes" else SCHEMA_CHANNELS[schema]) + 1
    assert np.array_equal(sample.targets[-1], 1 - unannotated)
    outputs = torch.randn(1, SCHEMA_CHANNELS[schema], 16, 16, requires_grad=True)
    loss(outputs, torch.from_numpy(sample.targets)[None]).backward()
    gradient = outputs.grad.abs().sum(dim=1)[0]
    assert float(gradient[9:15, 9:15].max()) == 0.0
    assert float(gradient[2:7, 2:7].min()) > 0.0


def test_a_fully_annotated_mask_gives_the_unmasked_loss():
    labels = np.zeros((16, 16), np.int32)
    labels[2:7, 2:7], labels[7:12, 3:9] = 1, 2
    diameter = median_diameter(labels)
    plain = prepare_sample(np.random.default_rng(1).random((16, 16)), labels, "contact_watershed", diameter)
    masked = prepare_sample(np.random.default_rng(1).random((16, 16)), labels, "contact_watershed", diameter,
                            masked=True)
    outputs = torch.randn(1, 3, 16, 16)
    expected = make_loss("contact_watershed", contact_emphasis=2.0)(outputs, torch.from_numpy(plain.targets)[None])
    got = make_loss("contact_watershed", contact_emphasis=2.0, masked=True)(outputs, torch.from_numpy(masked.targets)[None])
    assert torch.allclose(expected, got, atol=1e-6)


def test_zoomed_crops_keep_the_annotated_channel_a_mask():
    labels = np.zeros((64, 64), np.int32)
    labels[10:30, 10:30] = 1
    unannotated = np.zeros((64, 64), np.uint8)
    unannotated[35:60, 35:60] = 1
    sample = prepare_sample(np.random.default_rng(2).random((64, 64)), labels, "contact_watershed", 20.0,
                            unannotated=unannotated, masked=True)
    sampler = CropSampler([sample], crop_size=32, batch_size=4, steps_per_epoch=1,
                          augmentation=Augmentation(scale_range=(0.7, 1.4)),
                          targets=target_kind("contact_watershed", masked=True))
    _, targets = sampler.batch_at(0, 0)
    assert set(np.unique(targets[:, 3].numpy())) == {0.0, 1.0}


def test_training_reads_the_masks_and_checks_their_size(tmp_path):
    write_disks(tmp_path / "data", 4, seed=6)
    drop_one_object(tmp_path / "data", tmp_path / "data" / "unannotated")
    config = write_config(tmp_path, data={"test_fraction": 0.0, "val_fraction": 0.25,
                                          "unannotated": "data/unannotated"},
                          optimization={"epochs": 1, "steps_per_epoch": 1})
    from cytolens.train.config import load_config

    data = prepare_data(load_config(config), progress=False)
    for sample in data.side("train"):
        assert sample.targets.shape[0] == 3 and 0 < sample.targets[2].mean() < 1  # deep watershed + annotated
    result = run(config, progress=False)
    assert np.isfinite(result.best["val_loss"]) and (tmp_path / "models" / "tiny" / "weights.safetensors").is_file()
    first = min((tmp_path / "data" / "unannotated").iterdir())
    write_labels(first, np.zeros((10, 10), np.uint8), overwrite=True)
    with pytest.raises(InvalidImageError, match="data.unannotated mask must match its image"):
        prepare_data(load_config(config), progress=False)


def test_the_config_names_the_masks_folder():
    config = validate_config({"name": "n", "data": {"images": "i", "labels": "l", "unannotated": "m"}, "output": "o"})
    assert str(config.data.unannotated) == "m"
