"""Segment one image file and write what ``cytolens segment`` writes for it: one function for every front end.

The CLI (``cytolens segment``), the HTTP server's workers (:mod:`cytolens.server`) and the
Dask runs (:mod:`cytolens.distributed`) all call :func:`segment_file`, so the same input and
settings give the same files, byte for byte, whichever way the work was started.
:class:`SegmentSettings` is the validated form of the settings (a server's ``params`` JSON,
the Dask task's argument); :func:`prepare` checks them against the model before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from cytolens.models.package import ModelPackage
    from cytolens.tasks.segmentation.inference import SegmentationInfo

__all__ = ["SegmentSettings", "prepare", "segment_file"]


class SegmentSettings(BaseModel):
    """The settings of ``cytolens segment`` for one run (the same names and defaults as its options).

    >>> SegmentSettings(diameter=20, overlay=True).extras
    ('overlay',)
    >>> SegmentSettings(diamter=20)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pydantic_core._pydantic_core.ValidationError: 1 validation error for SegmentSettings
    ...
    """

    model_config = ConfigDict(extra="forbid")

    diameter: float | None = Field(None, description="typical object diameter in pixels; estimated when null")
    tile_size: int = Field(512, description="tile side for tiled inference")
    min_size: int | None = Field(None, description="drop objects smaller than this (model pixels)")
    augment: bool = Field(False, description="test-time augmentation over flips (4x slower)")
    gamma: float = Field(1.0, description="gamma on the normalized intensities")
    filter_objects: bool = Field(True, description="drop objects the model's object classifier judges spurious")
    precision: str = Field("float32", description="float32 or bfloat16")
    channel: int | None = Field(None, description="segment only this channel (0 = the first)")
    channels: list[int] | None = Field(None, description="for a model that declares its input channels: the "
                                       "image's channels to give it, in its order")
    postprocess: dict[str, float] = Field(default_factory=dict,
                                          description="post-processing overrides, e.g. {\"marker_threshold\": 0.5}")
    overlay: bool = Field(False, description="also write <stem>_overlay.png")
    rois: bool = Field(False, description="also write <stem>_rois.zip (ImageJ ROIs)")
    geojson: bool = Field(False, description="also write <stem>_objects.geojson (QuPath)")
    axes: Literal["ZYX", "CYX"] | None = Field(None, description="ZYX: the file is a volume (labels written as a ZYX "
                                               "TIFF); CYX: a 2D image with its channels first")
    # checked by cytolens.segment for a volume (ignored for an image, as the CLI ignores them without --axes)
    anisotropy: float = Field(1.0, description="volumes: Z step / XY pixel size")
    volume_method: str = Field("auto", description="volumes: native (3D model), slices (2D, linked through Z) or auto")

    @property
    def extras(self) -> tuple[str, ...]:
        """The extra outputs asked for, in the order the CLI names them."""
        return tuple(name for name in ("overlay", "rois", "geojson") if getattr(self, name))

    def postprocess_params(self) -> dict[str, float]:
        """The post-processing overrides, ``min_size`` included, as ``cytolens.segment`` takes them."""
        extra = dict(self.postprocess)
        if self.min_size is not None:
            extra["min_size"] = self.min_size
        return extra


def prepare(model: str | os.PathLike, settings: SegmentSettings) -> tuple[ModelPackage, SegmentSettings]:
    """The loaded model and the settings to run, checked before any image is read.

    Raises the same :class:`~cytolens.errors.CytolensError` the CLI shows for a bad setting; the
    returned settings carry the precision the machine can run (bfloat16 falls back, with a warning,
    where the CPU lacks it), as the CLI does.
    """
    from cytolens.api import _load
    from cytolens.nn.precision import effective_precision
    from cytolens.tasks.segmentation.inference import check_settings

    package = _load(model)
    check_settings(package, diameter=settings.diameter, tile_size=settings.tile_size, gamma=settings.gamma,
                   precision=settings.precision, **settings.postprocess_params())
    precision = effective_precision(settings.precision, next(package.network.parameters()).device)
    return package, settings.model_copy(update={"precision": precision})


def segment_file(image_path: Path, output: Path, package: ModelPackage | str, settings: SegmentSettings, *,
                 overwrite: bool = False, name: str | None = None) -> SegmentationInfo:
    """Segment ``image_path`` and write its outputs into the folder ``output``, named as the CLI names them.

    ``name`` (default: the file's own name) is the name the outputs are derived from
    (``<stem>_labels.tif``, ...). Raises :class:`~cytolens.errors.ImageReadError` /
    :class:`~cytolens.errors.InvalidImageError` for an image that cannot be read or segmented.
    """
    from cytolens.api import measure
    from cytolens.api import segment as segment_api
    from cytolens.io import read_image, write_labels, write_table
    from cytolens.io.results import result_files
    from cytolens.io.rois import write_geojson, write_imagej_rois
    from cytolens.overlay import write_overlay

    image = read_image(image_path)
    if settings.axes == "CYX":  # measured and drawn channels last, as it is segmented
        from cytolens.tasks.segmentation.channels import channels_first_to_last

        image = channels_first_to_last(image)
    if settings.axes == "ZYX":
        from cytolens.tasks.segmentation.inference import SegmentationInfo

        labels = segment_api(image, package, axes="ZYX", anisotropy=settings.anisotropy,
                             volume_method=settings.volume_method, diameter=settings.diameter,
                             channel=settings.channel, channels=settings.channels,
                             filter_objects=settings.filter_objects,
                             **settings.postprocess_params())
        info = SegmentationInfo(diameter=settings.diameter, estimated=settings.diameter is None, scale=1.0,
                                n_objects=int(labels.max()))
    else:
        labels, info = segment_api(image, package, diameter=settings.diameter, tile_size=settings.tile_size,
                                   augment=settings.augment, gamma=settings.gamma,
                                   filter_objects=settings.filter_objects, precision=settings.precision,
                                   channel=settings.channel, channels=settings.channels, return_info=True,
                                   **settings.postprocess_params())
    targets = result_files(Path(name or image_path.name), Path(output), settings.extras)
    write_labels(targets["labels"], labels, overwrite=overwrite, axes="ZYX" if settings.axes == "ZYX" else None)
    spacing = (settings.anisotropy, 1.0, 1.0) if settings.axes == "ZYX" else None
    write_table(targets["table"], measure(labels, image, spacing=spacing), overwrite=overwrite)
    if settings.overlay:
        write_overlay(targets["overlay"], image, labels, channel=settings.channel, overwrite=overwrite)
    if settings.rois:
        write_imagej_rois(targets["rois"], labels, overwrite=overwrite)
    if settings.geojson:
        write_geojson(targets["geojson"], labels, overwrite=overwrite)
    return info
