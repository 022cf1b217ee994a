"""Parametric maps: a map made by highdicom (an independent writer) from dcmqi's real ADC slice
loads as a volume in the mapping's units, on the slice's own grid.

Given pm-example-slice.dcm (a real ADC MR slice, 256 x 256) and a Parametric Map written by
highdicom from it (float pixel data, and an integer one with a Real World Value Mapping slope),
when loaded through `dicombrowser load`, then the values equal stored value x slope + intercept
computed here with numpy, the units are the mapping's ({um2/s}), and the geometry is
SimpleITK's reading of the source slice.
"""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

SOURCE = "dcmqi_seg/data/paramaps/pm-example-slice.dcm"


def _write_map(source_path, output, stored: np.ndarray, slope: float, intercept: float):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = pydicom.dcmread(source_path)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ADC", lut_explanation="Apparent Diffusion Coefficient",
        unit=codes.UCUM.SquareMicrometerPerSecond if hasattr(codes.UCUM, "SquareMicrometerPerSecond")
        else hd.sr.CodedConcept("um2/s", "UCUM", "um2/s"),
        value_range=(float(stored.min()), float(stored.max())) if stored.dtype.kind == "f"
        else (int(stored.min()), int(stored.max())),
        slope=slope, intercept=intercept)
    pmap = hd.pm.ParametricMap(
        [source], stored[np.newaxis], hd.UID(), 7, hd.UID(), 1, "test", "test", "1", "1", False, [mapping],
        window_center=0.0, window_width=1.0)
    pmap.SeriesDescription = "ADC map"
    pmap.save_as(output)
    return output


@pytest.mark.parametrize("kind", ["float", "integer"])
def test_parametric_map_loads_in_its_units(cli_runner, corpus, tmp_path, kind):
    source = corpus / SOURCE
    pixels = pydicom.dcmread(source).pixel_array
    if kind == "float":
        stored, slope, intercept = pixels.astype(np.float32) * np.float32(0.5), 1.0, 0.0
    else:
        stored, slope, intercept = pixels.astype(np.uint16), 0.25, -3.0
    path = _write_map(source, tmp_path / "map.dcm", stored, slope, intercept)
    loadables = json.loads(cli_runner("examine", str(path), "--json").output)
    (chosen,) = [l for l in loadables if l["selected"]]
    assert chosen["plugin"] == "DICOMParametricMapPlugin"

    output = tmp_path / "map.nrrd"
    result = cli_runner("load", str(path), "--output", str(output))
    assert result.exit_code == 0, result.output
    ours = sitk.ReadImage(str(output))
    expected = stored.astype(np.float64) * slope + intercept
    assert np.allclose(sitk.GetArrayFromImage(ours)[0], expected, rtol=1e-6, atol=1e-5)
    reference = sitk.ReadImage(str(source))
    assert np.allclose(ours.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    assert np.allclose(ours.GetSpacing()[:2], reference.GetSpacing()[:2], atol=1e-5)
    assert np.allclose(np.array(ours.GetDirection()).reshape(3, 3)[:, :2],
                       np.array(reference.GetDirection()).reshape(3, 3)[:, :2], atol=1e-4)  # the source cosines are not quite unit length


def test_node_carries_the_units(corpus, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import loading, scene

    source = corpus / SOURCE
    stored = pydicom.dcmread(source).pixel_array.astype(np.float32)
    path = _write_map(source, tmp_path / "map.dcm", stored, 1.0, 0.0)
    report = loading.examine(None, [[str(path)]])
    mrml = scene.new_scene()
    (node,) = loading.load_loadables([l for l in report.loadables if l.selected], mrml, report=report)
    assert node.GetVoxelValueUnits().GetCodeValue() == node.GetAttribute("DICOM.units")
    assert "um2/s" in node.GetAttribute("DICOM.units") or "um2" in node.GetVoxelValueUnits().GetCodeMeaning()
    assert node.GetAttribute("DICOM.quantity") == "Apparent Diffusion Coefficient"
