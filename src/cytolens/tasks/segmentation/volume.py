"""Segment ``(Z, Y, X)`` volumes, natively with a 3D network or by 2D planes stitched through Z.

Two methods, one entry point (:func:`segment_volume`, ``cytolens.segment(..., axes="ZYX")``):

``"native"`` (a package whose U-Net has ``dims = 3``)
    The volume is resized so its voxels are cubes at the model's scale (Z by
    ``anisotropy × scale``, Y and X by ``scale``), run through the network in
    overlapping 3D tiles blended with ramps (:func:`cytolens.preprocess.predict_tiled`;
    memory is one tile plus the output maps), resized back, and post-processed in 3D by
    the package's schema (the watershed schemas work in any dimension).
``"slices"`` (any 2D segmentation package; Cellpose's ``stitch_threshold`` way)
    Each Z plane is segmented with the 2D model at one diameter for the whole volume
    (given, or the median of the estimates on the five planes with the most contrast), then objects are
    linked plane to plane by overlap (:func:`stitch_planes`); an object whose cross-section
    narrows to a neck between two wider parts (two nuclei stacked in Z) is cut there
    (:func:`split_at_necks`).

``"auto"`` picks the method the package can run: native for a 3D network, slices for
a 2D one. ``anisotropy`` is the Z step divided by the XY pixel size (2 = planes twice
as far apart as pixels); it sets the Z resizing of the native method and the spacing of
:func:`cytolens.measure` in 3D.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from scipy import ndimage as ndi

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.models.package import ModelPackage
from cytolens.nn.predictor import network_predictor
from cytolens.nn.registry import spatial_dims
from cytolens.preprocess import PercentileNormalizer, predict_tiled, rescale, resize_to
from cytolens.tasks.segmentation import SCHEMAS
from cytolens.tasks.segmentation._common import relabel_sequential
from cytolens.tasks.segmentation.channels import check_channel_count, declared_channels
from cytolens.tasks.segmentation.inference import (
    _limited_scale,
    _require_segmentation,
    _warn,
    check_settings,
    estimate_diameter,
    postprocess_params,
    segment_image,
)
from cytolens.tasks.segmentation.training import median_sphere_diameter

METHODS = ("auto", "native", "slices")
#: default tile of the native method, (Z, Y, X) voxels at the model's scale: ~10 MB of input per tile
TILE_3D = (32, 128, 128)
#: default overlap of neighbouring 3D tiles (voxels at the model's scale)
OVERLAP_3D = (8, 24, 24)
#: without a diameter the native method segments twice when its first pass's objects are off the model's size by more
#: than this fraction (10 %, the correction a 2D estimate also skips)
NATIVE_RESCALE_TOLERANCE = 0.1
#: ... and enlarges the volume at most this much for its second pass (8x the voxels; a 2D estimate may enlarge 3x,
#: 9x the pixels): tiny first-pass objects are more often specks than small nuclei (the GoNuclear crop: 20,000
#: specks in 10 minutes at 3x)
MAX_NATIVE_ESTIMATED_SCALE = 2.0
#: fewest planes a volume needs for the slices method (a single plane is a 2D image)
MIN_PLANES_SLICES = 2


def check_anisotropy(anisotropy) -> float:
    """``anisotropy`` as a float; InvalidParameterError unless it is a finite number > 0."""
    if isinstance(anisotropy, bool) or not isinstance(anisotropy, numbers.Real) or not math.isfinite(anisotropy) \
            or anisotropy <= 0:
        raise InvalidParameterError(f"anisotropy (Z step / XY pixel size) must be a positive number, got "
                                    f"{anisotropy!r}")
    return float(anisotropy)


def model_dims(package: ModelPackage) -> int:
    """2 for a package whose network takes images, 3 for one that takes volumes."""
    return int(package.meta["architecture"]["args"].get("dims", spatial_dims(package.network)))


def resolve_method(package: ModelPackage, method: str) -> str:
    """``"native"`` or ``"slices"``: what ``method`` means for this package (errors for impossible pairs)."""
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    dims = model_dims(package)
    if method == "auto":
        return "native" if dims == 3 else "slices"
    if method == "native" and dims != 3:
        raise InvalidParameterError(f"model {package.name!r} is a 2D model: it segments volumes plane by plane "
                                    "(method 'slices'), not natively; a native 3D model has a U-Net with dims 3")
    if method == "slices" and dims != 2:
        raise InvalidParameterError(f"model {package.name!r} is a 3D model; it cannot segment single planes")
    return method


def min_planes(package: ModelPackage, anisotropy: float, method: str = "auto") -> int:
    """Fewest Z planes a volume needs: for a 3D network, its size divisor's worth of planes once
    resized by ``anisotropy`` (the deepest level must keep a plane); 2 for the slices method."""
    if resolve_method(package, method) == "slices":
        return MIN_PLANES_SLICES
    divisor = package.size_divisor
    return max(MIN_PLANES_SLICES, math.ceil(divisor / anisotropy))


def model_channels(package: ModelPackage) -> int:
    """How many channels the package's network takes."""
    return int(package.meta["architecture"]["args"]["in_channels"])


def check_volume_shape(package: ModelPackage, shape: tuple[int, ...], anisotropy: float = 1.0,
                       method: str = "auto", where: str = "") -> None:
    """Raise a one-line error when a ``(Z, Y, X[, C])`` shape cannot be segmented by ``package``.

    Called on the file's shape before anything is computed or written: a 2D image given as
    a volume, too few planes for the model, a channel count the model does not take.
    """
    anisotropy = check_anisotropy(anisotropy)
    shape = tuple(int(n) for n in shape)
    if len(shape) < 3 or (len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 8 * shape[-1]):
        raise InvalidImageError(f"{where}image of shape {shape} is 2D (Y, X[, C]), not a (Z, Y, X) volume; drop "
                                "--axes ZYX (axes='ZYX' in Python) to segment it as an image")
    if len(shape) > 4:
        raise InvalidImageError(f"{where}expected a volume (Z, Y, X) or (Z, Y, X, C), got shape {shape}")
    channels = shape[3] if len(shape) == 4 else 1
    wanted = model_channels(package)
    if declared_channels(package.meta) is not None:  # a model that declares its channels takes exactly those
        check_channel_count(package.meta, channels, f"{where}the volume")
    elif channels not in (1, wanted) and not (channels == 4 and wanted == 3):
        raise InvalidImageError(f"{where}volume has {channels} channels; model {package.name!r} takes {wanted} "
                                "(or 1, repeated): pick one channel (--channel, channel= in Python)")
    needed = min_planes(package, anisotropy, method)
    if shape[0] < needed:
        raise InvalidImageError(f"{where}volume has {shape[0]} Z plane(s); model {package.name!r} needs at least "
                                f"{needed} at anisotropy {anisotropy:g}")


def _as_zyxc(volume: np.ndarray, rgb: bool = True) -> np.ndarray:
    volume = np.asarray(volume)
    if not (np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)
            or volume.dtype == bool):
        raise InvalidImageError(f"volume must hold numbers, got dtype {volume.dtype}")
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.shape[-1] == 4 and rgb:  # alpha dropped (not for a model that declares 4 channels)
        volume = volume[..., :3]
    if not np.isfinite(volume).all():
        raise InvalidImageError("volume holds NaN or infinite values")
    return volume


def segment_volume(package: ModelPackage, volume: np.ndarray, *, anisotropy: float = 1.0, method: str = "auto",
                   diameter: float | None = None, tile_size: int | tuple[int, int, int] | None = None,
                   overlap: int | tuple[int, int, int] | None = None, stitch_threshold: float = 0.25,
                   filter_objects: bool = True, **postprocess) -> np.ndarray:
    """Segment a volume into a ``(Z, Y, X)`` uint32 label volume (0 = background, objects 1..N).

    Parameters
    ----------
    package : ModelPackage
        A segmentation package: 3D (native) or 2D (slices).
    volume : ndarray, shape (Z, Y, X) or (Z, Y, X, C)
        Any numeric dtype; C = 1 or the model's channel count.
    anisotropy : float
        Z step / XY pixel size (> 0).
    method : {"auto", "native", "slices"}
        See the module docstring.
    diameter : float, optional
        Object diameter in XY pixels. Native: the volume is resized by
        ``target_diameter / diameter``; None segments it at the model's own scale first and,
        when the objects found there have a median equivalent-sphere diameter more than 10 %
        off the model's, segments it again at that size (enlarging at most 2x, with a warning). Slices: None
        estimates it as the median of the estimates on several planes
        (:func:`estimate_volume_diameter`).
    tile_size, overlap : int or (int, int, int), optional
        Native: 3D tile and overlap at the model's scale (default :data:`TILE_3D`,
        :data:`OVERLAP_3D`). Slices: the 2D tile side and overlap (default 512, 64).
    stitch_threshold : float
        Slices: the IoU at or above which objects of neighbouring planes are one object.
    filter_objects : bool
        Slices: apply the 2D model's object filter to each plane (when it has one).
    **postprocess
        The schema's post-processing overrides (``min_size`` in the model's voxels).

    Examples
    --------
    >>> from cytolens.models import load
    >>> from cytolens.data.synthetic3d import synthetic_nuclei_3d
    >>> volume, truth = synthetic_nuclei_3d((8, 64, 64), n_nuclei=4, anisotropy=2, seed=1)
    >>> labels = segment_volume(load("nuclei_fast"), volume, anisotropy=2, diameter=19)
    >>> labels.shape, int(labels.max()) == int(truth.max())
    ((8, 64, 64), True)
    """
    _require_segmentation(package)
    anisotropy = check_anisotropy(anisotropy)
    method = resolve_method(package, method)
    if not 0 < stitch_threshold <= 1:
        raise InvalidParameterError(f"stitch_threshold must be in (0, 1], got {stitch_threshold!r}")
    check_volume_shape(package, np.shape(volume), anisotropy, method)
    check_settings(package, diameter=diameter, **postprocess)
    volume = _as_zyxc(volume, rgb=declared_channels(package.meta) is None)
    if method == "slices":
        return _segment_slices(package, volume, diameter, tile_size or 512, overlap if overlap is not None else 64,
                               stitch_threshold, filter_objects, postprocess)
    return _segment_native(package, volume, anisotropy, diameter, tile_size or TILE_3D,
                           overlap if overlap is not None else OVERLAP_3D, postprocess)


def _segment_slices(package, volume, diameter, tile_size, overlap, stitch_threshold, filter_objects,
                    postprocess) -> np.ndarray:
    planes = volume if volume.shape[-1] > 1 else volume[..., 0]
    if diameter is None:
        diameter = estimate_volume_diameter(package, planes, tile_size)
        if diameter == 0.0:
            return np.zeros(volume.shape[:3], np.uint32)
        # the planes are segmented at this diameter as if given: an estimate may enlarge them no more than a 2D
        # image's estimate may (MAX_ESTIMATED_SCALE), with the same warning
        scale, warning = _limited_scale(package, diameter, estimated=True)
        if warning:
            _warn(warning)
        diameter = package.meta["scale"]["target_diameter"] / scale
    labels = np.zeros(volume.shape[:3], np.uint32)
    seen: dict[str, int] = {}
    for z, plane in enumerate(planes):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels[z] = segment_image(package, plane, diameter=diameter, tile_size=tile_size, overlap=overlap,
                                      filter_objects=filter_objects, **postprocess)
        for warning in caught:
            seen[str(warning.message)] = seen.get(str(warning.message), 0) + 1
    for message, count in seen.items():  # once per kind, with the plane count
        _warn(f"{message} ({count} of {len(planes)} planes)")
    return split_at_necks(stitch_planes(labels, stitch_threshold))


#: how many planes the diameter of a volume is estimated on (slices method)
ESTIMATE_PLANES = 5


def estimate_planes(planes: np.ndarray, count: int = ESTIMATE_PLANES) -> list[int]:
    """The planes a volume's diameter is estimated on: the ``count`` planes with the most contrast (standard
    deviation), in Z order; constant planes never.

    >>> volume = np.zeros((10, 4, 4)); volume[2:9, 0, 0] = 1; volume[[3, 5, 6], 1, 1] = 2
    >>> estimate_planes(volume, 3)
    [3, 5, 6]
    >>> estimate_planes(volume[:4], 3)
    [2, 3]
    """
    contrast = np.array([float(np.std(plane)) for plane in planes])
    ranked = [int(z) for z in np.argsort(-contrast, kind="stable")[:count] if contrast[z] > 0]
    return sorted(ranked)


def estimate_volume_diameter(package: ModelPackage, planes: np.ndarray, tile_size: int = 512,
                             count: int = ESTIMATE_PLANES) -> float:
    """The object diameter (XY pixels) of a volume for the slices method: the median of the 2D estimates
    (:func:`~cytolens.tasks.segmentation.inference.estimate_diameter`) on :func:`estimate_planes`, leaving out
    planes where no object was found; 0.0 when none was found on any.

    One plane is not enough: the most contrasted one can hold noise or a structure the 2D model takes for
    tiny objects (an estimate of 0 or 1-2 px, then thousands of specks on every plane); the median of the
    planes with the most content is robust to a minority of such planes. Planes with little content (the
    ends of a specimen, where the nuclei show only their small caps) are not used: five planes spread
    evenly through the specimen were tried first and segmented the QCANet and GoNuclear volumes into
    thousands of specks (issue 27 notes, session 22). A constant volume gives 0.0.
    """
    estimates = [estimate_diameter(package, planes[z], tile_size) for z in estimate_planes(planes, count)]
    found = [d for d in estimates if d > 0]
    return float(np.median(found)) if found else 0.0


def stitch_planes(labels: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Link the 2D objects of consecutive planes into 3D objects by overlap.

    ``labels`` is ``(Z, Y, X)`` with each plane numbered on its own. Plane by plane, each
    object of plane z takes the id of the object of plane z-1 it overlaps most, when
    their IoU is at least ``threshold``; pairs are matched one to one, the highest IoU
    first, so two objects of one plane never merge through a shared neighbour. An object
    without such a partner starts a new 3D object. Returns ``(Z, Y, X)`` uint32, ids 1..N.

    Examples
    --------
    >>> planes = np.zeros((3, 1, 6), int)
    >>> planes[0, 0, :3] = 1; planes[1, 0, :3] = 4; planes[1, 0, 4:] = 2; planes[2, 0, 4:] = 7
    >>> stitch_planes(planes)[:, 0].tolist()
    [[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 2, 2], [0, 0, 0, 0, 2, 2]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidImageError(f"stitch_planes takes integer labels (Z, Y, X), got {labels.dtype} {labels.shape}")
    out = np.zeros(labels.shape, np.uint32)
    next_id = 1
    for z in range(labels.shape[0]):
        plane = labels[z].astype(np.int64)
        ids = np.unique(plane[plane > 0])
        mapping = {}
        if z > 0 and ids.size and out[z - 1].any():
            previous = out[z - 1].astype(np.int64)
            for current_id, previous_id in _matches(plane, previous, threshold):
                mapping[current_id] = previous_id
        for current_id in ids:
            if current_id not in mapping:
                mapping[current_id] = next_id
                next_id += 1
        lookup = np.zeros(int(plane.max()) + 1, np.uint32)
        for current_id, new_id in mapping.items():
            lookup[current_id] = new_id
        out[z] = lookup[plane]
    return relabel_sequential(out)


#: a stitched object is cut at a plane whose area is below this share of the largest areas above and below it;
#: chosen on synthetic volumes seeds 0-1 (nuclei_fast, diameter 19; AP@0.5 0.69 -> 0.88 and 0.67 -> 0.67, best of
#: 0.5-0.8), not on the benchmark's seeds 100-102
NECK_RATIO = 0.8


def split_at_necks(labels: np.ndarray, ratio: float = NECK_RATIO) -> np.ndarray:
    """Cut each 3D object of stitched planes where its cross-section narrows to a neck.

    Two touching nuclei stacked in Z overlap plane to plane, so :func:`stitch_planes` links
    them into one object; their cross-section grows, shrinks where they meet and grows
    again. An object is cut at the plane of smallest area between two planes whose areas
    are both above ``area / ratio`` (repeatedly, so a stack of three is cut twice); the
    planes from the neck on get a new id. Returns ``(Z, Y, X)`` uint32, ids 1..N.

    >>> stack = np.zeros((7, 1, 10), int)
    >>> for z, width in enumerate([4, 8, 10, 3, 10, 8, 4]): stack[z, 0, :width] = 1
    >>> split_at_necks(stack)[:, 0, 0].tolist()
    [1, 1, 1, 2, 2, 2, 2]
    """
    labels = np.array(labels, dtype=np.uint32, copy=True)
    next_id = int(labels.max()) + 1
    pending = [index for index, box in enumerate(ndi.find_objects(labels), start=1) if box is not None]
    while pending:
        index = pending.pop()
        box = ndi.find_objects((labels == index).astype(np.uint8))[0]
        mask = labels[box] == index
        areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
        best = None
        for z in range(1, len(areas) - 1):
            above, below = areas[:z].max(), areas[z + 1:].max()
            if areas[z] < ratio * min(above, below) and (best is None or areas[z] < areas[best]):
                best = z
        if best is None:
            continue
        lower = labels[box][best:]
        lower[mask[best:]] = next_id
        pending += [index, next_id]
        next_id += 1
    return relabel_sequential(labels)


def _matches(plane: np.ndarray, previous: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one ``(id in plane, id in previous)`` pairs with IoU >= threshold, greedy by IoU."""
    both = (plane > 0) & (previous > 0)
    pairs, overlap = np.unique(np.stack([plane[both], previous[both]]), axis=1, return_counts=True)
    if not overlap.size:
        return []
    area_now = np.bincount(plane.ravel())
    area_before = np.bincount(previous.ravel())
    iou = overlap / (area_now[pairs[0]] + area_before[pairs[1]] - overlap)
    taken_now, taken_before, matched = set(), set(), []
    for index in np.argsort(-iou, kind="stable"):
        if iou[index] < threshold:
            break
        now, before = int(pairs[0, index]), int(pairs[1, index])
        if now not in taken_now and before not in taken_before:
            taken_now.add(now)
            taken_before.add(before)
            matched.append((now, before))
    return matched


class _VolumePreparer:
    """Per-tile normalization with volume-wide percentiles, channels first, gray repeated to the model's channels."""

    def __init__(self, lo: float, hi: float, normalizer: PercentileNormalizer, channels: int) -> None:
        self.lo, self.hi, self.normalizer, self.channels = lo, hi, normalizer, channels

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        x = np.moveaxis(self.normalizer.apply(tile, self.lo, self.hi), -1, 0)
        if x.shape[0] == 1 and self.channels > 1:
            x = np.repeat(x, self.channels, axis=0)
        return np.ascontiguousarray(x, dtype=np.float32)


def volume_outputs(predict, volume_zyxc: np.ndarray, out_channels: int, zoom: tuple[float, float, float],
                   prepare, tile_size, overlap, divisor: int) -> np.ndarray:
    """Network outputs ``(K, Z, Y, X)`` of a volume at its own voxel grid, computed tiled at ``zoom``.

    The functional core of the native method: ``predict`` maps a ``(C, z, y, x)`` tile to
    ``(K, z, y, x)``; the volume is resized by ``zoom`` (Z, Y, X) first and the outputs
    back after, so memory holds the resized volume, one tile and the output maps.
    """
    scaled = volume_zyxc
    if any(abs(f - 1) > 1e-6 for f in zoom):
        scaled = rescale(volume_zyxc.astype(np.float32), zoom, order=1, spatial_ndim=3)
    outputs = predict_tiled(predict, scaled, out_channels, tile_size, overlap, divisor, prepare=prepare,
                            spatial_ndim=3)
    return resize_to(outputs, volume_zyxc.shape[:3], order=1)


def _segment_native(package, volume, anisotropy, diameter, tile_size, overlap, postprocess) -> np.ndarray:
    outputs, zoom = native_outputs(package, volume, anisotropy, diameter, tile_size, overlap)
    labels = native_postprocess(package, outputs, zoom, **postprocess)
    if diameter is not None:
        return labels
    # No diameter: the first pass took the volume to be at the model's scale. Its objects' median size says
    # how far off that was; a second pass at that size (as a 2D model without a size model estimates).
    estimate = median_sphere_diameter(labels, anisotropy)
    target = package.meta["scale"]["target_diameter"]
    if estimate <= 0 or abs(estimate / target - 1) <= NATIVE_RESCALE_TOLERANCE:
        return labels
    if target / estimate > MAX_NATIVE_ESTIMATED_SCALE:
        _warn(f"the objects {package.name!r} found at its own scale are {estimate:.2g} px across, under "
              f"1/{MAX_NATIVE_ESTIMATED_SCALE:g} of its {target:g} px, so the volume was enlarged "
              f"{MAX_NATIVE_ESTIMATED_SCALE:g}x, not {target / estimate:.2g}x: if the nuclei really are that small "
              "give the diameter (--diameter, diameter= in Python); specks or noise also look like tiny objects")
        estimate = target / MAX_NATIVE_ESTIMATED_SCALE
    scale, warning = _limited_scale(package, estimate, estimated=True)
    if warning:
        _warn(warning)
    outputs, zoom = native_outputs(package, volume, anisotropy, target / scale, tile_size, overlap)
    return native_postprocess(package, outputs, zoom, **postprocess)


def native_outputs(package: ModelPackage, volume_zyxc: np.ndarray, anisotropy: float, diameter: float | None,
                   tile_size=TILE_3D, overlap=OVERLAP_3D) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The 3D network's outputs ``(K, Z, Y, X)`` for a ``(Z, Y, X, C)`` volume at its own voxel grid, and the
    zoom (Z, Y, X) they were computed at (the native method before post-processing; threshold searches
    post-process one set of outputs many times)."""
    schema = SCHEMAS[package.meta["schema"]]
    scale = 1.0 if diameter is None else package.meta["scale"]["target_diameter"] / diameter
    zoom = (anisotropy * scale, scale, scale)
    divisor = package.size_divisor
    tiles = tuple(-(-t // divisor) * divisor for t in np.broadcast_to(tile_size, 3))
    normalizer = PercentileNormalizer.from_meta(package.meta.get("normalization"))
    lo, hi = normalizer.statistics(volume_zyxc, spatial_ndim=3,
                                   per_channel=declared_channels(package.meta) is not None)
    prepare = _VolumePreparer(lo, hi, normalizer, model_channels(package))
    predict = network_predictor(package.inference_network)
    outputs = volume_outputs(predict, volume_zyxc, schema.OUTPUT_CHANNELS, zoom, prepare, tiles,
                             tuple(np.broadcast_to(overlap, 3)), divisor)
    return outputs, zoom


def native_postprocess(package: ModelPackage, outputs: np.ndarray, zoom: tuple[float, float, float],
                       **postprocess) -> np.ndarray:
    """Labels from :func:`native_outputs`: the package's post-processing defaults updated by ``postprocess``,
    sizes in the model's voxels converted to this volume's."""
    params = postprocess_params(package, postprocess)
    if "min_size" in params:  # voxels at the model's scale → voxels of this volume
        params["min_size"] = max(1, round(params["min_size"] / (zoom[0] * zoom[1] * zoom[2])))
    if params.get("smoothing", 0) > 0:
        params["smoothing"] = tuple(params["smoothing"] / f for f in zoom)
    return SCHEMAS[package.meta["schema"]].postprocess(outputs, **params)


__all__ = ["METHODS", "check_anisotropy", "check_volume_shape", "estimate_volume_diameter", "native_outputs",
           "native_postprocess", "segment_volume", "split_at_necks", "stitch_planes", "volume_outputs"]
