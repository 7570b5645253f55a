"""Instance-segmentation schemas: each has ``targets`` and ``postprocess``.

``deep_watershed`` (default): foreground + inner distance → markers → watershed.
``contact_watershed``: deep watershed plus a channel for contacts between touching objects.
``pixel_classes``: background/interior/edge classes → seeded watershed.
"""

from cytolens.tasks.segmentation import contact_watershed, deep_watershed, pixel_classes

SCHEMAS = {"deep_watershed": deep_watershed, "contact_watershed": contact_watershed, "pixel_classes": pixel_classes}

__all__ = ["SCHEMAS", "contact_watershed", "deep_watershed", "pixel_classes"]
