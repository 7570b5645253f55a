"""Instance-segmentation schemas: each has ``targets`` and ``postprocess``.

``deep_watershed`` (default): foreground + inner distance → markers → watershed.
``pixel_classes``: background/interior/edge classes → seeded watershed.
"""

from cytolens.tasks.segmentation import deep_watershed, pixel_classes

SCHEMAS = {"deep_watershed": deep_watershed, "pixel_classes": pixel_classes}

__all__ = ["SCHEMAS", "deep_watershed", "pixel_classes"]
