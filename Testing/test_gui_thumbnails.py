"""Thumbnails without Qt: window/level and scaling of real images, and the per-series PNG cache."""
from __future__ import annotations

import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import thumbnails
from DICOMBrowser.DICOMBrowserLib.errors import DICOMFileError


def test_window_maps_the_window_to_the_full_grey_range():
    values = np.array([[-1000.0, -160.0, 40.0, 240.0, 3000.0]], dtype=np.float32)
    image = thumbnails.window_to_uint8(values, center=40, width=400)
    assert image.dtype == np.uint8
    assert image.tolist() == [[0, 0, 127, 255, 255]]


def test_auto_window_ignores_a_few_extreme_pixels():
    values = np.zeros((100, 100), dtype=np.float32)
    values[:, 50:] = 100
    values[0, 0] = 1e6  # one hot pixel must not flatten the image
    center, width = thumbnails.auto_window(values)
    assert 0 <= center - width / 2 and center + width / 2 <= 100.0 + 1e-3


def test_scale_keeps_aspect_ratio():
    image = np.zeros((512, 256), dtype=np.uint8)
    assert thumbnails.scale_to_fit(image, 128).shape == (128, 64)


@pytest.mark.parametrize("name, colour", [("CT_small.dcm", False), ("MR_small.dcm", False),
                                          ("SC_rgb_rle.dcm", True), ("JPEG2000.dcm", False)])
def test_real_files_give_non_blank_thumbnails(pydicom_file, name, colour):
    image = thumbnails.image_from_file(pydicom_file(name), 128)
    assert max(image.shape[:2]) == 128
    assert (image.ndim == 3) == colour
    assert image.std() > 10  # not a flat image


def test_file_without_pixels_is_a_named_error(tmp_path, pydicom_file):
    import pydicom

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(DICOMFileError, match="nopixels.dcm"):
        thumbnails.image_from_file(path)


def test_series_thumbnail_is_cached_from_the_middle_instance(database, series_factory):
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    files = series_factory("ct", count=9, rows=32, columns=32, patient_id="THUMB")
    import_paths(database, [files[0].parent])
    series_uid = database.series()[0]["SeriesInstanceUID"]
    assert thumbnails.middle_file(database, series_uid) == str(files[4])
    path = thumbnails.series_thumbnail(database, series_uid)
    assert path == database.folder / "thumbnails" / f"{series_uid}.png"
    mtime = path.stat().st_mtime_ns
    assert thumbnails.series_thumbnail(database, series_uid) == path
    assert path.stat().st_mtime_ns == mtime  # cached, not rewritten

    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (128, 128)
