"""Training data, losses and validation for the instance-segmentation schemas.

The segmentation task (:mod:`.task`) hands these to the generic run
(:func:`cytolens.train.fitting.fit_model`). Images are brought to the model's scale once
(median object diameter → ``target_diameter``), targets are computed once at that
scale, and each batch takes random crops with flips, 90° rotations, a random
zoom and intensity jitter (:class:`cytolens.train.sampler.CropSampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import relabel_sequential

from cytolens.errors import InvalidImageError, InvalidParameterError
from cytolens.measure import DENSE_ID_LIMIT
from cytolens.metrics.segmentation import match
from cytolens.nn.predictor import network_predictor
from cytolens.preprocess import PercentileNormalizer, predict_tiled, rescale, to_rgb
from cytolens.tasks.segmentation import SCHEMAS, flow_field, pixel_classes
from cytolens.tasks.segmentation.channels import pick_channels
from cytolens.train.sampler import CropSampler, TargetKind
from cytolens.train.task import PreparedData


def model_input(image: np.ndarray, normalization: tuple[float, float] = (1.0, 99.8),
                channels: Sequence[int] | None = None, where: str = "the image") -> np.ndarray:
    """``(Y, X[, C])`` image → ``(3, Y, X)`` float32: RGB, normalized as inference normalizes it.

    The same :class:`~cytolens.preprocess.PercentileNormalizer` (recorded in the package) is
    used by segmentation at inference, so the network sees the same numbers either way.
    With ``channels`` (a model that declares its channels, :mod:`.channels`): those channels
    of the image, ``(len(channels), Y, X)``, each normalized on its own.
    """
    image = np.asarray(image)
    normalizer = PercentileNormalizer(*normalization)
    if channels is not None:
        picked = pick_channels(image, channels, where)
        lo, hi = normalizer.statistics(picked, per_channel=True)
        return np.ascontiguousarray(np.moveaxis(normalizer.apply(picked, lo, hi), -1, 0))
    # statistics of the image as inference sees it: gray as one plane, alpha dropped
    lo, hi = normalizer.statistics(image if image.ndim == 2 else image[..., :3])
    return np.ascontiguousarray(np.moveaxis(normalizer.apply(to_rgb(image), lo, hi), -1, 0))


def median_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the objects of a label image (0 if none)."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if len(areas) else 0.0


@dataclass
class Sample:
    """One training/validation image at the model's scale."""

    image: np.ndarray  # (3, Y, X) float32 (the model's declared channels: (C, Y, X))
    labels: np.ndarray  # (Y, X) at model scale
    targets: np.ndarray  # (K, Y, X) float32 (pixel classes: K=1 holding the class id); + "annotated" if masked
    stratum: str = "all"


def prepare_sample(image, labels, schema: str, target_diameter: float,
                   normalization=(1.0, 99.8), stratum: str = "all", unannotated: np.ndarray | None = None,
                   masked: bool = False, channels: Sequence[int] | None = None, where: str = "the image") -> Sample:
    """Rescale an annotated image so its median object diameter is ``target_diameter``.

    ``masked`` appends an "annotated" target channel (1 = annotated, 0 = where ``unannotated``
    is nonzero), which :func:`make_loss` with ``masked=True`` uses to leave those pixels out.
    ``channels``: the image's channels a model that declares them takes (:func:`model_input`).
    """
    diameter = median_diameter(labels)
    scale = target_diameter / diameter if diameter > 0 else 1.0
    x = model_input(image, normalization, channels, where)
    x = np.stack([rescale(c, scale, order=1) for c in x])
    lab = rescale(np.asarray(labels, dtype=np.int32), scale, order=0)
    t = SCHEMAS[schema].targets(lab)
    t = t[None].astype(np.float32) if t.ndim == 2 else t
    if masked:
        annotated = np.ones(lab.shape, np.float32) if unannotated is None else \
            (rescale(np.asarray(unannotated != 0, np.uint8), scale, order=0) == 0).astype(np.float32)
        t = np.concatenate([t, annotated[None]])
    return Sample(x.astype(np.float32), lab, t.astype(np.float32), stratum)


def sphere_diameters(labels: np.ndarray, anisotropy: float = 1.0) -> np.ndarray:
    """Equivalent-sphere diameters (XY pixels) of the objects of a ``(Z, Y, X)`` label volume whose Z step is
    ``anisotropy`` XY pixels, one per id present.

    >>> ball = np.zeros((20, 20, 20), int); ball[5:15, 5:15, 5:15] = 1  # a 10-voxel cube
    >>> sphere_diameters(ball).round(2), sphere_diameters(ball[::2], anisotropy=2).round(2)
    (array([12.41]), array([12.41]))
    """
    volumes = np.bincount(np.asarray(labels).ravel())[1:]
    return (6 * volumes[volumes > 0] * float(anisotropy) / np.pi) ** (1 / 3)


def median_sphere_diameter(labels: np.ndarray, anisotropy: float = 1.0) -> float:
    """Median of :func:`sphere_diameters` (0 if there is no object)."""
    diameters = sphere_diameters(labels, anisotropy)
    return float(np.median(diameters)) if len(diameters) else 0.0


def median_cross_section_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter (XY pixels) of the objects' cross-sections in every plane of a
    ``(Z, Y, X)`` label volume (0 if none): the object size a 2D model trained on the planes sees.

    >>> ball = np.zeros((3, 9, 9), int); ball[0, 4, 4] = ball[2, 4, 4] = 1; ball[1, 2:7, 2:7] = 1
    >>> round(median_cross_section_diameter(ball), 2)  # areas 1, 25, 1
    1.13
    """
    areas = np.concatenate([np.bincount(np.asarray(plane).ravel())[1:] for plane in labels])
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if len(areas) else 0.0


def volume_zoom(labels: np.ndarray, target_diameter: float, anisotropy: float) -> tuple[float, float, float]:
    """The (Z, Y, X) resize factors that bring a training volume to the model's scale: cubic voxels and a median
    object diameter of ``target_diameter`` (the native inference resizes by ``(anisotropy × s, s, s)`` alike)."""
    diameter = median_sphere_diameter(labels, anisotropy)
    scale = target_diameter / diameter if diameter > 0 else 1.0
    return (anisotropy * scale, scale, scale)


def prepare_volume_sample(volume, labels, schema: str, target_diameter: float, anisotropy: float,
                          normalization=(1.0, 99.8), stratum: str = "all") -> Sample:
    """A ``(Z, Y, X)`` volume and its label volume at the model's scale: one input channel normalized with the
    volume's percentiles, Z resized by ``anisotropy`` so voxels are cubes, targets of the schema in 3D."""
    normalizer = PercentileNormalizer(*normalization)
    volume = np.asarray(volume, np.float32)
    lo, hi = normalizer.statistics(volume, spatial_ndim=3)
    zoom = volume_zoom(labels, target_diameter, anisotropy)
    x = rescale(normalizer.apply(volume, lo, hi).astype(np.float32), zoom, order=1, spatial_ndim=3)
    lab = rescale(np.asarray(labels, dtype=np.int32), zoom, order=0, spatial_ndim=3)
    return Sample(x[None].astype(np.float32), lab, SCHEMAS[schema].targets(lab).astype(np.float32), stratum)


def target_kind(schema: str, masked: bool = False) -> TargetKind:
    """How a schema's targets follow the crops' zoom: class ids nearest, masks kept binary, distances smooth
    (``masked``: the "annotated" channel after them is a mask too)."""
    if schema == "pixel_classes":
        return TargetKind(interpolation="nearest")
    binary = tuple(SCHEMAS[schema].BINARY_TARGETS)
    return TargetKind(binary_channels=binary + ((SCHEMAS[schema].OUTPUT_CHANNELS,) if masked else ()),
                      vector_channels=tuple(getattr(SCHEMAS[schema], "VECTOR_TARGETS", ())))


def crop_sampler(samples: Sequence[Sample], config, *, steps: int | None = None,
                 workers: int | None = None) -> CropSampler:
    """The augmented-crop sampler a segmentation config describes (``steps``/``workers`` override the config's)."""
    kind = target_kind(config.schema_, masked=config.data.unannotated is not None)
    return CropSampler.from_config(samples, config, kind, steps=steps, workers=workers)


def make_loss(schema: str, class_weights: np.ndarray | None = None, contact_emphasis: float = 0.0,
              masked: bool = False):
    """Loss for raw network outputs ``(N, K, Y, X)`` against targets from :func:`prepare_sample`.

    ``contact_emphasis`` (contact watershed only) weighs the cross-entropy of every channel
    by ``1 + contact_emphasis`` at contact pixels, where two objects touch: most errors
    there are merges, which a pixel-averaged loss barely sees. ``masked``: the targets' last
    channel says which pixels are annotated (see :func:`prepare_sample`); the others add
    nothing to the loss.

    >>> loss = make_loss("deep_watershed", masked=True)
    >>> outputs, targets = torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2)
    >>> targets[:, 2, 0] = 1  # only row 0 is annotated
    >>> other = targets.clone(); other[:, 0, 1] = 1  # foreground in row 1 changes nothing
    >>> float(loss(outputs, targets)) == float(loss(outputs, other))
    True
    """
    loss = _schema_loss(schema, class_weights, contact_emphasis)
    if not masked:
        return loss

    def masked_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss(outputs, targets[:, :-1], targets[:, -1:])
    masked_loss.__name__ = f"masked_{loss.__name__}"
    return masked_loss


def _mean_over(per_pixel: torch.Tensor, annotated: torch.Tensor | None) -> torch.Tensor:
    """Per-channel mean of ``(N, K, Y, X)`` (or ``(N, K, Z, Y, X)``) over the annotated pixels (all when
    ``annotated`` is None)."""
    dims = (0, *range(2, per_pixel.ndim))  # (N, K, Y, X) or (N, K, Z, Y, X)
    if annotated is None:
        return per_pixel.mean(dim=dims)
    return (per_pixel * annotated).sum(dim=dims) / annotated.sum().clamp(min=1)


def _schema_loss(schema: str, class_weights: np.ndarray | None, contact_emphasis: float):
    """The loss of one schema: ``loss(outputs, targets, annotated=None)``."""
    if schema == "deep_watershed":
        def deep_watershed_loss(outputs: torch.Tensor, targets: torch.Tensor, annotated=None) -> torch.Tensor:
            if annotated is not None:
                return _mean_over(F.binary_cross_entropy_with_logits(outputs, targets, reduction="none"),
                                  annotated).sum()
            return (F.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0])
                    + F.binary_cross_entropy_with_logits(outputs[:, 1], targets[:, 1]))
        return deep_watershed_loss
    if schema == "contact_watershed":
        def contact_watershed_loss(outputs: torch.Tensor, targets: torch.Tensor, annotated=None) -> torch.Tensor:
            per_pixel = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
            if contact_emphasis:
                per_pixel = per_pixel * (1 + contact_emphasis * targets[:, 2:3])
            per_channel = _mean_over(per_pixel, annotated)
            # contacts are a few % of the pixels: the Dice term keeps them from being predicted away
            return per_channel.sum() + soft_dice_loss(outputs[:, 2], targets[:, 2],
                                                      annotated=None if annotated is None else annotated[:, 0])
        return contact_watershed_loss
    if schema == "pixel_classes":
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)

        def pixel_classes_loss(outputs: torch.Tensor, targets: torch.Tensor, annotated=None) -> torch.Tensor:
            classes = targets[:, 0].long()
            if annotated is not None:
                classes = classes.masked_fill(annotated[:, 0] == 0, -100)  # cross_entropy's ignore_index
            return F.cross_entropy(outputs, classes, weight=None if weight is None else weight.to(outputs.device))
        return pixel_classes_loss
    if schema == "flow_field":
        def flow_field_loss(outputs: torch.Tensor, targets: torch.Tensor, annotated=None) -> torch.Tensor:
            # Cellpose's loss: BCE of the foreground + half the squared error of the scaled flows
            foreground = F.binary_cross_entropy_with_logits(outputs[:, :1], targets[:, :1], reduction="none")
            flow_error = (outputs[:, 1:3] - flow_field.FLOW_SCALE * targets[:, 1:3]) ** 2 / 2
            return _mean_over(foreground, annotated).sum() + _mean_over(flow_error, annotated).mean()
        return flow_field_loss
    raise ValueError(f"unknown schema {schema!r}")


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0,
                   annotated: torch.Tensor | None = None) -> torch.Tensor:
    """1 − Dice overlap of ``sigmoid(logits)`` with binary ``targets``, over the whole batch
    (over the ``annotated`` pixels only, when given).

    >>> t = torch.tensor([[0.0, 1.0]]); round(float(soft_dice_loss(torch.tensor([[-20.0, 20.0]]), t)), 3)
    0.0
    """
    probability = torch.sigmoid(logits)
    if annotated is not None:
        probability, targets = probability * annotated, targets * annotated
    overlap = (probability * targets).sum()
    return 1 - (2 * overlap + smooth) / (probability.sum() + targets.sum() + smooth)


def pixel_class_weights(samples: Sequence[Sample]) -> np.ndarray:
    return pixel_classes.class_weights([s.targets[0].astype(np.int64) for s in samples])


def make_validator(samples: Sequence[Sample], schema: str, loss_fn, tile_size: int = 512,
                   size_divisor: int = 16, **postprocess_params):
    """``validate(model)`` → val_loss and AP@0.5 (per image or volume, at the model scale).

    ``postprocess_params`` go to the schema's post-processing (e.g. ``class_weights``). Volume samples
    (``(1, Z, Y, X)`` images) are predicted in the native inference's 3D tiles and scored in 3D.
    """
    from cytolens.tasks.segmentation.volume import OVERLAP_3D, TILE_3D

    postprocess = SCHEMAS[schema].postprocess
    out_channels = SCHEMAS[schema].OUTPUT_CHANNELS

    def validate(model: torch.nn.Module) -> dict:
        predict = network_predictor(model)
        losses, aps, aps75 = [], [], []
        for sample in samples:
            spatial = sample.image.ndim - 1
            tile, overlap = (tile_size, 64) if spatial == 2 else (TILE_3D, OVERLAP_3D)
            outputs = predict_tiled(predict, sample.image, out_channels, tile, overlap, size_divisor,
                                    spatial_ndim=spatial)
            losses.append(float(loss_fn(torch.from_numpy(outputs)[None], torch.from_numpy(sample.targets)[None])))
            labels = postprocess(outputs, **postprocess_params)
            aps.append(match(sample.labels, labels.astype(np.int64), 0.5).average_precision)
            aps75.append(match(sample.labels, labels.astype(np.int64), 0.75).average_precision)
        return {"val_loss": float(np.mean(losses)), "val_ap50": float(np.mean(aps)), "val_ap75": float(np.mean(aps75))}

    return validate


def preparation_key(config) -> tuple:
    """The settings the prepared samples depend on (a run with other ones prepares again)."""
    data = config.data
    return (config.schema_, config.target_diameter, tuple(config.normalization),
            *(str(v) for _, v in data), config.seed) + ((tuple(config.channels),) if config.channels else ()) + (
                ("volumes", config.anisotropy) if config.architecture.dims == 3 else ())


def count_objects(samples: Sequence[Sample]) -> int:
    """How many annotated objects the samples hold."""
    return int(sum(len(np.unique(s.labels)) - (s.labels == 0).any() for s in samples))


def prepare_data(config, progress: bool = True) -> PreparedData:
    """Split a config's data and bring the train and val images to the model's scale
    (in ``optimization.workers`` processes when set)."""
    from cytolens.train.splits import make_data_split

    split, files, stratum_of = make_data_split(config)
    if not split["val"]:
        raise InvalidParameterError("the validation split is empty; raise data.val_fraction or add images")
    ids = split["train"] + split["val"]
    masks = unannotated_masks(config.data)
    volumes = config.architecture.dims == 3
    if volumes and masks:
        raise InvalidParameterError("data.unannotated masks are for 2D training; a volume model (architecture.dims: "
                                    "3) needs every voxel of its label volumes annotated")
    jobs = [(files[i], config.schema_, config.target_diameter, tuple(config.normalization), stratum_of.get(i, "all"),
             masks.get(i), config.data.unannotated is not None, config.channels,
             config.anisotropy if volumes else None) for i in ids]

    def collect(prepared) -> dict[str, Sample]:
        if progress:
            from tqdm.auto import tqdm

            prepared = tqdm(prepared, total=len(ids), desc="preparing images", leave=False)
        return dict(zip(ids, prepared))

    if config.optimization.workers:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(config.optimization.workers) as pool:
            samples = collect(pool.map(_prepare_file, jobs, chunksize=8))
    else:
        samples = collect(map(_prepare_file, jobs))
    data = PreparedData(split, samples, files, preparation_key(config))
    if volumes:
        check_volume_crop(config, data)
    for side in ("train", "val"):  # all-empty labels would train a model that finds nothing, and score it 1.0
        if count_objects(data.side(side)) == 0:
            setting = "val_labels" if side == "val" and config.data.val_labels else "labels"
            raise InvalidImageError(f"the label images of the {side} split ({len(split[side])}) hold no objects; "
                                    f"check data.{setting} ({getattr(config.data, setting)}): 0 is background, "
                                    "each object needs its own id > 0")
    return data


def unannotated_masks(data) -> dict:
    """``{image id: mask file}`` of a data config's ``unannotated`` folder (empty when not set)."""
    if data.unannotated is None:
        return {}
    from cytolens.io import list_images

    if not data.unannotated.is_dir():
        raise InvalidParameterError(f"data.unannotated: folder not found: {data.unannotated}")
    return {p.stem: p for p in list_images(data.unannotated)}


def _prepare_file(job) -> Sample:
    from cytolens.io import read_image

    (image_path, labels_path), schema, target_diameter, normalization, stratum, mask_path, masked, channels, \
        anisotropy = job
    if anisotropy is not None:  # a volume model
        volume, labels = checked_volume_annotation(read_image(image_path), read_image(labels_path), labels_path)
        return prepare_volume_sample(volume, labels, schema, target_diameter, anisotropy, normalization, stratum)
    image, labels = checked_annotation(read_image(image_path), read_image(labels_path), labels_path)
    unannotated = None
    if mask_path is not None:
        unannotated = read_image(mask_path)
        if unannotated.shape != labels.shape:
            raise InvalidImageError(f"{mask_path}: mask {unannotated.shape} and label image {labels.shape} differ in "
                                    "size; a data.unannotated mask must match its image pixel for pixel")
    return prepare_sample(image, labels, schema, target_diameter, normalization, stratum, unannotated, masked,
                          channels, str(image_path))


def checked_annotation(image: np.ndarray, labels: np.ndarray, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """An annotated image checked for training: labels 2D, whole, >= 0, the image's Y and X.

    An image ``(C, Y, X)`` whose last two axes are the labels' is taken as channels first
    and returned channels last. Raises :class:`~cytolens.errors.InvalidImageError` naming the file; ids above
    ``DENSE_ID_LIMIT`` are renumbered 1..N (the targets need only which pixels share an id).

    >>> image, labels = np.zeros((4, 4)), np.zeros((4, 3), np.uint16)
    >>> checked_annotation(image, labels, "a.tif")
    Traceback (most recent call last):
    cytolens.errors.InvalidImageError: a.tif: label image (4, 3) and image (4, 4) differ in size; each label image must match its image pixel for pixel
    """
    if labels.ndim != 2:
        hint = "; for (Z, Y, X) label volumes set architecture.dims: 3" if labels.ndim == 3 else ""
        raise InvalidImageError(f"{labels_path}: a label image must be 2D (Y, X), got shape {labels.shape}{hint}")
    if image.ndim == 3 and image.shape[1:] == labels.shape and image.shape[:2] != labels.shape:
        image = np.moveaxis(image, 0, -1)  # channels first (a TIFF without axes metadata)
    if image.shape[:2] != labels.shape:
        raise InvalidImageError(f"{labels_path}: label image {labels.shape} and image {image.shape[:2]} differ in size; "
                                "each label image must match its image pixel for pixel")
    return image, _checked_ids(labels, labels_path)


def _checked_ids(labels: np.ndarray, labels_path) -> np.ndarray:
    """Labels as int32 whole numbers >= 0 (ids above ``DENSE_ID_LIMIT`` renumbered); InvalidImageError otherwise."""
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number) or (
            not np.issubdtype(labels.dtype, np.integer) and not np.array_equal(labels, np.round(labels))):
        raise InvalidImageError(f"{labels_path}: labels must be whole numbers (0 = background, one id per object), "
                                f"got {labels.dtype} values; a binary mask needs skimage.measure.label first")
    if labels.min() < 0:
        raise InvalidImageError(f"{labels_path}: labels must be >= 0 (0 = background), found {labels.min()}")
    if labels.max() > DENSE_ID_LIMIT:
        labels = relabel_sequential(labels.astype(np.int64))[0]
    return labels.astype(np.int32)


def checked_volume_annotation(volume: np.ndarray, labels: np.ndarray, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """A volume and its label volume checked for 3D training: both ``(Z, Y, X)``, the same shape, labels whole
    and >= 0. Raises :class:`~cytolens.errors.InvalidImageError` naming the file.

    >>> checked_volume_annotation(np.zeros((4, 4)), np.zeros((4, 4), np.uint16), "a.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cytolens.errors.InvalidImageError: a.tif: a volume model (architecture.dims: 3) trains on (Z, Y, X) label ...
    """
    if labels.ndim != 3:
        raise InvalidImageError(f"{labels_path}: a volume model (architecture.dims: 3) trains on (Z, Y, X) label "
                                f"volumes, got a {labels.ndim}D label image of shape {labels.shape}; train a 2D model "
                                "(architecture.dims: 2) on images")
    if volume.shape != labels.shape:
        raise InvalidImageError(f"{labels_path}: label volume {labels.shape} and volume {volume.shape} differ in "
                                "shape; a volume model takes one-channel (Z, Y, X) volumes matching their labels "
                                "voxel for voxel")
    return volume, _checked_ids(labels, labels_path)


def check_volume_crop(config, data: PreparedData) -> None:
    """InvalidParameterError when the (z, y, x) crop is larger than a training volume at the model's scale
    (the crop would be mostly mirrored padding)."""
    from cytolens.train.sampler import crop_shape

    crop = crop_shape(config.optimization.crop_size, 3)
    for name, sample in zip(data.split["train"], data.side("train")):
        shape = sample.image.shape[1:]
        if any(c > n for c, n in zip(crop, shape)):
            raise InvalidParameterError(
                f"optimization.crop_size {list(crop)} (z, y, x) is larger than training volume {name!r} at the "
                f"model's scale {list(shape)} (Z resized by anisotropy {config.anisotropy:g}, objects to "
                f"target_diameter {config.target_diameter:g}); give a crop no larger than the volumes")
