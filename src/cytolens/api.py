"""Top-level functions: one call does the whole job with good defaults.

>>> import cytolens
>>> from cytolens.data.synthetic import synthetic_nuclei
>>> image, truth = synthetic_nuclei(shape=(256, 256), n_nuclei=20, seed=1)
>>> labels = cytolens.segment(image)          # bundled "nuclei" model, diameter estimated
>>> table = cytolens.measure(labels, image)  # one row per nucleus
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cytolens import models
from cytolens.errors import InvalidParameterError
from cytolens.measure import measure  # re-exported: cytolens.measure(labels, image)
from cytolens.models.package import ModelPackage

if TYPE_CHECKING:
    from cytolens.tasks.segmentation.inference import SegmentationInfo

__all__ = ["classify", "clear_model_cache", "embed", "finetune", "measure", "restore", "segment", "train_denoiser"]

#: how many loaded models :func:`segment` keeps (least recently used dropped first)
MODEL_CACHE_SIZE = 4

_model_cache: OrderedDict[tuple, ModelPackage] = OrderedDict()
_model_cache_lock = threading.Lock()


def _package_fingerprint(folder: Path) -> tuple:
    """What identifies a package folder's content: each file the loader reads, with its mtime and size.

    A package retrained (or refitted, e.g. ``object_filter.json``) at the same path
    gets a new fingerprint, so the cache loads it again.
    """
    if folder.is_file():  # an exported ONNX or TorchScript network
        files = [folder]
    else:
        files = sorted({folder / "model.json", folder / "weights.safetensors", *folder.glob("*.json")})
    stats = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:  # missing: models.load says what is wrong
            stats.append((path.name, None, None))
        else:
            stats.append((path.name, stat.st_mtime_ns, stat.st_size))
    return (str(folder.resolve()), tuple(stats))


def _load(model: str | os.PathLike | ModelPackage) -> ModelPackage:
    """The loaded package of a name or path, from a small thread-safe LRU cache (a package passes through).

    >>> _load("nuclei") is _load("nuclei")
    True
    """
    if isinstance(model, ModelPackage):
        return model
    folder = models.resolve(model)
    key = _package_fingerprint(folder)
    with _model_cache_lock:
        if key in _model_cache:
            _model_cache.move_to_end(key)
            return _model_cache[key]
        # loaded under the lock: threads asking for the same model wait for one load instead of each doing it
        package = models.load(folder)
        _ = package.inference_network  # fold the batch-norms now, once, rather than in racing threads later
        _model_cache[key] = package
        while len(_model_cache) > MODEL_CACHE_SIZE:
            _model_cache.popitem(last=False)
        return package


def clear_model_cache() -> None:
    """Forget every model :func:`segment` loaded (the next call loads from disk).

    >>> clear_model_cache()
    """
    with _model_cache_lock:
        _model_cache.clear()


def segment(
    image: np.ndarray,
    model: str | os.PathLike | ModelPackage = "nuclei",
    *,
    diameter: float | None = None,
    tile_size: int = 512,
    overlap: int = 64,
    augment: bool = False,
    gamma: float = 1.0,
    filter_objects: bool = True,
    precision: str = "float32",
    channel: int | None = None,
    channels: list[int] | None = None,
    return_info: bool = False,
    axes: str | None = None,
    anisotropy: float = 1.0,
    volume_method: str = "auto",
    intensity_range: tuple[float, float] | None = None,
    **postprocess,
) -> np.ndarray | tuple[np.ndarray, SegmentationInfo]:
    """Segment every object of a 2D image (or, with ``axes="ZYX"``, a volume) into a label image.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)`` grayscale or ``(Y, X, C)`` with C = 1, 3 (RGB) or 4 (alpha dropped);
        any integer or float dtype.
    model : str, path or ModelPackage
        Bundled model name (``cytolens models list``), a package folder or ``.zip``, or a
        model ``cytolens models export`` wrote: an ONNX (``.onnx``) or TorchScript (``.pt``)
        file or a bioimage.io package (``.zip``).
    diameter : float, optional
        Typical object diameter in pixels; estimated from the image when None.
    tile_size, overlap : int
        Tiled inference: memory is bounded by the tile, seams are blended.
    augment : bool
        Test-time augmentation: average the network over the four flips (4× slower).
    gamma : float
        Gamma applied to the normalized intensities before the network; below 1
        (e.g. 0.67) keeps textured nuclei (bright chromatin foci over a dim
        nucleoplasm) whole instead of cutting them along their dim parts.
    filter_objects : bool
        Drop objects the model's object classifier judges spurious (faint blobs on
        background, fragments), when the model has one (``object_filter`` in
        ``cytolens models info``); False keeps every object the watershed finds.
    precision : {"float32", "bfloat16"}
        "bfloat16" runs the network in mixed precision: ~2x faster on CPUs with
        AVX-512 BF16 or AMX, with slightly different results (``benchmarks/``);
        elsewhere it warns and runs in float32.
    channel : int, optional
        Segment only this channel of a ``(Y, X, C)`` image (0 = the first), e.g. the
        nuclear stain (DAPI, Hoechst) of a multichannel image; None uses the image as
        it is (grayscale or RGB).
    channels : list of int, optional
        For a model that declares its input channels (e.g. cytoplasm + nucleus,
        ``input.file_channels`` in ``cytolens models info``): the image's channels to give
        it, in the model's order, e.g. ``[2, 0]``; None gives the image's channels as they
        are, which must then be as many as the model takes.
    return_info : bool
        Also return a :class:`~cytolens.tasks.segmentation.inference.SegmentationInfo`:
        the diameter used (estimated or given), the scale applied, the object count, the
        network's certainty and the share of the foreground the object filter removed,
        and the warnings the image raised. The labels are the same either way.
        (2D images only.)
    axes : {None, "YX", "YXC", "CYX", "ZYX", "ZYXC"}
        ``"ZYX"`` (or ``"ZYXC"``) segments a volume ``(Z, Y, X[, C])`` into a ``(Z, Y, X)``
        label volume (:func:`cytolens.tasks.segmentation.volume.segment_volume`); None or
        ``"YX"``: a 2D image; ``"CYX"``: a 2D image with its channels first.
    anisotropy : float
        Volumes: Z step / XY pixel size (> 0), e.g. 2 when planes are twice as far apart
        as pixels.
    volume_method : {"auto", "native", "slices"}
        Volumes: a 3D network on 3D tiles ("native"), or the 2D model on each plane with
        the planes' objects linked by overlap ("slices"); "auto" picks what the model can do.
    intensity_range : (float, float), optional
        2D images: the intensities normalized to 0 and 1 (``(low, high)``, ``low < high``) instead
        of the model's percentiles of this image, e.g. percentiles taken once over a whole
        slide so that each block of it is normalized alike (``cytolens.distributed``).
    **postprocess
        Override the model's post-processing defaults (e.g. ``min_size=20``,
        ``foreground_threshold=0.4``, ``marker_threshold=0.6``).

    Returns
    -------
    labels : ndarray of uint32, shape (Y, X)
        0 = background, objects numbered 1..N.
    info : SegmentationInfo
        Only with ``return_info=True``.

    Warns
    -----
    UserWarning
        One sentence each, when the image looks unlike the model's training data: an
        estimated diameter below what an estimate may enlarge to (the enlargement is then
        capped at 3x) or outside the size model's range, a network unsure of the image,
        an object filter that removed most of the foreground.

    Examples
    --------
    >>> from cytolens.data.synthetic import synthetic_nuclei
    >>> image, _ = synthetic_nuclei(shape=(128, 128), n_nuclei=8, seed=1)
    >>> labels, info = segment(image, "nuclei_fast", return_info=True)
    >>> info.estimated, info.n_objects == int(labels.max()), info.warnings
    (True, True, [])
    """
    from cytolens.preprocess import select_channel
    from cytolens.tasks.segmentation.channels import channels_first_to_last, pick_channels
    from cytolens.tasks.segmentation.inference import segment_image_with_info

    if channel is not None and channels is not None:
        raise InvalidParameterError("give channel (one channel) or channels (several, in the model's order), not both")
    if axes is not None and axes.upper() not in ("YX", "YXC", "CYX"):
        from cytolens.tasks.segmentation.volume import segment_volume

        if axes.upper() not in ("ZYX", "ZYXC"):
            raise InvalidParameterError(f"axes must be 'YX' or 'CYX' (an image) or 'ZYX' (a volume), got {axes!r}")
        if return_info:
            raise InvalidParameterError("return_info is for 2D images; a volume returns its labels only")
        if intensity_range is not None:
            raise InvalidParameterError("intensity_range is for 2D images; a volume is normalized by its own "
                                        "percentiles")
        if channel is not None:
            if np.ndim(image) != 4:
                raise InvalidParameterError(f"channel={channel} needs a (Z, Y, X, C) volume, got shape "
                                            f"{np.shape(image)}")
            image = np.stack([select_channel(plane, channel) for plane in image])  # each (Y, X, C) plane
        if channels is not None:
            image = pick_channels(image, channels, "the volume", spatial_ndim=3)
        return segment_volume(_load(model), image, anisotropy=anisotropy, method=volume_method,
                              diameter=diameter, filter_objects=filter_objects, **postprocess)
    if axes is not None and axes.upper() == "CYX":
        image = channels_first_to_last(image)
    if channel is not None:
        image = select_channel(image, channel)
    if channels is not None:
        image = pick_channels(image, channels)
    labels, info = segment_image_with_info(_load(model), image, diameter=diameter, tile_size=tile_size,
                                           overlap=overlap, augment=augment, gamma=gamma,
                                           filter_objects=filter_objects, precision=precision,
                                           intensity_range=intensity_range, **postprocess)
    return (labels, info) if return_info else labels


def restore(
    image: np.ndarray,
    model: str | os.PathLike | ModelPackage = "label-free-nuclei",
    *,
    tile_size: int | None = None,
    overlap: int = 32,
) -> np.ndarray:
    """Restore an image with a restoration model: denoise it, or predict fluorescence from transmitted light.

    Parameters
    ----------
    image : ndarray
        ``(Y, X)``, or a ``(C, Y, X)`` stack of planes/channels (e.g. a 13-plane
        phase-contrast z-stack for ``label-free-nuclei``); ``(Y, X, C)`` is read too.
    model : str, path or ModelPackage
        A bundled restoration model, or a package folder (``cytolens train-denoiser`` writes one).
    tile_size, overlap : int
        Tiled inference with blended seams (the model's tile size by default).

    Returns
    -------
    ndarray of float32
        ``(Y, X)``, or ``(K, Y, X)`` when the model predicts several channels. Denoisers
        return the input's intensity units; label-free models their normalized target units.

    Raises
    ------
    CytolensError
        Wrong number of planes/channels, an image too small for the network, a model
        that is not a restoration model.
    """
    from cytolens.tasks.restoration.inference import restore_image

    return restore_image(_load(model), image, tile_size=tile_size, overlap=overlap)


def train_denoiser(images, output: str | os.PathLike, *, minutes: float = 5.0, overwrite: bool = False,
                   progress: bool = True, **settings):
    """Train a self-supervised (Noise2Void, N2V2) denoiser on noisy images alone, within ``minutes``.

    ``images`` are paths or arrays; ``output`` is the model package folder that
    :func:`restore` takes (``model=output``). See
    :func:`cytolens.tasks.restoration.denoiser.train_denoiser` for the settings.
    """
    from cytolens.tasks.restoration.denoiser import train_denoiser as train

    return train(images, output, minutes=minutes, overwrite=overwrite, progress=progress, **settings)


def finetune(images, labels, output: str | os.PathLike, *, model: str | os.PathLike = "nuclei", minutes: float = 10.0,
             overwrite: bool = False, progress=True, **settings):
    """Fine-tune a copy of a segmentation ``model`` on corrected label images, within ``minutes`` of training.

    ``images`` are image files, ``labels`` the folder of their corrected label images (matched
    by file stem: ``img.tif`` -> ``img.tif`` or ``img_labels.tif``); ``output`` is the model
    package folder that :func:`segment` takes (``model=output``). See
    :func:`cytolens.tasks.segmentation.finetune.finetune` for the settings and what is held out.
    """
    from cytolens.tasks.segmentation.finetune import finetune as run

    return run(images, labels, output, model=model, minutes=minutes, overwrite=overwrite, progress=progress,
               **settings)


def classify(images, model: str | os.PathLike | ModelPackage = "blood-cells", labels=None, **options):
    """Classify images (one row each) or every cell of one image given its ``labels`` (one row per cell).

    A table with ``path`` (and ``label``), ``predicted`` and ``p_<class>`` per class; see
    :func:`cytolens.tasks.classification.inference.classify` for the options.
    """
    from cytolens.tasks.classification.inference import classify as classify_images

    return classify_images(images, model, labels, **options)


def embed(images, model: str | os.PathLike | ModelPackage = "blood-cells", labels=None, *,
          clusters: int | None = None, **options):
    """Penultimate features of images or cells, their PCA projection and KMeans ``clusters`` (one row each).

    See :func:`cytolens.tasks.classification.inference.embed`.
    """
    from cytolens.tasks.classification.inference import embed as embed_images

    return embed_images(images, model, labels, clusters=clusters, **options)
