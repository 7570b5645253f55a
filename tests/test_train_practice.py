"""Training practice without training: configs, splits, class weights, receptive field, overfitting, freezing."""

from __future__ import annotations

import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cytolens.errors import InvalidParameterError
from cytolens.train.checks import check_receptive_field, object_diameters
from cytolens.train.config import AugmentationConfig, load_config, save_config, validate_config
from cytolens.train.loop import LoopConfig, fit, overfitting_report
from cytolens.train.splits import add_fixed_sides, make_split, nested_subsets
from cytolens.train.transfer import encoder_modules, freeze_encoder_hook
from cytolens.train.weights import inverse_frequency_weights, pixel_class_weights, sample_weights

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"name": "demo", "data": {"images": "im", "labels": "lab"}, "output": "out"}


def config_with(**changes) -> dict:
    raw = {key: dict(value) if isinstance(value, dict) else value for key, value in MINIMAL.items()}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    return raw


# --- config validation -------------------------------------------------------------------------------------------

def test_bundled_nuclei_config_still_validates():
    config = load_config(ROOT / "training" / "nuclei" / "config.yaml")
    assert config.schema_ == "deep_watershed" and config.architecture.depth == 4
    assert config.data.images.is_absolute() and config.init_from is None and config.freeze_encoder_epochs == 0
    raw = yaml.safe_load((ROOT / "training" / "nuclei" / "config.yaml").read_text())["augmentation"]
    # settings in the file are kept as written; the ones it leaves out take their defaults
    assert (config.augmentation.gamma, config.augmentation.blur) == (raw["gamma"], raw["blur"])
    assert config.augmentation.stain == 0


@pytest.mark.parametrize("changes, expected", [
    ({"optimizer_settings": {}}, r"optimizer_settings: unknown setting"),
    ({"optimisation": {"epochs": 3}}, r"optimisation: unknown setting \(did you mean 'optimization'\?\)"),
    ({"optimization": {"learnig_rate": 0.1}},
     r"optimization.learnig_rate: unknown setting \(did you mean 'learning_rate'\?\)"),
    ({"optimization": {"learning_rate": -1}}, r"optimization.learning_rate: Input should be greater than 0 \(got -1\)"),
    ({"optimization": {"crop_size": 100}}, r"crop_size 100 must be a multiple of 2\*\*architecture.depth = 16"),
    ({"architecture": {"depth": 9}}, r"architecture.depth: Input should be less than or equal to 6"),
    ({"schema": "stardist"}, r"schema: Input should be 'deep_watershed', 'contact_watershed', 'pixel_classes' or 'flow_field'"),
    ({"augmentation": {"preset": "confocal"}}, r"augmentation.preset: Input should be 'fluorescence', 'brightfield'"),
    ({"augmentation": {"scale_range": [1.5, 1.0]}}, r"scale_range must be 0 < low <= high"),
    ({"freeze_encoder_epochs": 2}, r"freeze_encoder_epochs needs init_from"),
    ({"contact_emphasis": 4.0}, r"contact_emphasis needs schema: contact_watershed \(got deep_watershed\)"),
    ({"schema": "contact_watershed", "contact_emphasis": -1}, r"contact_emphasis: Input should be greater than"),
    ({"data": {"val_images": "v"}}, r"give both val_images and val_labels"),
    ({"data": {"group_column": "donor"}}, r"need strata_csv"),
    ({"task": "colocalization"}, r"task: unknown task 'colocalization'; known: classification, restoration, segmentation"),
])
def test_config_errors_name_the_field(changes, expected):
    with pytest.raises(InvalidParameterError, match=expected):
        validate_config(config_with(**changes))


def test_missing_required_fields_are_listed():
    with pytest.raises(InvalidParameterError, match=r"name: Field required; data: Field required; output: Field"):
        validate_config({})


def test_load_config_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InvalidParameterError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InvalidParameterError, match="must hold a mapping"):
        load_config(bad)
    bad.write_text("name: x\ndata: {images: a, labels: b}\noutput: o\noptimization: {epochs: 0}\n")
    with pytest.raises(InvalidParameterError, match=r"invalid config .*bad.yaml: optimization.epochs"):
        load_config(bad)


def test_config_round_trip_and_relative_paths(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(validate_config(config_with(augmentation={"preset": "he"}, init_from="nuclei", seed=3)), path)
    config = load_config(path)
    assert config.data.images == tmp_path / "im" and config.output == tmp_path / "out"
    assert config.init_from == "nuclei"  # not an existing path: a bundled name
    again = tmp_path / "again.yaml"
    save_config(config, again)
    assert load_config(again) == config


def test_augmentation_presets_fill_and_explicit_settings_win():
    he = validate_config(config_with(augmentation={"preset": "he"})).augmentation
    assert he.stain > 0 and he.intensity == 0.1
    custom = validate_config(config_with(augmentation={"preset": "brightfield", "blur": 0.25})).augmentation
    assert custom.blur == 0.25 and custom.gamma == 0.2
    plain = AugmentationConfig()
    assert plain.preset is None and plain.scaled(1.0) == plain
    off = AugmentationConfig(preset="fluorescence").scaled(0.0)
    assert off.scale_range == (1.0, 1.0) and off.intensity == off.gamma == off.blur == off.stain == 0


# --- splits ------------------------------------------------------------------------------------------------------

def test_split_is_deterministic_and_covers_every_id():
    ids = [f"img{i:03d}" for i in range(50)]
    split = make_split(ids, 0.1, 0.2, seed=4)
    assert split == make_split(list(reversed(ids)), 0.1, 0.2, seed=4)
    assert split != make_split(ids, 0.1, 0.2, seed=5)
    assert sorted(split["train"] + split["val"] + split["test"]) == ids
    assert (len(split["val"]), len(split["test"])) == (5, 10)


def test_grouped_split_never_spans_sides():
    ids = [f"movie{m}_frame{f}" for m in range(12) for f in range(5)]
    groups = [i.split("_")[0] for i in ids]
    split = make_split(ids, 0.2, 0.2, groups=groups, seed=0)
    side_of_group = {}
    for side, items in split.items():
        for item in items:
            assert side_of_group.setdefault(item.split("_")[0], side) == side
    assert {len(v) % 5 for v in split.values()} == {0} and all(split.values())


def test_stratified_split_puts_every_stratum_in_val_and_test():
    ids = [f"i{k}" for k in range(40)]
    strata = ["fluo"] * 30 + ["he"] * 6 + ["bf"] * 4
    split = make_split(ids, 0.1, 0.1, strata=strata, seed=1)
    stratum = dict(zip(ids, strata))
    for side in ("val", "test"):
        assert {stratum[i] for i in split[side]} == {"fluo", "he", "bf"}


def test_folder_sides_and_nested_subsets():
    split = add_fixed_sides(make_split(["a", "b", "c"], 0, 0), {"val": ["v1"], "test": ["t1", "t2"]})
    assert split == {"train": ["a", "b", "c"], "val": ["v1"], "test": ["t1", "t2"]}
    with pytest.raises(InvalidParameterError, match="'a' is in both the train and the val"):
        add_fixed_sides(split, {"val": ["a"]})
    subsets = nested_subsets([f"x{k}" for k in range(20)], [0.1, 0.25, 0.5, 1.0], seed=2)
    assert [len(s) for s in subsets] == [2, 5, 10, 20]
    assert all(set(a) <= set(b) for a, b in pairwise(subsets))
    assert subsets == nested_subsets([f"x{k}" for k in range(20)], [0.1, 0.25, 0.5, 1.0], seed=2)
    with pytest.raises(InvalidParameterError, match="increasing"):
        nested_subsets(["a"], [0.5, 0.2])


# --- class weights -----------------------------------------------------------------------------------------------

def test_image_class_weights_by_hand_and_against_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = ["mitotic"] * 2 + ["interphase"] * 6 + ["apoptotic"] * 4  # 12 images, 3 classes
    weights = inverse_frequency_weights(labels, classes=["interphase", "mitotic", "apoptotic"])
    assert weights == pytest.approx({"interphase": 12 / 18, "mitotic": 2.0, "apoptotic": 1.0})
    expected = compute_class_weight("balanced", classes=np.array(["interphase", "mitotic", "apoptotic"]), y=labels)
    assert list(weights.values()) == pytest.approx(expected.tolist())
    p = sample_weights(labels)
    assert p.sum() == pytest.approx(1) and p[:2].sum() == pytest.approx(1 / 3)  # each class drawn equally often
    with pytest.raises(InvalidParameterError, match="'dead' have no training example"):
        inverse_frequency_weights(labels, classes=["interphase", "mitotic", "apoptotic", "dead"])


def test_pixel_class_weights_values():
    from cytolens.tasks.segmentation import pixel_classes

    class_map = np.array([[0] * 6 + [1] * 3 + [2]])  # 6 background, 3 interior, 1 edge
    assert pixel_class_weights([np.bincount(class_map.ravel(), minlength=3)]) == pytest.approx([1 / 3, 2 / 3, 2])
    assert pixel_classes.class_weights([class_map]) == pytest.approx([1 / 3, 2 / 3, 2])
    assert pixel_class_weights([[4, 4, 0]]) == pytest.approx([1, 1, 1])  # absent class: not infinite


# --- receptive field ---------------------------------------------------------------------------------------------

def test_receptive_field_warning_says_what_to_change():
    labels = np.zeros((200, 200), int)
    yy, xx = np.mgrid[:200, :200]
    labels[(yy - 100) ** 2 + (xx - 100) ** 2 < 30**2] = 1  # one disk, 60 px across
    diameters = object_diameters([labels])
    assert diameters == pytest.approx([60], abs=1)
    with pytest.warns(UserWarning, match=r"60 px across .* sees only 44 px .* set architecture.depth: 3 "
                                         r"\(receptive field 96 px\) or lower target_diameter from 40 to at most 29"):
        message = check_receptive_field(diameters, depth=2, scale_setting=("target_diameter", 40.0))
    assert message.startswith("receptive field too small")
    assert check_receptive_field(diameters, depth=3) is None  # 96 px: fits, no warning (warnings are errors)


# --- overfitting and the loop's hooks ---------------------------------------------------------------------------

def test_overfitting_flag_message_and_hooks(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 16)[:, None]
    val_losses = iter([1.0, 0.5, 0.52, 0.8, 0.9])
    started, ended = [], []

    def on_start(net, epoch):
        started.append((epoch, net.training))

    config = LoopConfig(epochs=5, learning_rate=0.05, warmup_epochs=0, patience=0, schedule="constant")
    history = fit(model, torch.nn.functional.mse_loss, lambda epoch: [(x, 3 * x)] * 4,
                  lambda net: {"val_loss": next(val_losses)}, config, tmp_path, progress=True,
                  on_epoch_start=on_start, on_epoch_end=ended.append)
    assert [r["overfitting"] for r in history] == [0, 0, 0, 1, 1]
    assert started == [(e, True) for e in range(5)] and [r["epoch"] for r in ended] == [1, 2, 3, 4, 5]
    out = capsys.readouterr().out
    assert "overfitting: validation loss 0.8 is above its best 0.5 (epoch 2)" in out
    report = overfitting_report(history)
    assert report in out and "keeps the weights of epoch 2" in report
    assert overfitting_report(history[:3]) is None
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "history.csv").read_text().count("\n") == 6


def test_freeze_encoder_hook_freezes_encoder_and_its_batch_norm():
    from cytolens.nn import UNet

    net = UNet(3, 2, depth=2, base_channels=4)
    hook = freeze_encoder_hook(1)
    net.train()
    hook(net, 0)
    encoder = encoder_modules(net)
    assert len(encoder) == 3  # two encoder blocks and the bottleneck
    assert not any(p.requires_grad for m in encoder for p in m.parameters())
    assert all(not m.training for m in encoder) and net.head.weight.requires_grad and net.decoders[0].training
    net.train()
    hook(net, 1)
    assert all(p.requires_grad for p in net.parameters())
    assert freeze_encoder_hook(0) is None


def crop_sampler(samples, crop_size, batch_size, steps, *, seed=0, workers=0, **augmentation):
    """A deep-watershed crop sampler with the given augmentation settings."""
    from cytolens.tasks.segmentation.training import target_kind
    from cytolens.train.sampler import Augmentation, CropSampler

    return CropSampler(samples, crop_size=crop_size, batch_size=batch_size, steps_per_epoch=steps,
                       augmentation=Augmentation(**augmentation), targets=target_kind("deep_watershed"),
                       seed=seed, workers=workers)


def test_crop_sampler_modality_augmentations_keep_shapes_and_values_finite():
    from cytolens.tasks.segmentation.training import prepare_sample

    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:20], labels[30:44, 30:40] = 1, 2
    image = (labels > 0) * 200 + rng.integers(0, 30, labels.shape)
    sample = prepare_sample(image, labels, "deep_watershed", 12.0)
    sampler = crop_sampler([sample], 32, 2, 2, gamma=0.3, blur=1.0, stain=0.1, seed=1)
    batches = list(sampler(0))
    assert len(batches) == 2
    for inputs, targets in batches:
        assert inputs.shape == (2, 3, 32, 32) and targets.shape == (2, 2, 32, 32)
        assert torch.isfinite(inputs).all()
    plain = [b[0] for b in crop_sampler([sample], 32, 2, 2, seed=1)(0)]
    same = [b[0] for b in crop_sampler([sample], 32, 2, 2, seed=1, gamma=0, blur=0, stain=0)(0)]
    assert all(torch.equal(a, b) for a, b in zip(plain, same))


def test_crop_sampler_min_content_skips_background_crops():
    from cytolens.tasks.restoration.training import RestorationSample
    from cytolens.train.sampler import Augmentation, CropSampler

    image = np.zeros((1, 128, 128), np.float32)
    image[0, 100:120, 100:120] = 1.0  # one bright patch in a dark image: most 32-px crops miss it
    sample = RestorationSample(image, image.copy())

    def share_with_content(min_content):
        sampler = CropSampler([sample], crop_size=32, batch_size=16, steps_per_epoch=8,
                              augmentation=Augmentation(scale_range=(1.0, 1.0), intensity=0.0),
                              seed=3, min_content=min_content)
        return float(np.mean([float(t.amax()) > 0.5 for _, batch in sampler(0) for t in batch]))

    assert share_with_content(0.0) < 0.3
    assert share_with_content(0.4) > 0.9


@pytest.mark.parametrize("source", [23, 32, 45])
def test_crop_resize_gives_the_values_of_scipy_zoom(source):
    from scipy import ndimage as ndi

    from cytolens.train.sampler import resize_linear

    array = np.random.default_rng(source).random((3, source, source)).astype(np.float32)
    factor = 32 / source
    expected = ndi.zoom(array, (1, factor, factor), order=1, grid_mode=True, mode="nearest")[:, :32, :32]
    resized = resize_linear(array, 32)
    assert resized.shape == (3, 32, 32) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, expected, atol=1e-5)


def test_crop_batches_do_not_depend_on_the_number_of_worker_processes():
    from cytolens.tasks.segmentation.training import prepare_sample

    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:20], labels[30:44, 30:40] = 1, 2
    sample = prepare_sample((labels > 0) * 200 + rng.integers(0, 30, labels.shape), labels, "deep_watershed", 12.0)
    inline = list(crop_sampler([sample], 32, 2, 3, gamma=0.3, seed=4)(1))
    workers = list(crop_sampler([sample], 32, 2, 3, gamma=0.3, seed=4, workers=2)(1))
    assert len(workers) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(inline, workers))
    other_epoch = next(iter(crop_sampler([sample], 32, 2, 3, gamma=0.3, seed=4)(2)))
    assert not torch.equal(other_epoch[0], inline[0][0])


def test_device_setting():
    from cytolens.train.loop import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(InvalidParameterError, match="invalid config: optimization.device"):
        validate_config(config_with(optimization={"device": "tpu"}))


def test_half_precision_keeps_statistics_that_float16_cannot_hold():
    from cytolens.nn.precision import half_precision_weights

    state = {"conv.weight": torch.tensor([0.1, -2.0]), "conv.bias": torch.tensor([1e5]),
             "bn.running_var": torch.tensor([7e4, 1.0]), "bn.num_batches_tracked": torch.tensor(3)}
    halved = half_precision_weights(state)
    assert halved["conv.weight"].dtype == torch.float16
    assert halved["conv.bias"].dtype == torch.float32  # 1e5 overflows float16: kept as it was
    assert torch.equal(halved["bn.running_var"], state["bn.running_var"])
    assert halved["bn.num_batches_tracked"].dtype == torch.int64


def test_stain_jitter_changes_stained_crops_and_leaves_grayscale_crops_gray():
    from cytolens.tasks.segmentation.training import prepare_sample

    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.int32)
    labels[10:20, 10:20], labels[30:44, 30:40] = 1, 2
    gray = (labels > 0) * 200 + rng.integers(0, 30, labels.shape)
    stained = np.stack([255 - gray * 0.5, 255 - gray * 0.9, 255 - gray * 0.3], axis=-1)  # purple nuclei on white
    options = dict(flips=False, rotations=False, scale_range=(1.0, 1.0), intensity=0.0, seed=3)
    for image, colour in ((gray, False), (stained, True)):
        sample = prepare_sample(image, labels, "deep_watershed", 12.0)
        jittered = next(iter(crop_sampler([sample], 32, 1, 1, stain=0.2, **options)(0)))[0][0]
        plain = next(iter(crop_sampler([sample], 32, 1, 1, stain=0.0, **options)(0)))[0][0]
        if colour:
            assert not torch.allclose(jittered, plain, atol=1e-3)
        else:
            assert torch.equal(jittered, plain) and torch.equal(jittered[0], jittered[1])


def test_bfloat16_precision_trains_like_float32_and_is_validated(tmp_path):
    dtypes = []

    def run(precision: str) -> list[dict]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
        x = torch.linspace(-1, 1, 2 * 16 * 16).reshape(2, 1, 16, 16)
        config = LoopConfig(epochs=3, learning_rate=0.02, warmup_epochs=0, patience=0, precision=precision)

        def validate(net):
            out = net(x)  # under the loop's autocast: bfloat16 when asked for and supported
            dtypes.append(out.dtype)
            return {"val_loss": float(torch.nn.functional.mse_loss(out.float(), 2 * x))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a CPU without native bfloat16 warns and stays in float32
            return fit(model, torch.nn.functional.mse_loss, lambda epoch: [(x, 2 * x)] * 8, validate, config,
                       tmp_path / precision, progress=False)

    from cytolens.nn.precision import bfloat16_is_fast

    full, mixed = run("float32"), run("bfloat16")
    assert full[-1]["val_loss"] < full[0]["val_loss"] and mixed[-1]["val_loss"] < mixed[0]["val_loss"]
    assert abs(mixed[-1]["val_loss"] - full[-1]["val_loss"]) < 0.1 * full[0]["val_loss"]
    fast = bfloat16_is_fast(torch.device("cpu"))
    assert dtypes == [torch.float32] * 3 + [torch.bfloat16 if fast else torch.float32] * 3
    with pytest.raises(InvalidParameterError, match="invalid config: optimization.precision"):
        validate_config(config_with(optimization={"precision": "float16"}))
