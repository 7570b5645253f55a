"""Run a segmentation model package on one image: normalize, rescale, tile, post-process.

The model was trained with objects of a fixed median diameter
(``model.json`` → ``scale.target_diameter``). An image is resized by
``target_diameter / diameter`` before the network sees it; when ``diameter`` is
None it is estimated by a first pass at the image's own scale (on a few
crops for large images), followed by a second pass at the corrected scale.
Network outputs are resized back, so post-processing happens at the image's own
resolution and object outlines keep their detail.

Each call can say how well the image suited the model (:class:`SegmentationInfo`,
``cytolens.segment(..., return_info=True)``): the diameter and scale used, the object
count, how sure the network was, how much the object filter removed; and it warns
(``UserWarning``, one sentence each) when the image looks unlike the model's training
data. An estimated diameter may enlarge the image at most ``MAX_ESTIMATED_SCALE`` times.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cytolens.errors import InvalidImageError, InvalidModelError, InvalidParameterError
from cytolens.models.package import ModelPackage
from cytolens.nn.precision import autocast_for, check_precision
from cytolens.nn.predictor import flip_averaged, network_predictor
from cytolens.preprocess import PercentileNormalizer, check_image, is_constant, predict_tiled, rescale, resize_to
from cytolens.tasks.segmentation import SCHEMAS
from cytolens.tasks.segmentation.channels import declared_channels, declared_yxc
from cytolens.tasks.segmentation.object_filter import ObjectFilter, filter_maps
from cytolens.tasks.segmentation.size_model import SizeModel, style_of

#: rescaling by less than this relative amount is skipped (the network was trained with ±30 % zoom)
SCALE_TOLERANCE = 0.1
#: the resizing a model may apply to an image (target diameter / diameter is limited to this range)
MIN_SCALE, MAX_SCALE = 0.1, 10.0
#: the most an *estimated* diameter may enlarge an image (a diameter given by the user may enlarge it up to
#: MAX_SCALE). The bundled models' training images (DSB2018 train split) have median nucleus diameters of
#: 7.05 px and more, so training enlarged none more than 20 / 7.05 = 2.84x; an estimate that asks for more is
#: far more often wrong (whole cells, texture taken for tiny nuclei) than right, and the time grows with the
#: square of the scale (4.4x: 108 s for a 1-megapixel phase-contrast image). The largest estimated scale on
#: the 80 DSB2018 test images is 2.55 (first pass, nuclei_pixel_classes; 2.40 for nuclei), so none is capped.
MAX_ESTIMATED_SCALE = 3.0
#: foreground probabilities the certainty is counted with: pixels above LEANING are those the network leans
#: to call foreground, those at SURE or above it is sure of
LEANING, SURE = 0.25, 0.75
#: below this share of sure pixels among the leaning ones, the network is unsure of the image: on DSB2018
#: train images of every modality the share is 0.59-0.91 for nuclei (27 images) and 0.46-0.89 for nuclei_fast
#: (34), on frames of the CTC movies 0.73-0.90 (nuclei, gamma 0.67); on phase-contrast whole cells (Usiigaci)
#: and blurred noise 0.19-0.32 for nuclei and 0.27-0.31 for nuclei_fast
MIN_CERTAINTY = 0.4
#: above this share of the watershed's foreground removed by the object filter, the image looks unlike the
#: training data: on the same DSB2018 train images at most 0.14 (nuclei) and 0.32 (nuclei_fast); on
#: phase-contrast whole cells 0.77-0.99 (nuclei) and 0.53 (nuclei_fast)
MAX_FILTER_REJECTED = 0.5
#: where cytolens' own modules live: a warning is attributed to the first caller outside them
_PACKAGE_DIR = str(Path(__file__).parents[2])


@dataclass
class SegmentationInfo:
    """How one image was segmented and how well it suited the model.

    Attributes
    ----------
    diameter : float or None
        The object diameter (pixels) the scale was set from: estimated or given; None
        when no object was found to estimate it from.
    estimated : bool
        True when ``diameter`` was estimated from the image.
    scale : float
        The resizing applied to the image before the network (1.0 = none).
    n_objects : int
        Objects in the returned label image.
    certainty : float or None
        Share of the pixels the network leans to call foreground (probability above
        ``LEANING``) that it is sure of (``SURE`` or above); None when nothing leans to
        foreground or the model has no foreground output.
    filter_rejected : float or None
        Share of the watershed's foreground pixels the object filter removed; None when
        no filter ran.
    warnings : list of str
        The warnings this image raised (each also issued as a ``UserWarning``).
    """

    diameter: float | None
    estimated: bool
    scale: float
    n_objects: int = 0
    certainty: float | None = None
    filter_rejected: float | None = None
    warnings: list[str] = field(default_factory=list)


def _warn(message: str) -> None:
    """``warnings.warn(message, UserWarning)`` attributed to the first caller outside cytolens (the user's line)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


#: images up to this side are estimated whole; larger ones on crops (every DSB2018 image is estimated whole)
ESTIMATE_WHOLE_SIDE = 1536
#: side of the crops used to estimate the diameter of a large image: 512 since issue 31 (768 before). On synthetic
#: 2048² images the estimate lands as near the true median (1.000-1.061 of it, 768: 1.003-1.072) in 0.43-0.56x the
#: time, and the whole default call takes 0.78x as long (benchmarks/estimate_crops.py, segment_profile.py)
ESTIMATE_CROP = 512
#: how many crops (those with the most contrast) a large image's diameter is estimated on
ESTIMATE_CROPS = 4


def as_yxc(image: np.ndarray, *, allow_constant: bool = False, package: ModelPackage | None = None) -> np.ndarray:
    """Validate a 2D image and return it as ``(Y, X, C)`` with C in (1, 3), or with the C channels
    ``package`` declares (:mod:`.channels`)."""
    image = check_image(image, allow_constant=allow_constant)
    if package is not None and declared_channels(package.meta) is not None:
        return declared_yxc(package.meta, image)
    if image.ndim == 2:
        return image[..., None]
    if image.ndim == 3 and image.shape[2] in (1, 3):
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return image[..., :3]
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[2] > 4:
        raise InvalidImageError(
            f"image of shape {image.shape} looks channels-first or like a stack of {image.shape[0]} planes; "
            "give (Y, X) or (Y, X, C) (channels-first: numpy.moveaxis(image, 0, -1); a stack: segment each "
            "plane, or `cytolens track` for a movie)")
    raise InvalidImageError(
        f"expected a 2D image (Y, X) or (Y, X, C) with 1, 3 or 4 channels; got shape {image.shape}. "
        "For a stack, segment each plane; for other channel counts pick one channel (channel=, CLI --channel).")


class _TilePreparer:
    """Per-tile normalization with image-wide percentiles, an optional gamma, and gray → RGB
    (``rgb=False``: the channels as they are, for a model that declares its channels)."""

    def __init__(self, lo, hi, gamma: float = 1.0, normalizer: PercentileNormalizer | None = None,
                 rgb: bool = True) -> None:
        self.lo, self.hi, self.gamma, self.rgb = lo, hi, gamma, rgb
        self.normalizer = normalizer or PercentileNormalizer()

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        x = self.normalizer.apply(tile, self.lo, self.hi)
        if self.gamma != 1.0:  # sign-preserving, as the training augmentation applies it
            x = np.sign(x) * np.abs(x) ** np.float32(self.gamma)
        x = np.moveaxis(x, -1, 0)
        return np.ascontiguousarray(np.repeat(x, 3, axis=0) if x.shape[0] == 1 and self.rgb else x)

    def without_gamma(self) -> _TilePreparer:
        return _TilePreparer(self.lo, self.hi, normalizer=self.normalizer, rgb=self.rgb)


def has_dark_background(image: np.ndarray) -> bool:
    """True when most of a 2D image is darker than the middle of its intensity range (fluorescence-like).

    Agrees with the modality labels of all 670 DSB2018 stage1_train images.

    >>> has_dark_background(np.array([[0, 0, 0, 9]]))
    True
    """
    image_yxc = as_yxc(image)
    sample = PercentileNormalizer.sample(image_yxc)
    lo, hi = PercentileNormalizer().statistics(sample)  # a sample's own sample is itself: same percentiles
    return bool(np.median(sample.mean(axis=-1)) < (lo + hi) / 2)


def _check_gamma(gamma: float) -> None:
    if not (isinstance(gamma, numbers.Real) and np.isfinite(gamma) and 0.2 <= gamma <= 5.0):
        raise InvalidParameterError(f"gamma must be between 0.2 and 5, got {gamma}")


def check_intensity_range(intensity_range) -> tuple[float, float] | None:
    """``intensity_range`` as ``(low, high)`` floats, or None; an InvalidParameterError unless ``low < high``.

    >>> check_intensity_range([0, 255])
    (0.0, 255.0)
    >>> check_intensity_range((5, 5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: intensity_range must be (low, high) with low < high ..., got (5, 5)
    """
    if intensity_range is None:
        return None
    values = list(intensity_range) if isinstance(intensity_range, (tuple, list, np.ndarray)) else []
    if not (len(values) == 2 and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                                      for v in values) and values[0] < values[1]):
        raise InvalidParameterError("intensity_range must be (low, high) with low < high (the intensities mapped to 0 "
                                    f"and 1), got {intensity_range!r}")
    return float(values[0]), float(values[1])


def tile_preparer(package: ModelPackage, image_yxc: np.ndarray, gamma: float = 1.0,
                  intensity_range: tuple[float, float] | None = None) -> _TilePreparer:
    """The normalization a package's network expects, for one image.

    ``gamma`` is applied to the normalized intensities: below 1 it lifts the dim
    parts of an object towards its bright parts (the training augmentation draws
    gammas in exp(±0.4), so 0.67 to 1.5 stay within what the network has seen).
    ``intensity_range`` = ``(low, high)`` maps these intensities to 0 and 1 instead of the
    image's own percentiles (one normalization for all the blocks of a larger image).
    """
    _check_gamma(gamma)
    normalizer = PercentileNormalizer.from_meta(package.meta.get("normalization"))
    declared = declared_channels(package.meta) is not None  # each declared channel is normalized on its own
    given = check_intensity_range(intensity_range)
    if given is not None and declared:
        raise InvalidParameterError(f"intensity_range: {package.name} normalizes each of its declared channels on its "
                                    "own; one (low, high) range cannot stand for them: leave intensity_range out")
    lo, hi = given if given is not None else normalizer.statistics(image_yxc, per_channel=declared)
    return _TilePreparer(lo, hi, float(gamma), normalizer, rgb=not declared)


def predict_outputs(package: ModelPackage, image_yxc: np.ndarray, scale: float, prep: _TilePreparer,
                    tile_size: int = 512, overlap: int = 64, augment: bool = False) -> np.ndarray:
    """Raw network outputs ``(K, Y, X)`` at the image's own resolution, computed at ``scale``."""
    schema = SCHEMAS[package.meta["schema"]]
    divisor = package.size_divisor
    predict = network_predictor(package.inference_network)
    if augment:
        predict = flip_averaged(predict)
    if _applied(scale) == 1.0:
        return predict_tiled(predict, image_yxc, schema.OUTPUT_CHANNELS, tile_size, overlap, divisor, prepare=prep)
    scaled = rescale(image_yxc.astype(np.float32), scale, order=1)
    if min(scaled.shape[:2]) < 1:
        raise InvalidParameterError(f"rescaling by {scale:.3g} leaves no pixels; check the diameter")
    outputs = predict_tiled(predict, scaled, schema.OUTPUT_CHANNELS, tile_size, overlap, divisor, prepare=prep)
    del scaled
    return resize_to(outputs, image_yxc.shape[:2], order=1)


def postprocess_params(package: ModelPackage, overrides: dict) -> dict:
    """The package's post-processing settings updated by ``overrides`` (None = keep), each checked.

    >>> from cytolens.models import load
    >>> postprocess_params(load("nuclei"), {"min_size": 20})["min_size"]
    20
    >>> postprocess_params(load("nuclei"), {"foreground_threshold": 2})
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: foreground_threshold must be a number from 0 to 1, got 2
    """
    schema = SCHEMAS[package.meta["schema"]]
    known = set(inspect.signature(schema.postprocess).parameters) - {"outputs"}
    params = dict(package.meta.get("postprocess", {}))
    newer = set(params) - known
    if newer:  # a package from a newer cytolens: ignoring its settings would silently change results
        raise InvalidParameterError(f"model {package.name!r} has post-processing setting(s) {sorted(newer)} that "
                                    "this version of cytolens does not know; upgrade cytolens")
    unknown = set(overrides) - known
    if unknown:
        raise InvalidParameterError(
            f"unknown post-processing parameter(s) {sorted(unknown)}; this model takes {sorted(known)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name, value in overrides.items():
        _check_setting(name, value)
    return params | overrides


def _check_setting(name: str, value) -> None:
    """Raise InvalidParameterError for a post-processing value out of its range (fractions, sizes)."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if name.endswith("_threshold") or name in ("contact_weight", "marker_dynamic"):
        if not (number and 0 <= value <= 1):
            raise InvalidParameterError(f"{name} must be a number from 0 to 1, got {value!r}")
    elif name == "min_size":
        if not (number and value >= 0 and float(value).is_integer()):
            raise InvalidParameterError(f"min_size must be a whole number of pixels >= 0, got {value!r}")
    elif name == "smoothing":
        if not (number and value >= 0):
            raise InvalidParameterError(f"smoothing must be a number of pixels >= 0, got {value!r}")


def postprocess_outputs(package: ModelPackage, outputs: np.ndarray, scale: float, **overrides) -> np.ndarray:
    """Labels from outputs, using the package's defaults updated by ``overrides``."""
    schema = SCHEMAS[package.meta["schema"]]
    params = postprocess_params(package, overrides)
    # sizes in the package are in model pixels; the outputs are at the image's resolution
    if "min_size" in params:
        params["min_size"] = max(1, int(round(params["min_size"] / scale**2)))
    if params.get("smoothing", 0) > 0:
        params["smoothing"] = params["smoothing"] / scale
    return schema.postprocess(outputs, **params)


def _estimate_crops(image: np.ndarray) -> list[np.ndarray]:
    """The image itself, or for a large image its ``ESTIMATE_CROPS`` windows with the most contrast.

    Windows are picked by content, not by position: on a large, sparse image (a slide
    with nuclei in one region) fixed positions can all fall on empty background, and
    then no object is found and the whole image comes back empty.
    """
    height, width = image.shape[:2]
    if height <= ESTIMATE_WHOLE_SIDE and width <= ESTIMATE_WHOLE_SIDE:
        return [image]
    windows = [(y, x) for y in _window_starts(height) for x in _window_starts(width)]
    contrast = np.array([image[y : y + ESTIMATE_CROP, x : x + ESTIMATE_CROP].std() for y, x in windows])
    chosen = np.sort(np.argsort(-contrast, kind="stable")[:ESTIMATE_CROPS])  # in reading order
    return [image[y : y + ESTIMATE_CROP, x : x + ESTIMATE_CROP] for y, x in (windows[i] for i in chosen)]


def _window_starts(length: int) -> list[int]:
    """Starts of windows of side ``ESTIMATE_CROP`` that cover ``length`` pixels, the last one flush with the end."""
    if length <= ESTIMATE_CROP:
        return [0]
    count = -(-length // ESTIMATE_CROP)
    return np.linspace(0, length - ESTIMATE_CROP, count).round().astype(int).tolist()


def estimate_diameter(package: ModelPackage, image: np.ndarray, tile_size: int = 512, gamma: float = 1.0) -> float:
    image_yxc = as_yxc(image, package=package)
    return _estimate(package, image_yxc, tile_preparer(package, image_yxc, gamma), tile_size)[0]


def _estimate(package: ModelPackage, image_yxc: np.ndarray, prep: _TilePreparer, tile_size: int, overlap: int = 64,
              augment: bool = False, **postprocess) -> tuple[float, float, tuple | None]:
    """Estimate the median object diameter (pixels) of an image with the model itself.

    With a size model in the package (``size_model.json``), the network's style
    vector at the image's own scale predicts the diameter; the image is then
    segmented at the corrected scale and the median diameter of the objects found
    is returned (Cellpose's two-step estimate). Without one, the first guess is
    the image's own scale. Returns (diameter, scale used, labels when the whole
    image was segmented else None); diameter 0.0 when no object is found.
    """
    target = package.meta["scale"]["target_diameter"]
    crops = _estimate_crops(image_yxc)
    guess = target
    if "size_model" in package.extras:
        try:
            size_model = SizeModel(**package.extras["size_model"])
        except TypeError as exc:
            raise InvalidModelError(f"model {package.name!r} has a malformed size_model.json ({exc}); refit it with "
                                    "training/nuclei/fit_size_model.py") from None
        # the size model was fitted on styles of images normalized without a gamma
        plain = prep.without_gamma()
        styles = np.stack([style_of(package.inference_network, plain(crop)) for crop in crops])
        guess = float(np.median(size_model.predict(styles)))
    scale = float(np.clip(target / guess, MIN_SCALE, MAX_ESTIMATED_SCALE))
    areas = []
    for crop in crops:
        outputs = predict_outputs(package, crop, scale, prep, tile_size, overlap, augment)
        labels = postprocess_outputs(package, outputs, _applied(scale), **postprocess)
        areas.append(np.bincount(labels.ravel())[1:])
    areas = np.concatenate(areas)
    areas = areas[areas > 0]
    whole = (outputs, labels) if len(crops) == 1 and crops[0] is image_yxc else None
    if len(areas) == 0:
        return 0.0, scale, whole
    return float(np.median(2 * np.sqrt(areas / np.pi))), scale, whole


def _limited_scale(package: ModelPackage, diameter: float, estimated: bool) -> tuple[float, str | None]:
    """``target / diameter`` limited to the resizing allowed, and a warning when it was limited or looks wrong.

    A given diameter may resize by ``MIN_SCALE`` to ``MAX_SCALE``; an estimated one may
    enlarge by at most ``MAX_ESTIMATED_SCALE``, and one beyond the diameters the package's
    size model was fitted on (``diameter_range`` in ``size_model.json``) is flagged.

    >>> from cytolens.models import load
    >>> _limited_scale(load("nuclei"), 40.0, estimated=True)
    (0.5, None)
    >>> _limited_scale(load("nuclei"), 4.0, estimated=True)[0]
    3.0
    """
    target = package.meta["scale"]["target_diameter"]
    scale = target / diameter
    name = package.name
    if estimated and scale > MAX_ESTIMATED_SCALE:
        return MAX_ESTIMATED_SCALE, (
            f"the estimated diameter {diameter:.2g} px is below the {target / MAX_ESTIMATED_SCALE:.2g} px model "
            f"{name!r} accepts from an estimate, so the image was enlarged {MAX_ESTIMATED_SCALE:g}x instead of "
            f"{scale:.2g}x: if the objects really are that small give the diameter (--diameter, diameter= in "
            "Python), otherwise the image is unlike the model's training data and another model may suit it")
    limited = float(np.clip(scale, MIN_SCALE, MAX_SCALE))
    if limited != scale:
        which = "the estimated diameter" if estimated else "diameter"
        return limited, (f"{which} {diameter:.4g} px is outside what this model handles ({target / MAX_SCALE:g} to "
                         f"{target / MIN_SCALE:g} px): the image is resized by {limited:g} instead of {scale:.3g}, "
                         f"so its objects reach the network at {diameter * limited:.3g} px, not {target:g}")
    fitted = package.extras.get("size_model", {}).get("diameter_range")
    if estimated and fitted and not fitted[0] <= diameter <= fitted[1]:
        return scale, (f"the estimated diameter {diameter:.3g} px is outside the {fitted[0]:.2g}-{fitted[1]:.3g} px "
                       f"the size model of {name!r} was fitted on, so it may be wrong: give the diameter "
                       "(--diameter, diameter= in Python) or try another model")
    return scale, None


def _applied(scale: float) -> float:
    """The scale actually applied to the image (small corrections are skipped)."""
    return 1.0 if abs(scale - 1.0) <= SCALE_TOLERANCE else scale


def _require_segmentation(package: ModelPackage) -> None:
    if package.meta.get("task") != "segmentation":
        raise InvalidParameterError(f"model {package.name!r} is a {package.meta.get('task')} model, not segmentation")
    if package.meta.get("schema") not in SCHEMAS:
        raise InvalidModelError(f"model {package.name!r} has schema {package.meta.get('schema')!r}, which this "
                                f"cytolens does not know (it knows {', '.join(SCHEMAS)}); upgrade cytolens")


def segment_image(package: ModelPackage, image: np.ndarray, *, diameter: float | None = None,
                  tile_size: int = 512, overlap: int = 64, augment: bool = False, gamma: float = 1.0,
                  filter_objects: bool = True, precision: str = "float32",
                  intensity_range: tuple[float, float] | None = None, **postprocess) -> np.ndarray:
    """Segment one 2D image with a loaded package; returns ``(Y, X)`` uint32 labels (0 = background).

    A constant image (all pixels equal: an empty well) gives no objects, with a warning.

    With ``filter_objects`` and an object filter in the package (``object_filter.json``),
    objects its classifier judges spurious are dropped (see :mod:`.object_filter`).
    ``precision="bfloat16"`` runs the network in mixed precision (see :mod:`cytolens.nn.precision`).
    ``intensity_range=(low, high)`` normalizes with these intensities as 0 and 1 instead of the
    image's own percentiles (the blocks of a larger image, normalized once for all of them).
    :func:`segment_image_with_info` also says how well the image suited the model.
    """
    return segment_image_with_info(package, image, diameter=diameter, tile_size=tile_size, overlap=overlap,
                                   augment=augment, gamma=gamma, filter_objects=filter_objects,
                                   precision=precision, intensity_range=intensity_range, **postprocess)[0]


def segment_image_with_info(package: ModelPackage, image: np.ndarray, *, diameter: float | None = None,
                            tile_size: int = 512, overlap: int = 64, augment: bool = False, gamma: float = 1.0,
                            filter_objects: bool = True, precision: str = "float32",
                            intensity_range: tuple[float, float] | None = None,
                            **postprocess) -> tuple[np.ndarray, SegmentationInfo]:
    """:func:`segment_image`'s labels and a :class:`SegmentationInfo` on how the image suited the model.

    Warns (``UserWarning``, also listed in ``info.warnings``) when the diameter had to be
    limited or looks wrong, when the network is unsure of the image (``certainty`` below
    ``MIN_CERTAINTY``) and when the object filter removed most of the foreground
    (``filter_rejected`` above ``MAX_FILTER_REJECTED``).
    """
    _require_segmentation(package)
    autocast = autocast_for(precision, next(package.network.parameters()).device)
    image_yxc = as_yxc(image, allow_constant=True, package=package)
    if is_constant(image_yxc):  # an empty well: no objects, not an error (a plate run goes on)
        check_settings(package, diameter=diameter, tile_size=tile_size, overlap=overlap, gamma=gamma,
                       precision=precision, intensity_range=intensity_range, **postprocess)
        message = "image is constant (all pixels equal): no objects"
        _warn(message)
        return np.zeros(image_yxc.shape[:2], dtype=np.uint32), SegmentationInfo(
            diameter=diameter, estimated=diameter is None, scale=1.0, n_objects=0, warnings=[message])
    prep = tile_preparer(package, image_yxc, gamma, intensity_range)
    with autocast():
        outputs, labels, info = _segment_outputs(package, image_yxc, prep, diameter=diameter, tile_size=tile_size,
                                                 overlap=overlap, augment=augment, **postprocess)
    if outputs is not None:
        info.certainty = foreground_certainty(package, outputs)
        if info.certainty is not None and info.certainty < MIN_CERTAINTY:
            info.warnings.append(
                f"model {package.name!r} is unsure of this image (sure of {info.certainty:.0%} of the pixels it "
                f"leans to call foreground, under {MIN_CERTAINTY:.0%}), which looks unlike its training data: "
                "check the result, and give the diameter (--diameter, diameter= in Python) or try another model")
    if outputs is not None and filter_objects and "object_filter" in package.extras:
        object_filter = ObjectFilter.from_dict(package.extras["object_filter"])
        found = np.count_nonzero(labels)
        maps = filter_maps(package.meta["schema"], outputs)
        labels = object_filter.apply(labels, maps, image_yxc, prep.lo, prep.hi, info.scale)
        info.filter_rejected = float(1 - np.count_nonzero(labels) / found) if found else 0.0
        if info.filter_rejected > MAX_FILTER_REJECTED:
            info.warnings.append(
                f"the object filter of model {package.name!r} removed {info.filter_rejected:.0%} of the foreground "
                "the watershed found, so the image looks unlike the model's training data: check the result "
                "(--keep-all-objects, filter_objects=False in Python, keeps them), and give the diameter "
                "(--diameter, diameter= in Python) or try another model")
    info.n_objects = int(labels.max())
    for message in info.warnings:
        _warn(message)
    return labels, info


def foreground_certainty(package: ModelPackage, outputs: np.ndarray) -> float | None:
    """Share of the pixels the network leans to call foreground (probability > ``LEANING``) it is sure of (>= ``SURE``).

    None when no pixel leans to foreground, or when the schema has no foreground output
    (pixel classes).

    >>> from cytolens.models import load
    >>> logits = np.array([[[-5.0, 0.0, 3.0, 4.0]]] * 3)  # probabilities 0.007, 0.5, 0.95, 0.98
    >>> foreground_certainty(load("nuclei"), logits)
    0.6666666666666666
    """
    if 0 not in getattr(SCHEMAS[package.meta["schema"]], "BINARY_TARGETS", ()):
        return None
    logits = outputs[0]  # compared as logits: no full-size probability map
    leaning = np.count_nonzero(logits > math.log(LEANING / (1 - LEANING)))
    if leaning == 0:
        return None
    return float(np.count_nonzero(logits >= math.log(SURE / (1 - SURE))) / leaning)


def check_settings(package: ModelPackage, *, diameter: float | None = None, tile_size: int = 512, overlap: int = 64,
                   gamma: float = 1.0, precision: str = "float32", intensity_range: tuple[float, float] | None = None,
                   **postprocess) -> None:
    """Raise a clear error for any bad segmentation setting, before an image is read or a network runs.

    >>> from cytolens.models import load
    >>> check_settings(load("nuclei"), diameter=-3)
    Traceback (most recent call last):
    cytolens.errors.InvalidParameterError: diameter must be a positive number of pixels, got -3
    """
    _require_segmentation(package)
    if diameter is not None and not (isinstance(diameter, numbers.Real) and not isinstance(diameter, bool)
                                     and np.isfinite(diameter) and diameter > 0):
        raise InvalidParameterError(f"diameter must be a positive number of pixels, got {diameter!r}")
    postprocess_params(package, postprocess)
    if tile_size < 64 or overlap < 0 or overlap * 2 >= tile_size:
        raise InvalidParameterError(f"need tile_size >= 64 and 0 <= overlap < tile_size/2; got {tile_size}, {overlap}")
    _check_gamma(gamma)
    check_precision(precision)
    check_intensity_range(intensity_range)


def segment_outputs(package: ModelPackage, image_yxc: np.ndarray, prep: _TilePreparer, *, diameter: float | None = None,
                    tile_size: int = 512, overlap: int = 64, augment: bool = False,
                    **postprocess) -> tuple[np.ndarray | None, np.ndarray, float]:
    """The watershed's labels with the network outputs they came from and the scale applied.

    ``segment_image`` without the object filter; returns ``(outputs, labels, scale)``,
    outputs None when no object was found while estimating the diameter.
    """
    outputs, labels, info = _segment_outputs(package, image_yxc, prep, diameter=diameter, tile_size=tile_size,
                                             overlap=overlap, augment=augment, **postprocess)
    for message in info.warnings:
        _warn(message)
    return outputs, labels, info.scale


def _segment_outputs(package: ModelPackage, image_yxc: np.ndarray, prep: _TilePreparer, *,
                     diameter: float | None = None, tile_size: int = 512, overlap: int = 64, augment: bool = False,
                     **postprocess) -> tuple[np.ndarray | None, np.ndarray, SegmentationInfo]:
    """:func:`segment_outputs` with a :class:`SegmentationInfo` (diameter, scale, warnings not yet issued)."""
    check_settings(package, diameter=diameter, tile_size=tile_size, overlap=overlap, **postprocess)
    divisor = package.size_divisor
    tile_size = -(-tile_size // divisor) * divisor
    if diameter is None and (package.meta.get("scale") or {}).get("diameter"):
        # a model fine-tuned on one lab's images knows their objects' size (as Cellpose's diam_labels); its
        # network has moved away from the style features its copied size model was fitted on
        diameter = float(package.meta["scale"]["diameter"])
    estimated = diameter is None
    if estimated:
        diameter, used_scale, whole = _estimate(package, image_yxc, prep, tile_size, overlap, augment, **postprocess)
        if diameter == 0.0:
            return None, np.zeros(image_yxc.shape[:2], dtype=np.uint32), SegmentationInfo(None, True, 1.0)
    scale, warning = _limited_scale(package, diameter, estimated)
    info = SegmentationInfo(diameter, estimated, _applied(scale), warnings=[warning] if warning else [])
    if estimated and whole is not None and abs(_applied(scale) / _applied(used_scale) - 1) <= SCALE_TOLERANCE:
        info.scale = _applied(used_scale)
        return (*whole, info)
    outputs = predict_outputs(package, image_yxc, info.scale, prep, tile_size, overlap, augment)
    return outputs, postprocess_outputs(package, outputs, info.scale, **postprocess), info
