"""RT Dose: a user loads pydicom's real RT Dose file and gets dose in Gy, placed where plastimatch
(Debian's `plastimatch convert --output-dose-img`, an independent reader) places it.

Given rtdose.dcm (15 planes, DoseGridScaling 1e-6, relative GridFrameOffsetVector), when loaded
through `dicombrowser load`, then every voxel equals plastimatch's dose to float precision and the
geometry matches; the absolute form of GridFrameOffsetVector gives the same grid; a file without
DoseGridScaling is refused with the attribute named.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk


def _plastimatch_dose(path, output):
    if shutil.which("plastimatch") is None:
        pytest.skip("plastimatch not installed (Debian package plastimatch; Utilities/setup.sh --test)")
    subprocess.run(["plastimatch", "convert", "--input", str(path), "--output-dose-img", str(output)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return sitk.ReadImage(str(output))


def _assert_same_grid(image, reference):
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    assert np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    assert np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)


def test_rtdose_loads_in_gy_like_plastimatch(cli_runner, pydicom_file, tmp_path):
    source = pydicom_file("rtdose.dcm")
    examined = json.loads(cli_runner("examine", str(source), "--json").output)
    selected = [l for l in examined if l["selected"]]
    assert [l["plugin"] for l in selected] == ["DICOMRTDosePlugin"]
    assert "BEAM" in selected[0]["name"]  # the summation type is in the name
    # the scalar plugin leaves RT dose alone: its stored values are not dose
    assert not any(l["plugin"] == "DICOMScalarVolumePlugin" for l in examined)

    output = tmp_path / "dose.nrrd"
    result = cli_runner("load", str(source), "--output", str(output))
    assert result.exit_code == 0, result.output
    ours = sitk.ReadImage(str(output))
    reference = _plastimatch_dose(source, tmp_path / "plastimatch.nrrd")
    _assert_same_grid(ours, reference)
    ours_gy, reference_gy = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(reference)
    assert np.allclose(ours_gy, reference_gy, rtol=1e-6, atol=1e-9)
    stored = pydicom.dcmread(source).pixel_array
    assert np.allclose(ours_gy, stored * 1e-6, rtol=1e-6)  # DoseGridScaling applied
    assert ours_gy.max() > 1.0  # Gy, not stored counts (which reach 1,254,000 here)


def test_absolute_grid_frame_offsets_give_the_same_grid(pydicom_file, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import rt

    source = pydicom_file("rtdose.dcm")
    dataset = pydicom.dcmread(source)
    z0 = float(dataset.ImagePositionPatient[2])
    dataset.GridFrameOffsetVector = [z0 + float(v) for v in dataset.GridFrameOffsetVector]
    absolute = tmp_path / "absolute.dcm"
    dataset.save_as(absolute)
    relative_grid, absolute_grid = rt.read_dose(str(source)), rt.read_dose(str(absolute))
    assert (relative_grid.offsets_form, absolute_grid.offsets_form) == ("relative", "absolute")
    assert np.allclose(relative_grid.ijk_to_ras, absolute_grid.ijk_to_ras)
    assert np.array_equal(relative_grid.dose, absolute_grid.dose)
    reference = _plastimatch_dose(absolute, tmp_path / "absolute.nrrd")
    assert np.allclose(reference.GetSpacing()[2], absolute_grid.ijk_to_ras[2, 2])


def test_dose_planes_in_descending_order(pydicom_file, tmp_path):
    """Offsets that decrease put plane k below plane 0: the k axis points down (RAS z negative)."""
    from DICOMBrowser.DICOMBrowserLib import rt

    dataset = pydicom.dcmread(pydicom_file("rtdose.dcm"))
    dataset.GridFrameOffsetVector = [-float(v) for v in dataset.GridFrameOffsetVector]
    path = tmp_path / "descending.dcm"
    dataset.save_as(path)
    grid = rt.read_dose(str(path))
    assert grid.ijk_to_ras[2, 2] == pytest.approx(-5.0)


def test_missing_dose_grid_scaling_is_refused_by_name(pydicom_file, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import rt
    from DICOMBrowser.DICOMBrowserLib.errors import DICOMFileError

    dataset = pydicom.dcmread(pydicom_file("rtdose.dcm"))
    del dataset.DoseGridScaling
    path = tmp_path / "noscaling.dcm"
    dataset.save_as(path)
    with pytest.raises(DICOMFileError, match="DoseGridScaling is missing") as error:
        rt.read_dose(str(path))
    assert str(path) in str(error.value)


def test_dose_node_carries_units_colour_and_summation(pydicom_file):
    from DICOMBrowser.DICOMBrowserLib import loading, scene

    report = loading.examine(None, [[str(pydicom_file("rtdose.dcm"))]])
    chosen = [l for l in report.loadables if l.selected]
    mrml = scene.new_scene()  # kept: a scene is freed with its last reference
    nodes = loading.load_loadables(chosen, mrml, report=report)
    node = nodes[0]
    assert node.GetAttribute("DICOM.RTDose.SummationType") == "BEAM"
    assert node.GetAttribute("DICOM.RTDose.DoseGridScaling") == "1e-06"
    assert node.GetDisplayNode().GetColorNode().GetName() == "Dose"
