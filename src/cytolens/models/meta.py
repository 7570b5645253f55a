"""``model.json`` as a typed record: :class:`ModelMeta` (pydantic), checked when a package loads.

Every task writes the same top-level entries; task-specific ones (``schema``, ``scale``,
``postprocess`` for segmentation) are optional, and keys this version does not know are
kept as they are (a newer cytolens may add some). ``ModelPackage.meta`` is the plain
mapping, ``ModelPackage.info`` this typed view of it.

>>> meta = ModelMeta(name="toy", task="denoising", architecture={"name": "unet", "args": {"depth": 2}})
>>> meta.normalization.low, meta.input.axes
(1.0, 'YXC')
>>> ModelMeta.from_json({"name": "toy", "task": "x", "architecture": {"args": {}}}, "m.json")
Traceback (most recent call last):
cytolens.errors.InvalidModelError: m.json is not a valid model description: architecture.name: Field required
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cytolens.errors import InvalidModelError

FORMAT_VERSION = 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ArchitectureMeta(_Open):
    """Which network (:data:`cytolens.nn.registry.ARCHITECTURES`) and its keyword arguments."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class InputMeta(_Open):
    """What the network reads: channels, the axes of the image it is given, how others are converted."""

    channels: int = 3
    axes: str = "YXC"
    conversion: str = ""


class NormalizationMeta(_Open):
    """The :class:`cytolens.preprocess.PercentileNormalizer` training and inference both use."""

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8


class ModelMeta(_Open):
    """The entries of ``model.json``."""

    format_version: int = FORMAT_VERSION
    name: str
    version: str = "1"
    task: str
    architecture: ArchitectureMeta
    input: InputMeta = InputMeta()
    normalization: NormalizationMeta = NormalizationMeta()
    schema_: str | None = Field(None, alias="schema")
    scale: dict[str, float] | None = None
    postprocess: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    validation: dict[str, Any] = Field(default_factory=dict)
    license: str = "not stated"

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @classmethod
    def from_json(cls, data: dict, where: str = "model.json") -> ModelMeta:
        """Validate a parsed ``model.json``; :class:`~cytolens.errors.InvalidModelError` naming each problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'model.json'}: {e['msg']}" for e in exc.errors())
            raise InvalidModelError(f"{where} is not a valid model description: {problems}") from None

    def to_json(self) -> dict:
        """The plain mapping written to ``model.json`` (unset optional entries left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
