"""Correctness against peers: every corpus series with a dcm2niix reference (stored in `Ref/`, or
produced by running dcm2niix live here) loads to the same voxels and the same voxel-to-RAS affine
within 1e-2 mm, and the CT/MR series get the same geometry as SimpleITK's ImageSeriesReader.

Frames: our matrices and NIfTI affines are both RAS (mm); SimpleITK is LPS. NIfTI stores the
voxel axes in its own order, with flips: `comparison.in_reference_order` (the same grid mapping
as `dicombrowser compare`) finds the signed permutation that maps our (i, j, k) onto the
reference's, and fails if there is none (i.e. the grids differ).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import geometry
from DICOMBrowser.DICOMBrowserLib.comparison import in_reference_order
from DICOMPlugins.DICOMScalarVolumePlugin import DICOMScalarVolumePlugin

nibabel = pytest.importorskip("nibabel")
AFFINE_TOLERANCE_MM = 1e-2
FAILING = "dicom2nifti/tests/data/failing"


def dicom_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in
                  (".nii", ".gz", ".json", ".bval", ".bvec", ".txt", ".md", ".nrrd") and "licen" not in p.name.lower())


def loadables(folder: Path):
    return DICOMScalarVolumePlugin().examineFiles(dicom_files(folder))


def run_dcm2niix(folder: Path, output: Path) -> dict[str, Path]:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not installed (Debian package dcm2niix)")
    output.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcm2niix", "-b", "n", "-z", "n", "-o", str(output), "-f", "ref", str(folder)],
                   check=True, capture_output=True, timeout=300)
    return {p.name: p for p in output.glob("*.nii")}


# --- scalar CT/MR series vs dcm2niix run live ------------------------------------------------------
@pytest.mark.parametrize("folder", [
    "slicer_ct_head", "ge_t1", "dicom2nifti/tests/data/hitachi/anatomical/001",
])
def test_matches_dcm2niix_live(corpus, tmp_path, folder):
    outputs = run_dcm2niix(corpus / folder, tmp_path / "ref")
    reference = nibabel.load(outputs["ref.nii"])
    [loadable] = loadables(corpus / folder)
    assert loadable.warning == ""
    volume = DICOMScalarVolumePlugin().read_volume(loadable)
    ours = in_reference_order(volume.voxels, volume.ijk_to_ras, reference.affine)
    assert ours.shape == reference.shape
    assert np.array_equal(ours, np.asarray(reference.get_fdata(dtype=np.float32)))


def test_hitachi_matches_the_stored_ground_truth(corpus):
    reference = nibabel.load(corpus / "dicom2nifti/tests/data/hitachi/anatomical/001_ground_truth.nii.gz")
    [loadable] = loadables(corpus / "dicom2nifti/tests/data/hitachi/anatomical/001")
    volume = DICOMScalarVolumePlugin().read_volume(loadable)
    ours = in_reference_order(volume.voxels, volume.ijk_to_ras, reference.affine)
    assert np.array_equal(ours, np.asarray(reference.get_fdata(dtype=np.float32)))


# --- enhanced multi-frame vs the stored dcm2niix references ----------------------------------------
def test_philips_enhanced_field_map_matches_both_references(corpus):
    """Philips' precise floating-point values (RescaleSlope/Intercept with the private scale slope
    2005,100E), as dcm2niix writes them by default; the display values stay an alternative."""
    found = loadables(corpus / "enhanced_multiframe/In/Philips")
    defaults = [l for l in found if l.selected]
    assert len(defaults) == 2 and all("display" not in l.name for l in defaults)
    assert len([l for l in found if l.extra.get("scaling") == "display"]) == 2
    by_type = {("fieldmaphz" in l.name): l for l in defaults}
    plugin = DICOMScalarVolumePlugin()
    for is_field_map, reference_name in ((False, "Philips_WIP_B0_NS_801_e1.nii"),
                                         (True, "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii")):
        volume = plugin.read_volume(by_type[is_field_map])
        assert volume.scaling.startswith("Philips precise")
        reference = nibabel.load(corpus / "enhanced_multiframe/Ref" / reference_name)
        ours = in_reference_order(volume.voxels, volume.ijk_to_ras, reference.affine)
        expected = reference.get_fdata()
        assert np.allclose(ours, expected, rtol=1e-5, atol=1e-2 if is_field_map else 0), reference_name



def test_siemens_enhanced_time_series_matches_4d_reference(corpus):
    found = loadables(corpus / "enhanced_multiframe/In/Siemens/XA10")
    series = [l for l in found if l.extra["kind"] == "sequence"]
    assert len(series) == 1 and series[0].selected
    assert sum(l.selected for l in found) == 1  # the 4D loadable, not its volumes
    volume = DICOMScalarVolumePlugin().read_volume(series[0])
    assert volume.voxels.shape == (4, 6, 64, 64)
    reference = nibabel.load(corpus / "enhanced_multiframe/Ref/Siemens_REST1_w_SMS_PF7-8_6.nii")
    ours = in_reference_order(volume.voxels, volume.ijk_to_ras, reference.affine)
    assert ours.shape == reference.shape
    assert np.array_equal(ours, np.asarray(reference.get_fdata(dtype=np.float32)))


# --- irregular real series: the regularized loadable vs dcm2niix's own correction -------------------
def test_gantry_tilt_regularized_matches_dcm2niix_tilt_correction(corpus, tmp_path):
    folder = corpus / FAILING / "gantrytilting/001"
    outputs = run_dcm2niix(folder, tmp_path / "ref")
    corrected = nibabel.load(outputs["ref_Tilt_1.nii"])  # dcm2niix's resampled, de-tilted volume
    found = loadables(folder)
    as_acquired, regularized = found[:2]
    assert "tilt" in as_acquired.warning and regularized.extra["regularize"]
    plugin = DICOMScalarVolumePlugin()
    volume = plugin.read_volume(regularized)
    # dcm2niix widens its grid to hold the shifted slices: compare on our grid, inside the field
    theirs = np.asarray(corrected.get_fdata(dtype=np.float32))
    ours, region = in_reference_order(volume.voxels, volume.ijk_to_ras, corrected.affine, theirs.shape)
    theirs = theirs[region]
    assert theirs.shape == ours.shape
    inside = (slice(20, -20), slice(20, -20), slice(None))
    difference = np.abs(ours[inside] - theirs[inside])
    assert difference.max() <= 0.5 + 1e-3  # dcm2niix rounds its interpolated values to integers
    # and the as-acquired volume (tilt left in) is far from it in the last slice
    raw = plugin.read_volume(as_acquired)
    raw_ours, _ = in_reference_order(raw.voxels, raw.ijk_to_ras, corrected.affine, theirs.shape)
    assert np.percentile(np.abs(raw_ours[inside] - theirs[inside])[..., -1], 99) > 50


def test_missing_slice_regularized_keeps_acquired_slices_and_fills_the_gap(corpus):
    found = loadables(corpus / FAILING / "sliceincrement/001")
    as_acquired, regularized = found[:2]
    assert "1 slices missing" in as_acquired.warning
    # the gap lies between two acquisitions (AcquisitionNumber 4 and 5), also offered apart
    assert [l.name.split("[")[-1] for l in found[2:]] == ["AcquisitionNumber 4]", "AcquisitionNumber 5]"]
    plugin = DICOMScalarVolumePlugin()
    raw = plugin.read_volume(as_acquired)
    fixed = plugin.read_volume(regularized)
    assert raw.voxels.shape[0] == 4 and fixed.voxels.shape[0] == 5
    # the acquired slices sit where their positions say (28 -> 38 mm jump: slice 4 is missing)
    for acquired, k in zip(range(4), (0, 1, 2, 4)):
        assert np.array_equal(fixed.voxels[k], raw.voxels[acquired].astype(np.float32))
        position = np.asarray(raw.records[acquired].position)
        assert np.allclose((geometry.LPS_TO_RAS @ fixed.ijk_to_ras @ [0, 0, k, 1])[:3], position, atol=1e-2)
    assert np.allclose(fixed.voxels[3], (raw.voxels[2].astype(np.float32) + raw.voxels[3]) / 2)


# --- SimpleITK's ImageSeriesReader (LPS) ----------------------------------------------------------------
@pytest.mark.parametrize("folder", [
    "slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom", "ge_t1/In/05_3D_Ax_T1_MP_RAGE_R22",
    "dicom2nifti/tests/data/hitachi/anatomical/001",
])
def test_same_geometry_and_voxels_as_simpleitk(corpus, folder):
    sitk = pytest.importorskip("SimpleITK")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(corpus / folder)))
    image = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    [loadable] = loadables(corpus / folder)
    volume = DICOMScalarVolumePlugin().read_volume(loadable)
    assert geometry.affine_max_difference(geometry.LPS_TO_RAS @ lps, volume.ijk_to_ras) < AFFINE_TOLERANCE_MM
    assert np.array_equal(sitk.GetArrayFromImage(image).astype(np.float32), volume.voxels.astype(np.float32))


# --- the same series as an enhanced multi-frame object (highdicom's legacy converter) ------------------
@pytest.mark.filterwarnings("ignore:The string:UserWarning")  # the corpus' single-component PatientName
def test_enhanced_conversion_of_the_ct_head_loads_like_the_single_frame_series(corpus, tmp_path):
    """highdicom turns the 93 CT slices into one Legacy Converted Enhanced CT object; the
    per-frame functional group path must give the same voxels and matrix as the slice path."""
    import pydicom

    highdicom = pytest.importorskip("highdicom")
    files = dicom_files(corpus / "slicer_ct_head")
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files], series_instance_uid=highdicom.UID(),
        series_number=99, sop_instance_uid=highdicom.UID(), instance_number=1)
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    plugin = DICOMScalarVolumePlugin()
    [single] = plugin.examineFiles(files)
    [multi] = plugin.examineFiles([str(path)])
    assert multi.warning == "" and multi.selected and multi.files == [str(path)]
    single_volume, multi_volume = plugin.read_volume(single), plugin.read_volume(multi)
    assert np.array_equal(single_volume.voxels, multi_volume.voxels)
    assert geometry.affine_max_difference(single_volume.ijk_to_ras, multi_volume.ijk_to_ras) < 1e-6
