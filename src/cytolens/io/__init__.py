"""Reading/writing images, label images, tables and datasets."""

from cytolens.io.images import (
    IMAGE_SUFFIXES,
    atomic_write,
    label_dtype,
    list_images,
    read_image,
    write_image,
    write_labels,
    write_table,
)

__all__ = ["IMAGE_SUFFIXES", "atomic_write", "label_dtype", "list_images", "read_image", "write_image",
           "write_labels", "write_table"]
