"""Saying when an image does not fit the model: SegmentationInfo, the warnings, the cap on an estimated enlargement."""

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

import cytolens
from cytolens.data.synthetic import synthetic_nuclei
from cytolens.io import read_image
from cytolens.models import load
from cytolens.tasks.segmentation import inference
from cytolens.tasks.segmentation.object_filter import ObjectFilter
from cytolens.tasks.segmentation.training import median_diameter


@pytest.fixture(scope="module")
def fast():
    return load("nuclei_fast")


@pytest.fixture
def scales_seen(monkeypatch):
    """The scales the network is run at (each call of predict_outputs), in order."""
    seen: list[float] = []
    real = inference.predict_outputs

    def spy(package, image_yxc, scale, *args, **kwargs):
        seen.append(inference._applied(scale))
        return real(package, image_yxc, scale, *args, **kwargs)

    monkeypatch.setattr(inference, "predict_outputs", spy)
    return seen


def smooth_noise(shape: tuple[int, int], sigma: float, seed: int = 0) -> np.ndarray:
    """Blurred uniform noise: blobs of every contrast, nothing like nuclei."""
    return ndi.gaussian_filter(np.random.default_rng(seed).random(shape), sigma)


def test_info_reports_what_was_done_and_the_labels_are_those_of_the_plain_call(fast):
    image, truth = synthetic_nuclei(shape=(192, 192), n_nuclei=15, seed=1)
    plain = cytolens.segment(image, fast)
    labels, info = cytolens.segment(image, fast, return_info=True)  # warnings are errors in the tests: none here
    assert np.array_equal(labels, plain)
    # the same labels as the steps it is made of (what segment_image did before it reported anything)
    yxc = inference.as_yxc(image)
    prep = inference.tile_preparer(fast, yxc)
    outputs, raw, scale = inference.segment_outputs(fast, yxc, prep)
    filtered = ObjectFilter.from_dict(fast.extras["object_filter"]).apply(raw, outputs, yxc, prep.lo, prep.hi, scale)
    assert np.array_equal(labels, filtered)
    assert info.estimated and abs(info.diameter / median_diameter(truth) - 1) < 0.3
    assert info.scale == scale and info.n_objects == labels.max() > 10
    assert inference.MIN_CERTAINTY < info.certainty <= 1
    assert 0 <= info.filter_rejected < inference.MAX_FILTER_REJECTED and info.warnings == []
    given = cytolens.segment(image, fast, diameter=20, filter_objects=False, return_info=True)[1]
    assert (given.diameter, given.estimated, given.scale, given.filter_rejected) == (20, False, 1.0, None)


def test_tiny_nuclei_cap_the_enlargement_of_an_estimate_but_not_of_a_given_diameter(fast, scales_seen):
    image, truth = synthetic_nuclei(shape=(96, 96), n_nuclei=40, diameter_range=(4, 5), seed=1)
    with pytest.warns(UserWarning) as record:
        info = cytolens.segment(image, fast, return_info=True)[1]
    assert [str(w.message) for w in record] == info.warnings and len(info.warnings) == 1
    assert info.warnings[0].startswith(f"the estimated diameter {info.diameter:.2g} px is below the 6.7 px model "
                                       "'nuclei_fast' accepts from an estimate, so the image was enlarged 3x instead")
    assert "--diameter" in info.warnings[0] and "\n" not in info.warnings[0]
    assert info.scale == inference.MAX_ESTIMATED_SCALE and max(scales_seen) == inference.MAX_ESTIMATED_SCALE
    # the user who knows the nuclei are this small still gets the enlargement asked for, without a warning
    scales_seen.clear()
    given = cytolens.segment(image, fast, diameter=median_diameter(truth), return_info=True)[1]
    assert given.warnings == [] and scales_seen == [pytest.approx(20 / median_diameter(truth))] and given.scale > 4


def test_a_wrong_tiny_estimate_cannot_enlarge_the_image_more_than_the_cap_in_either_pass(fast, scales_seen,
                                                                                        monkeypatch):
    from cytolens.tasks.segmentation.size_model import SizeModel

    image, _ = synthetic_nuclei(shape=(128, 128), n_nuclei=12, seed=2)
    # a size model that guesses 1 px (first pass) and objects that measure 1 px (final scale): 20x before the cap
    monkeypatch.setattr(SizeModel, "predict", lambda self, styles: np.ones(len(np.atleast_2d(styles))))
    real_estimate = inference._estimate

    def tiny(*args, **kwargs):
        _, used_scale, _ = real_estimate(*args, **kwargs)
        return 1.0, used_scale, None

    monkeypatch.setattr(inference, "_estimate", tiny)
    with pytest.warns(UserWarning, match=r"^the estimated diameter 1 px is below the 6.7 px .* enlarged 3x instead of "
                                         r"20x"):
        labels, info = cytolens.segment(image, fast, return_info=True)
    # the network's work is bounded by two passes at 3x (9x the pixels each), not 10x (100x the pixels)
    assert scales_seen == [inference.MAX_ESTIMATED_SCALE, inference.MAX_ESTIMATED_SCALE]
    assert info.scale == inference.MAX_ESTIMATED_SCALE and labels.shape == image.shape


def test_an_estimate_beyond_the_size_models_range_warns(fast, monkeypatch):
    image, _ = synthetic_nuclei(shape=(128, 128), n_nuclei=12, seed=2)
    low, high = fast.extras["size_model"]["diameter_range"]
    assert low < 20 / inference.MAX_ESTIMATED_SCALE and 100 < high < 150  # DSB2018 train: 7.05-55.2 px x 0.45-2.2
    monkeypatch.setattr(inference, "_estimate", lambda *args, **kwargs: (150.0, 1.0, None))
    with pytest.warns(UserWarning, match=r"^the estimated diameter 150 px is outside the 3.2-121 px the size model "
                                         r"of 'nuclei_fast' was fitted on, so it may be wrong: give the diameter"):
        info = cytolens.segment(image, fast, return_info=True)[1]
    assert info.diameter == 150 and info.scale == pytest.approx(20 / 150)


def test_an_image_the_network_is_unsure_of_warns(fast):
    with pytest.warns(UserWarning) as record:
        info = cytolens.segment(smooth_noise((128, 128), 6), fast, return_info=True)[1]
    assert info.certainty < inference.MIN_CERTAINTY
    assert [str(w.message) for w in record] == info.warnings
    unsure = [m for m in info.warnings if "unsure" in m]
    assert len(unsure) == 1 and "\n" not in unsure[0]
    assert unsure[0].startswith(f"model 'nuclei_fast' is unsure of this image (sure of {info.certainty:.0%} of the "
                                "pixels it leans to call foreground, under 40%), which looks unlike its training data")


def test_an_image_whose_foreground_the_object_filter_mostly_removes_warns(fast):
    noise = smooth_noise((128, 128), 2)
    with pytest.warns(UserWarning) as record:
        info = cytolens.segment(noise, fast, return_info=True)[1]
    assert info.filter_rejected > inference.MAX_FILTER_REJECTED
    removed = [str(w.message) for w in record if "object filter" in str(w.message)]
    assert removed == [(f"the object filter of model 'nuclei_fast' removed {info.filter_rejected:.0%} of the "
                        "foreground the watershed found, so the image looks unlike the model's training data: check "
                        "the result (--keep-all-objects, filter_objects=False in Python, keeps them), and give the "
                        "diameter (--diameter, diameter= in Python) or try another model")]
    with warnings.catch_warnings(record=True) as unfiltered:
        warnings.simplefilter("always")
        info = cytolens.segment(noise, fast, filter_objects=False, return_info=True)[1]
    assert info.filter_rejected is None and not any("object filter" in str(w.message) for w in unfiltered)


def test_warnings_point_at_the_callers_line_not_inside_cytolens(fast):
    with pytest.warns(UserWarning) as record:
        cytolens.segment(smooth_noise((128, 128), 6), fast)
    assert {w.filename for w in record} == {__file__}


def test_an_image_with_nothing_to_find_reports_no_diameter_and_does_not_warn(fast):
    labels, info = cytolens.segment(np.random.default_rng(1).random((128, 128)), fast, return_info=True)
    assert labels.max() == 0 and (info.diameter, info.estimated, info.n_objects, info.warnings) == (None, True, 0, [])


@pytest.mark.shared_data
def test_phase_contrast_whole_cells_warn_and_a_dsb_image_does_not(shared_data, fast):
    cells = read_image(shared_data / "usiigaci_phase_contrast_cells/images/train_set05.tif")[256:512, 256:512]
    with pytest.warns(UserWarning):
        info = cytolens.segment(cells, fast, return_info=True)[1]
    assert len(info.warnings) >= 2 and info.scale == inference.MAX_ESTIMATED_SCALE
    assert info.certainty < inference.MIN_CERTAINTY
    # a fluorescence image of the DSB2018 train split (training/nuclei/split.json): nothing to say
    nuclei = read_image(shared_data / "dsb2018_stage1_train/images/"
                        "ee927e8255096971ddae1bd975cf80c4ad7c847c82d0b5f5dd2ddfe5407007ee.tif")
    info = cytolens.segment(nuclei, fast, return_info=True)[1]  # a warning would fail the test
    assert info.warnings == [] and info.certainty > inference.MIN_CERTAINTY


def test_a_constant_image_has_no_objects_and_says_why_in_its_info():
    with pytest.warns(UserWarning, match="image is constant"):
        labels, info = cytolens.segment(np.full((64, 64), 7, np.uint16), "nuclei_fast", return_info=True)
    assert labels.shape == (64, 64) and not labels.any()
    assert info.n_objects == 0 and info.diameter is None and info.warnings == [
        "image is constant (all pixels equal): no objects"]
