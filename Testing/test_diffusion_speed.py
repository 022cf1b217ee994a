"""The fast diffusion paths give what the slow ones gave: header values from the tag cache or the
header scan (no pydicom Dataset per file), examining a series in the database without opening its
files, partial reads for sequence vendors, and pixels read at the recorded offsets."""
from __future__ import annotations


import numpy as np
import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import indexer
from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
from DICOMBrowser.DICOMBrowserLib.diffusion import plan_dwi, read_dwi
from DICOMBrowser.DICOMBrowserLib.diffusion import series as dwi_series
from DICOMBrowser.DICOMBrowserLib.diffusion.node import new_scene, series_from_node
from DICOMBrowser.DICOMBrowserLib.headerscan import scan_file
from DICOMPlugins.DICOMDiffusionVolumePlugin import DICOMDiffusionVolumePlugin

def test_plugin_declares_every_plan_tag_name_to_tag():
    """Slicer's orientation (name -> tag), and the indexer caches every tag the plan reads."""
    tags = DICOMDiffusionVolumePlugin.tags
    assert all(len(tag) == 9 and tag[4] == "," for tag in tags.values())
    assert tags["PhilipsDiffusionBValue"] == "2001,1003" and tags["ImagePositionPatient"] == "0020,0032"
    required = set(indexer.required_tags())
    assert set(dwi_series.SCAN_TAGS) <= required
    assert "0019,100c" in required  # Siemens b-value, probed by examine


@pytest.mark.parametrize("relative", [("ge_dwi", "In", "01_Ax_DWI_TENSOR_R2"), ("philips_dwi", "In", "cl", "DICOM", "IM_0002")])
def test_scan_header_gives_pydicom_values(corpus, relative):
    """ScanHeader answers get/in/[tag] as a pydicom Dataset would, for the values the readers use."""
    path = corpus.joinpath(*relative)
    if path.is_dir():
        path = sorted(path.iterdir())[0]
    full = pydicom.dcmread(str(path), stop_before_pixels=True)
    header = dwi_series.ScanHeader.from_strings(scan_file(path, list(dwi_series.SCAN_TAGS)).values)
    checked = 0
    for tag in dwi_series.SCAN_TAGS:
        key = (int(tag[:4], 16), int(tag[5:], 16))
        element = full.get(key)
        if element is None or element.value in (None, "", b""):
            assert key not in header
            continue
        assert key in header
        ours, theirs = header[key].value, element.value
        if isinstance(theirs, (list, pydicom.multival.MultiValue)):
            assert len(ours) == len(theirs), tag
            pairs = list(zip(ours, theirs))
        else:
            pairs = [(ours[0] if isinstance(ours, tuple) else ours, theirs)]
        for a, b in pairs:
            if isinstance(b, (int, float)):
                assert float(a) == pytest.approx(float(b), rel=1e-6), tag
            else:
                assert str(a) == str(b), tag
        checked += 1
    assert checked > 20
    assert header.Rows == full.Rows and list(header.get("ImageType")) == list(full.ImageType)
    assert header.get("Manufacturer") == full.Manufacturer and "NoSuchKeyword" not in header


@pytest.mark.timeout(120)
def test_examine_with_database_opens_no_file(ge_copy, ge_files, tmp_path):
    """With the series imported, examine works from the tag cache alone (the files are moved away
    meanwhile); load then reads the pixels at the indexed offsets."""
    database = DICOMDatabase(tmp_path / "db")
    try:
        summary = indexer.import_paths(database, [str(ge_copy[0].parent)])
        assert summary.indexed == len(ge_copy)
        paths = [str(p) for p in ge_copy]
        truth = read_dwi(ge_files)
        away = ge_copy[0].parent.with_name("away")
        ge_copy[0].parent.rename(away)
        try:
            loadables = DICOMDiffusionVolumePlugin(database).examine([paths])
        finally:
            away.rename(ge_copy[0].parent)
        assert len(loadables) == 1
        plan = loadables[0].extra["plan"]
        np.testing.assert_array_equal(plan.bvalues, truth.bvalues)
        np.testing.assert_allclose(plan.gradients_lps, truth.gradients_lps, atol=1e-12)
        np.testing.assert_allclose(plan.ijk_to_ras, truth.ijk_to_ras, atol=1e-9)
        assert plan.pixel_locations == {}  # nothing scanned: the database records the offsets
        node = DICOMDiffusionVolumePlugin(database).load(loadables[0], new_scene())
        np.testing.assert_array_equal(series_from_node(node).voxels, truth.voxels)
        through_database = read_dwi(paths, database=database)
        np.testing.assert_array_equal(through_database.voxels, truth.voxels)
        assert through_database.identity == truth.identity
    finally:
        database.close()


def test_plan_keeps_the_scanned_pixel_offsets(ge_files):
    plan = plan_dwi(ge_files)
    assert set(plan.pixel_locations) == {str(p) for p in ge_files}
    syntax, offset, length, _values = plan.pixel_locations[str(ge_files[0])]
    assert offset > 0 and length == 256 * 256 * 2


def test_canon_mr_series_without_diffusion_is_declined(corpus, tmp_path):
    """A Canon MR series is probed with a partial read of its diffusion sequences, not planned."""
    sources = sorted(p for p in (corpus / "ge_t1").rglob("*") if p.is_file())[:6]
    copies = []
    for index, source in enumerate(sources):
        ds = pydicom.dcmread(str(source))
        ds.Manufacturer = "CANON_MEC"
        target = tmp_path / f"canon{index}.dcm"
        ds.save_as(str(target))
        copies.append(str(target))
    assert not dwi_series.has_diffusion_sequence(copies[0])
    assert DICOMDiffusionVolumePlugin().examine([copies]) == []
