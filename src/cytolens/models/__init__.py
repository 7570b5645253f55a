"""Model packages and the bundled zoo."""

from cytolens.models.package import ModelPackage, bundled_models, load, read_meta, resolve, save, update_meta

__all__ = ["ModelPackage", "bundled_models", "load", "read_meta", "resolve", "save", "update_meta"]
