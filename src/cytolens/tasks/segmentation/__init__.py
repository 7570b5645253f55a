"""Instance-segmentation schemas: each has ``targets`` and ``postprocess``.

``deep_watershed`` (default): foreground + inner distance → markers → watershed.
``contact_watershed``: deep watershed plus a channel for contacts between touching objects.
``pixel_classes``: background/interior/edge classes → seeded watershed.
``flow_field``: foreground + a flow towards each object's centre → pixels follow the flows (whole cells).
"""

from cytolens.tasks.segmentation import contact_watershed, deep_watershed, flow_field, pixel_classes

SCHEMAS = {"deep_watershed": deep_watershed, "contact_watershed": contact_watershed, "pixel_classes": pixel_classes,
           "flow_field": flow_field}

__all__ = ["SCHEMAS", "contact_watershed", "deep_watershed", "flow_field", "pixel_classes"]
