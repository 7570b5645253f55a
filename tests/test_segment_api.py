"""cytolens.segment end to end with the bundled model: tiling, scale, bad inputs."""

import numpy as np
import pytest

import cytolens
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import CytolensError, InvalidImageError, InvalidParameterError, UnknownModelError
from cytolens.metrics import match
from cytolens.models import load


@pytest.fixture(scope="module")
def nuclei():
    return load("nuclei")


@pytest.fixture(scope="module")
def sample():
    return synthetic_nuclei(shape=(384, 384), n_nuclei=45, seed=11)


def ap50(truth, labels) -> float:
    return match(truth.astype(np.int64), labels.astype(np.int64), 0.5).average_precision


def test_segment_finds_synthetic_nuclei(nuclei, sample):
    image, truth = sample
    labels = cytolens.segment(image, nuclei)
    assert labels.shape == image.shape and labels.dtype == np.uint32
    assert ap50(truth, labels) > 0.8


def test_bfloat16_precision_finds_the_same_nuclei(nuclei, sample):
    import warnings

    image, truth = sample
    full = cytolens.segment(image, nuclei)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU without native bfloat16 warns and runs float32
        mixed = cytolens.segment(image, nuclei, precision="bfloat16")  # the diameter estimate runs in it too
    assert mixed.dtype == np.uint32 and ap50(truth, mixed) > 0.8
    assert ap50(full, mixed) > 0.95


def test_segment_runs_the_batchnorm_fused_network_and_finds_what_the_original_finds(nuclei, sample,
                                                                                    benchmark_script):
    import torch

    image, _ = sample
    assert nuclei.inference_network is nuclei.inference_network  # folded once per loaded package
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in nuclei.inference_network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in nuclei.network.modules())
    unfused = benchmark_script("segmentation_speed").with_batchnorms(nuclei)  # what segmenting ran before
    assert unfused.inference_network is nuclei.network
    fused_labels, unfused_labels = cytolens.segment(image, nuclei), cytolens.segment(image, unfused)
    assert ap50(unfused_labels, fused_labels) > 0.99


def test_tiled_and_untiled_agree(nuclei):
    image, _ = synthetic_nuclei(shape=(700, 650), n_nuclei=120, seed=5)
    untiled = cytolens.segment(image, nuclei, diameter=20, tile_size=768)
    tiled = cytolens.segment(image, nuclei, diameter=20, tile_size=192, overlap=48)
    assert untiled.max() > 50
    assert ap50(untiled, tiled) >= 0.99


def test_rgb_uint8_and_float_inputs_give_the_same_objects(nuclei, sample):
    image, _ = sample
    as_float = image.astype(np.float32) / 65535
    as_rgb = np.repeat((image / image.max() * 255).astype(np.uint8)[..., None], 3, axis=2)
    reference = cytolens.segment(image, nuclei, diameter=20)
    assert ap50(reference, cytolens.segment(as_float, nuclei, diameter=20)) >= 0.99
    assert ap50(reference, cytolens.segment(as_rgb, nuclei, diameter=20)) >= 0.95


def test_diameter_changes_scale_consistently(nuclei):
    image, truth = synthetic_nuclei(shape=(256, 256), n_nuclei=25, diameter_range=(14, 22), seed=2)
    big = np.kron(image, np.ones((2, 2), image.dtype))  # same scene, nuclei twice as large
    big_truth = np.kron(truth, np.ones((2, 2), truth.dtype))
    assert ap50(big_truth, cytolens.segment(big, nuclei)) > 0.8


def test_postprocess_overrides_are_applied(nuclei, sample):
    image, _ = sample
    few = cytolens.segment(image, nuclei, diameter=20, min_size=10_000)
    assert few.max() == 0
    with pytest.raises(InvalidParameterError, match="unknown post-processing"):
        cytolens.segment(image, nuclei, diameter=20, threshold=0.3)
    with pytest.raises(InvalidParameterError, match="smoothing"):
        cytolens.segment(image, nuclei, diameter=20, smoothing=-1.0)


def test_a_package_with_unknown_postprocessing_settings_is_refused(nuclei, sample):
    import copy
    import dataclasses

    meta = copy.deepcopy(nuclei.meta)
    meta["postprocess"]["flow_threshold"] = 0.4  # e.g. written by a newer cytolens
    newer = dataclasses.replace(nuclei, meta=meta)
    with pytest.raises(InvalidParameterError, match="upgrade cytolens"):
        cytolens.segment(sample[0], newer, diameter=20)


def _edit_meta(folder, **changes):
    import json

    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "model.json").write_text("{not json"), r"model.json is not valid JSON"),
    (lambda d: (d / "model.json").write_text("[1, 2]"), r"model.json must hold a JSON object, found a list"),
    (lambda d: _edit_meta(d, task=None), r"model.json lacks task"),
    (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:1000]),
     r"weights.safetensors cannot be read .*not fully copied"),
    (lambda d: _edit_meta(d, architecture={"name": "unet", "args": {"base_channels": 32, "out_channels": 3}}),
     r"weights.safetensors does not fit the architecture in model.json \(size mismatch"),
    (lambda d: _edit_meta(d, architecture={"name": "unet", "args": {"width": 3}}), r"architecture cannot be built"),
    (lambda d: _edit_meta(d, schema="stardist"), r"schema 'stardist', which this cytolens does not know"),
    (lambda d: (d / "size_model.json").write_text('{"mean": [1]}'), r"malformed size_model.json"),
    (lambda d: (d / "object_filter.json").write_text("[]"), r"object_filter.json must hold a JSON object"),
])
def test_a_damaged_model_package_gets_a_clear_error(tmp_path, sample, damage, message):
    import shutil

    from cytolens.models.package import BUNDLED_DIR

    folder = shutil.copytree(BUNDLED_DIR / "nuclei_fast", tmp_path / "package")
    damage(folder)
    with pytest.raises(CytolensError, match=message):
        cytolens.segment(sample[0], load(folder))


def test_a_zipped_package_loads_like_its_folder_and_is_extracted_once(tmp_path, sample):
    import shutil

    from cytolens.models.package import BUNDLED_DIR

    archive = shutil.make_archive(str(tmp_path / "shared_model"), "zip", BUNDLED_DIR, "nuclei_fast")
    first, second = load(archive), load(archive)
    assert first.path == second.path and first.name == "nuclei_fast"
    expected = cytolens.segment(sample[0], "nuclei_fast", diameter=20)
    assert np.array_equal(cytolens.segment(sample[0], first, diameter=20), expected)


def test_a_damaged_zip_package_gets_a_clear_error(tmp_path):
    (tmp_path / "model.zip").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(CytolensError, match="not a readable zip archive"):
        load(tmp_path / "model.zip")


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((64, 64), np.nan), "NaN"),
        (np.zeros((4, 64, 64)), "2D image"),  # constant, and still refused for its shape
        (np.zeros((0, 10)), "empty"),
        (np.random.default_rng(0).random((4, 64, 64, 3)), "2D image"),
        (np.random.default_rng(0).random((64, 64, 7)), "channels"),
        (np.random.default_rng(0).random((3, 64, 64)), "channels-first"),
        (np.array([["a", "b"], ["c", "d"]]), "non-numeric"),
        (np.float32(3.0), "2D image"),
        (np.arange(100.0), "2D image"),
        (np.random.default_rng(0).random((64, 64)) * (1 + 1j), "complex"),
        (np.random.default_rng(0).random((64, 64)) * 1e300, "beyond float32"),
    ],
)
def test_bad_images_raise_clear_errors(nuclei, bad, message):
    with pytest.raises(InvalidImageError, match=message):
        cytolens.segment(bad, nuclei)


@pytest.mark.parametrize("image", [np.zeros((64, 48)), np.full((40, 40), 7, np.uint16), np.full((32, 32, 3), 255.0)])
def test_a_constant_image_gives_no_objects_and_a_warning_not_an_error(nuclei, image, monkeypatch):
    from cytolens.tasks.segmentation import inference

    monkeypatch.setattr(inference, "predict_outputs", lambda *a, **k: pytest.fail("nothing to run the network on"))
    with pytest.warns(UserWarning, match=r"image is constant \(all pixels equal\): no objects") as caught:
        labels = cytolens.segment(image, nuclei)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint32 and not labels.any()
    assert caught[0].filename == __file__  # the warning points at the caller of cytolens.segment
    with pytest.raises(InvalidParameterError, match="diameter"):  # its settings are still checked
        cytolens.segment(image, nuclei, diameter=-1)
    with pytest.raises(InvalidImageError, match="channel"):
        cytolens.segment(image, nuclei, channel=5)


@pytest.mark.parametrize("kwargs", [{"diameter": -3}, {"diameter": float("nan")}, {"diameter": "20"},
                                    {"diameter": True}, {"tile_size": 16},
                                    {"overlap": 400}, {"gamma": 0.0}, {"gamma": float("nan")}, {"gamma": 50},
                                    {"precision": "float16"}, {"foreground_threshold": 2}, {"marker_threshold": -0.1},
                                    {"contact_weight": "1"}, {"marker_dynamic": float("nan")}, {"min_size": -3},
                                    {"min_size": 2.5}, {"smoothing": -1}])
def test_bad_parameters_raise_clear_errors(nuclei, sample, kwargs):
    with pytest.raises(InvalidParameterError, match=next(iter(kwargs)) if len(kwargs) == 1 else None):
        cytolens.segment(sample[0], nuclei, **kwargs)


def test_a_bad_post_processing_setting_fails_before_the_network_runs(nuclei, sample, monkeypatch):
    from cytolens.tasks.segmentation import inference

    def network_must_not_run(*args, **kwargs):
        raise AssertionError("the network ran before the settings were checked")

    monkeypatch.setattr(inference, "predict_outputs", network_must_not_run)
    with pytest.raises(InvalidParameterError, match="min_size"):
        cytolens.segment(sample[0], nuclei, min_size=-1)


def test_a_diameter_beyond_the_models_range_warns_and_says_what_was_done(nuclei, sample):
    with pytest.warns(UserWarning, match=r"diameter 5000 px is outside what this model handles \(2 to 200 px\)"):
        labels = cytolens.segment(sample[0], nuclei, diameter=5000)
    assert labels.shape == sample[0].shape


def test_dark_background_test_tells_fluorescence_from_stained(sample):
    from cytolens.tasks.segmentation.inference import has_dark_background

    fluorescence = sample[0]
    stained = np.repeat((fluorescence.max() - fluorescence)[..., None], 3, axis=2)  # dark nuclei, bright background
    assert has_dark_background(fluorescence) and not has_dark_background(stained)


def test_gamma_lifts_mid_range_intensities(nuclei, sample):
    from cytolens.tasks.segmentation.inference import as_yxc, tile_preparer

    image = as_yxc(sample[0])
    lifted = tile_preparer(nuclei, image, gamma=0.67)(image)
    plain = tile_preparer(nuclei, image)(image)
    inside = (plain > 0.05) & (plain < 0.95)
    assert inside.any() and np.all(lifted[inside] > plain[inside])


def textured_nuclei(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three round nuclei (diameter 48) of dim nucleoplasm dotted with bright chromatin foci."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:192, :192]
    truth = np.zeros((192, 192), np.int32)
    image = np.zeros((192, 192))
    for label, (cy, cx) in enumerate([(50, 50), (60, 140), (140, 95)], start=1):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= 24**2
        truth[inside] = label
        image[inside] += 0.15
        for _ in range(7):
            r, a = 16 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            fy, fx = cy + r * np.sin(a), cx + r * np.cos(a)
            image += np.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * 3.0**2)) * inside
    image = image + rng.normal(0, 0.01, image.shape)
    return (image * 4000 + 200).astype(np.uint16), truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_textured_nuclei_are_found_whole(nuclei, seed):
    # with gamma=1 the bundled model cuts these nuclei along their dim nucleoplasm (AP@0.5 0.14-0.40)
    image, truth = textured_nuclei(seed)
    labels = cytolens.segment(image, nuclei, diameter=48, gamma=0.67)
    assert labels.max() == 3 and ap50(truth, labels) == 1.0


def test_one_channel_of_a_multichannel_image_is_segmented(nuclei, sample):
    image, truth = sample
    rng = np.random.default_rng(0)
    stack = np.stack([rng.integers(0, 50, image.shape).astype(image.dtype), image,
                      rng.integers(0, 50, image.shape).astype(image.dtype)], axis=-1)[..., :2]
    with pytest.raises(InvalidImageError, match=r"pick one channel \(channel=, CLI --channel\)"):
        cytolens.segment(stack, nuclei, diameter=20)
    labels = cytolens.segment(stack, nuclei, diameter=20, channel=1)
    assert np.array_equal(labels, cytolens.segment(image, nuclei, diameter=20))
    with pytest.raises(InvalidImageError, match="channel 2 does not exist: the image has 2 channels"):
        cytolens.segment(stack, nuclei, channel=2)
    with pytest.raises(InvalidParameterError, match="channel must be a whole number"):
        cytolens.segment(stack, nuclei, channel=1.0)
    with pytest.raises(InvalidImageError, match="channels last"):
        cytolens.segment(np.moveaxis(stack, -1, 0), nuclei, channel=0)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownModelError, match="nuclei"):
        cytolens.segment(np.eye(32), model="no-such-model")


def test_all_user_errors_share_one_base_class():
    assert issubclass(InvalidImageError, CytolensError) and issubclass(UnknownModelError, CytolensError)


def test_estimated_diameter_follows_the_true_one(nuclei):
    from cytolens.tasks.segmentation.inference import estimate_diameter
    from cytolens.tasks.segmentation.training import median_diameter

    image, truth = synthetic_nuclei(shape=(256, 256), n_nuclei=25, diameter_range=(14, 22), seed=4)
    small = estimate_diameter(nuclei, image)
    assert abs(small / median_diameter(truth) - 1) < 0.3
    large = estimate_diameter(nuclei, np.kron(image, np.ones((2, 2), image.dtype)))
    assert 1.6 < large / small < 2.5


def test_nuclei_in_one_region_of_a_large_image_are_found_with_the_diameter_estimated():
    # the diameter of a large image is estimated on a few crops: they must be where the nuclei are
    # (crops at fixed positions all fell on the empty background here, and nothing was found)
    from cytolens.tasks.segmentation.inference import ESTIMATE_CROP

    patch, truth_patch = synthetic_nuclei(shape=(400, 600), n_nuclei=40, seed=5)
    image = np.full((2600, 600), np.median(patch), patch.dtype)
    truth = np.zeros(image.shape, np.int32)
    image[1100:1500], truth[1100:1500] = patch, truth_patch
    assert image.shape[0] > 2 * ESTIMATE_CROP  # large enough to be estimated on crops
    labels = cytolens.segment(image, "nuclei_fast")
    assert ap50(truth, labels) > 0.8


def test_size_model_round_trip(tmp_path):
    import torch

    from cytolens.nn import UNet
    from cytolens.tasks.segmentation.size_model import SizeModel, fit_size_model, style_of

    torch.manual_seed(0)
    net = UNet(3, 2, depth=2, base_channels=4).eval()
    rng = np.random.default_rng(0)
    images = [rng.random((3, 64, 64)).astype(np.float32) for _ in range(6)]
    model = fit_size_model(net, images, [10, 12, 14, 16, 18, 20], zooms=(0.5, 1.0, 2.0), alphas=(0.1, 1.0))
    model.save(tmp_path / "size_model.json")
    again = SizeModel.load(tmp_path / "size_model.json")
    style = style_of(net, images[0])
    assert np.allclose(model.predict(style), again.predict(style)) and model.predict(style)[0] > 0


@pytest.mark.parametrize(("name", "minimum_ap"), [("nuclei", 0.9), ("nuclei_fast", 0.9),
                                                  ("nuclei_pixel_classes", 0.5)])  # the last: a 12-epoch baseline
def test_every_bundled_model_loads_offline_and_finds_synthetic_nuclei(name, minimum_ap):
    image, truth = synthetic_nuclei(shape=(256, 256), n_nuclei=25, seed=11)
    labels = cytolens.segment(image, model=name, diameter=20)
    assert match(truth.astype(np.int64), labels.astype(np.int64), 0.5).average_precision >= minimum_ap
