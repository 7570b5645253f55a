"""ImageJ ROI and GeoJSON export: each object comes back as a polygon that covers exactly its pixels."""

import json

import numpy as np
import pytest
from skimage.draw import polygon2mask

from cytolens.data.synthetic import synthetic_nuclei
from cytolens.errors import CytolensError
from cytolens.io import read_imagej_rois, write_geojson, write_imagej_rois


def pixels_inside(roi, shape):
    """Pixels whose centres the ROI's polygon encloses (ImageJ's rule for a polygon selection's mask)."""
    x, y = (roi.coordinates() if hasattr(roi, "coordinates") else np.asarray(roi)).T
    return polygon2mask(shape, np.stack([y - 0.5, x - 0.5], axis=1))  # pixel (r, c) centred at x=c+.5, y=r+.5


def test_every_object_round_trips_to_its_own_pixels(tmp_path):
    _, labels = synthetic_nuclei(shape=(128, 128), n_nuclei=20, seed=3)
    labels[0:6, 0:9] = labels.max() + 1  # an object on the image border
    labels[labels == 5] = 0  # a gap in the numbering
    rois = read_imagej_rois(write_imagej_rois(tmp_path / "x_rois.zip", labels))
    ids = [i for i in np.unique(labels) if i]
    assert [int(roi.name) for roi in rois] == ids
    for roi in rois:  # the outline runs between pixel centres, so it encloses exactly the object's pixels
        assert np.array_equal(pixels_inside(roi, labels.shape), labels == int(roi.name)), roi.name


def test_empty_labels_give_an_empty_roi_set_and_files_are_not_replaced_unasked(tmp_path):
    path = write_imagej_rois(tmp_path / "none.zip", np.zeros((8, 8), np.uint16))
    assert read_imagej_rois(path) == []
    with pytest.raises(CytolensError, match="exists"):
        write_imagej_rois(path, np.ones((8, 8), np.uint16))
    assert read_imagej_rois(path) == []
    write_imagej_rois(path, np.ones((8, 8), np.uint16), overwrite=True)
    assert [roi.name for roi in read_imagej_rois(path)] == ["1"]


@pytest.mark.parametrize("bad", [np.ones((2, 8, 8), np.uint16), np.ones((8, 8), np.float32), -np.ones((8, 8), int)])
def test_bad_label_images_are_refused(tmp_path, bad):
    with pytest.raises(CytolensError, match="2D label image"):
        write_imagej_rois(tmp_path / "bad.zip", bad)
    assert not (tmp_path / "bad.zip").exists()


def test_geojson_polygons_cover_their_objects_and_load_as_qupath_detections(tmp_path):
    _, labels = synthetic_nuclei(shape=(96, 128), n_nuclei=12, seed=4)
    data = json.loads(write_geojson(tmp_path / "x.geojson", labels).read_text())
    assert data["type"] == "FeatureCollection"
    assert [f["properties"]["label"] for f in data["features"]] == list(range(1, labels.max() + 1))
    for feature in data["features"]:
        assert feature["type"] == "Feature" and feature["properties"]["objectType"] == "detection"
        assert feature["properties"]["name"] == str(feature["properties"]["label"])
        [ring] = feature["geometry"]["coordinates"]
        assert ring[0] == ring[-1]  # GeoJSON rings are closed
        mask = labels == feature["properties"]["label"]
        assert np.array_equal(pixels_inside(ring, labels.shape), mask)
    with pytest.raises(CytolensError, match="exists"):
        write_geojson(tmp_path / "x.geojson", labels)
    with pytest.raises(CytolensError, match="2D label image"):
        write_geojson(tmp_path / "y.geojson", labels.astype(float))
    assert json.loads(write_geojson(tmp_path / "empty.geojson", 0 * labels).read_text())["features"] == []
