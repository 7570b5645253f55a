"""Reading/writing images, label images, tables and datasets."""

from cytolens.io.images import (
    IMAGE_SUFFIXES,
    atomic_write,
    check_output_folder,
    label_dtype,
    list_images,
    make_folder,
    read_image,
    write_image,
    write_labels,
    write_table,
)

__all__ = ["IMAGE_SUFFIXES", "atomic_write", "check_output_folder", "label_dtype", "list_images", "make_folder",
           "read_image", "write_image", "write_labels", "write_table"]

from cytolens.io.ctc import (  # noqa: E402
    ctc_frame_files,
    read_ctc_masks,
    read_ctc_tracks,
    write_ctc_result,
    write_ctc_tracks,
)

__all__ += ["ctc_frame_files", "read_ctc_masks", "read_ctc_tracks", "write_ctc_result", "write_ctc_tracks"]

from cytolens.io.rois import read_imagej_rois, write_geojson, write_imagej_rois  # noqa: E402

__all__ += ["read_imagej_rois", "write_geojson", "write_imagej_rois"]
