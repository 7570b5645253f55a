"""The training config of a segmentation model: the shared settings plus the schema and the object scale.

>>> from cytolens.train.config import validate_config
>>> config = validate_config({"name": "n", "schema": "contact_watershed", "data": {"images": "i", "labels": "l"},
...                           "output": "o"})
>>> type(config).__name__, config.target_diameter
('SegmentationTrainConfig', 20.0)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cytolens.tasks.segmentation.channels import check_channel_list
from cytolens.train.config import LabelDataConfig, TrainConfig

#: the schemas whose targets and post-processing work on (Z, Y, X) volumes (architecture.dims: 3)
VOLUME_SCHEMAS = ("deep_watershed", "contact_watershed")


class SegmentationTrainConfig(TrainConfig):
    """Everything that defines how a segmentation model is trained."""

    task: Literal["segmentation"] = "segmentation"
    schema_: Literal["deep_watershed", "contact_watershed", "pixel_classes", "flow_field"] = Field(
        "deep_watershed", alias="schema")
    data: LabelDataConfig
    target_diameter: float = Field(20.0, gt=2, description="objects are rescaled to this median diameter (px)")
    channels: list[int] | None = Field(
        None, description="the image files' channels the network takes, in this order (0 = first), e.g. [0, 1] "
        "for a cytoplasm and a nucleus stain; each is normalized on its own and model.json declares them. None: "
        "each image as gray or RGB (gray repeated to 3 channels)")
    anisotropy: float = Field(
        1.0, gt=0, description="volume models (architecture.dims: 3) only: the Z step of the training volumes divided "
        "by their XY pixel size; Z is resized by it so the network sees cubic voxels, as the native 3D inference "
        "does, and model.json records it")
    contact_emphasis: float = Field(
        0.0, ge=0, le=50, description="contact_watershed only: pixels where objects touch weigh 1 + this in the "
        "cross-entropy (as U-Net's border weights), to train the network harder on separating touching objects")

    @model_validator(mode="after")
    def _check_schema(self):
        if self.channels is not None:
            check_channel_list(self.channels)  # an InvalidParameterError is a ValueError: pydantic reports it
        if self.contact_emphasis and self.schema_ != "contact_watershed":
            raise ValueError(f"contact_emphasis needs schema: contact_watershed (got {self.schema_}): "
                             "only that schema has contact targets")
        if self.architecture.name != "unet":
            raise ValueError(f"segmentation needs architecture.name: unet (got {self.architecture.name})")
        if self.architecture.dims == 3:
            if self.schema_ not in VOLUME_SCHEMAS:
                raise ValueError(f"a volume model (architecture.dims: 3) needs schema deep_watershed or "
                                 f"contact_watershed (got {self.schema_}): only they post-process volumes")
            if self.channels is not None:
                raise ValueError("channels is for 2D models; a volume model (architecture.dims: 3) takes one-channel "
                                 "(Z, Y, X) volumes")
        elif self.anisotropy != 1.0:
            raise ValueError(f"anisotropy ({self.anisotropy:g}) is for volume models: set architecture.dims: 3 to "
                             "train on (Z, Y, X) volumes")
        return self
