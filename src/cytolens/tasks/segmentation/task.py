"""Instance segmentation as a :class:`~cytolens.train.task.Task`: what it adds to the generic training run.

Targets are the schema's (:data:`cytolens.tasks.segmentation.SCHEMAS`), computed once at
the model's object scale; the loss and the post-processing are the schema's; validation
scores AP@0.5 and AP@0.75 of the post-processed labels; the package records the schema,
the object scale and the post-processing defaults. Everything else (split, loop,
transfer learning, package) is the generic run's (:func:`cytolens.train.fitting.fit_model`).

>>> from cytolens.train.task import task_for
>>> task_for("segmentation").primary_metric
'val_ap50'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cytolens.errors import InvalidParameterError
from cytolens.tasks.segmentation import SCHEMAS
from cytolens.tasks.segmentation import training as seg
from cytolens.tasks.segmentation.channels import input_meta
from cytolens.tasks.segmentation.config import SegmentationTrainConfig
from cytolens.train.task import PreparedData

#: the ``input`` entry of a volume model's ``model.json``
VOLUME_INPUT = {"channels": 1, "axes": "ZYX", "conversion": "one channel; Z resized by the volume's anisotropy"}


class SegmentationTask:
    """Instance segmentation: label images in, a schema's output maps and post-processing out."""

    name = "segmentation"
    config_model = SegmentationTrainConfig
    primary_metric = "val_ap50"
    unit = "objects"

    def prepare_data(self, config, progress: bool = True) -> PreparedData:
        return seg.prepare_data(config, progress)

    def preparation_key(self, config) -> tuple:
        return seg.preparation_key(config)

    def network_channels(self, config, data: PreparedData) -> tuple[int, int]:
        if config.architecture.dims == 3:  # one-channel volumes
            return 1, SCHEMAS[config.schema_].OUTPUT_CHANNELS
        return len(config.channels) if config.channels else 3, SCHEMAS[config.schema_].OUTPUT_CHANNELS

    def _class_weights(self, config, train_samples: Sequence):
        return seg.pixel_class_weights(train_samples) if config.schema_ == "pixel_classes" else None

    def _postprocess_params(self, config, train_samples: Sequence) -> dict:
        weights = self._class_weights(config, train_samples)
        return {} if weights is None else {"class_weights": tuple(map(float, weights))}

    def make_loss(self, config, train_samples: Sequence):
        return seg.make_loss(config.schema_, self._class_weights(config, train_samples), config.contact_emphasis,
                             masked=config.data.unannotated is not None)

    def make_sampler(self, config, train_samples: Sequence):
        return seg.crop_sampler(train_samples, config)

    def make_validator(self, config, samples: Sequence, loss_fn, train_samples: Sequence):
        return seg.make_validator(samples, config.schema_, loss_fn, size_divisor=2**config.architecture.depth,
                                  **self._postprocess_params(config, train_samples))

    def adapt_to_parent(self, config, parent):
        """A parent must predict this schema or one it ``EXTENDS``; its object scale is kept unless set."""
        meta = parent.meta
        extends = getattr(SCHEMAS.get(config.schema_), "EXTENDS", None)
        if meta.get("schema") != config.schema_ and meta.get("schema") != extends:
            raise InvalidParameterError(
                f"init_from ({meta.get('name')!r}) predicts schema {meta.get('schema')!r} but schema is "
                f"{config.schema_!r}: set schema: {meta.get('schema')} or start from scratch")
        if "target_diameter" not in config.model_fields_set and "scale" in meta:
            config = config.model_copy(update={"target_diameter": float(meta["scale"]["target_diameter"])})
        parent_channels = (meta.get("input") or {}).get("file_channels")
        if "channels" not in config.model_fields_set and parent_channels:  # fine-tuning a 2-channel model
            config = config.model_copy(update={"channels": list(parent_channels)})
        takes = int(meta["architecture"]["args"].get("in_channels", 3))
        if (len(config.channels) if config.channels else 3) != takes:
            raise InvalidParameterError(f"init_from ({meta.get('name')!r}) takes {takes} input channels but channels "
                                        f"is {config.channels}: give as many channels as the parent takes")
        return config

    def package_meta(self, config, train_samples: Sequence) -> dict:
        volumes = config.architecture.dims == 3
        return {
            "schema": config.schema_,
            "input": VOLUME_INPUT if volumes else input_meta(config.channels),
            # a volume model sees cubic voxels: Z of its training volumes was resized by their anisotropy
            "scale": {"target_diameter": config.target_diameter,
                      **({"training_anisotropy": config.anisotropy} if volumes else {})},
            "postprocess": SCHEMAS[config.schema_].PARAMS(**self._postprocess_params(config, train_samples)).to_dict(),
        }

    def count_units(self, samples: Sequence) -> int:
        return seg.count_objects(samples)

    def training_warnings(self, config, train_samples: Sequence) -> list[str]:
        """Objects the U-Net cannot see whole at the model scale (its receptive field is too small)."""
        from cytolens.nn.unet import receptive_field
        from cytolens.train.checks import check_receptive_field, object_diameters

        if config.architecture.dims == 3:  # equivalent-sphere diameters at the model's (cubic) scale
            diameters = np.concatenate([seg.sphere_diameters(s.labels) for s in train_samples])
        else:
            diameters = object_diameters(s.labels for s in train_samples)
        message = check_receptive_field(diameters, config.architecture.depth,
                                        receptive_field, scale_setting=("target_diameter", config.target_diameter),
                                        warn=False)
        return [message] if message else []


TASK = SegmentationTask()
