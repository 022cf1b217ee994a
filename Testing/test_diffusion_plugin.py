"""The diffusion plugin and its writers: examine/load into a vtkMRMLDiffusionWeightedVolumeNode,
Slicer's own NRRD reader on our NRRD DWI, FSL sidecars, and the warnings a user needs (derived
images, missing slices, mixed orientations), on real GE slices re-labelled as other vendors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from DICOMBrowser.DICOMBrowserLib.diffusion import read_dwi, read_nrrd, save_dwi, read_fsl
from DICOMBrowser.DICOMBrowserLib.diffusion.gradients import (fsl_bvecs, nrrd_gradients, from_nrrd_gradients,
                                                             world_from_fsl_bvecs)
from DICOMBrowser.DICOMBrowserLib.diffusion.node import add_dwi_node, new_scene, series_from_node
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError
from DICOMPlugins.DICOMDiffusionVolumePlugin import DICOMDiffusionVolumePlugin

def test_plugin_offers_dwi_above_scalar_and_loads_node(ge_files):
    from DICOMPlugins import allPlugins

    loadables = DICOMDiffusionVolumePlugin().examine([[str(p) for p in ge_files]])
    assert len(loadables) == 1 and loadables[0].selected and loadables[0].confidence == 0.8
    assert "b = 0, 1000" in loadables[0].tooltip
    scalar = allPlugins().get("DICOMScalarVolumePlugin")
    if scalar is not None:
        scalar_loadables = scalar().examine([[str(p) for p in ge_files]])
        assert scalar_loadables and max(l.confidence for l in scalar_loadables) < loadables[0].confidence
    scene = new_scene()
    node = DICOMDiffusionVolumePlugin().load(loadables[0], scene)
    assert node.IsA("vtkMRMLDiffusionWeightedVolumeNode") and node.GetNumberOfGradients() == 7
    assert node.GetImageData().GetDimensions() == (256, 256, 2)
    assert node.GetImageData().GetNumberOfScalarComponents() == 7
    header = pydicom.dcmread(str(ge_files[0]), stop_before_pixels=True)
    assert node.GetAttribute("DICOM.seriesInstanceUID") == header.SeriesInstanceUID
    assert len(node.GetAttribute("DICOM.instanceUIDs").split()) == 14
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = hierarchy.GetItemByDataNode(node)
    study = hierarchy.GetItemParent(item)
    assert hierarchy.GetItemUID(study, "DICOM") == header.StudyInstanceUID
    assert hierarchy.GetItemUID(hierarchy.GetItemParent(study), "DICOM") == header.PatientID
    series = series_from_node(node)
    direct = read_dwi(ge_files)
    np.testing.assert_array_equal(series.voxels, direct.voxels)
    np.testing.assert_allclose(series.gradients_lps, direct.gradients_lps, atol=1e-12)
    np.testing.assert_allclose(series.ijk_to_ras, direct.ijk_to_ras, atol=1e-9)


def test_plugin_ignores_non_diffusion_series(corpus):
    files = sorted((corpus / "ge_t1").rglob("*"))
    files = [str(p) for p in files if p.is_file()][:20]
    assert DICOMDiffusionVolumePlugin().examine([files]) == []
    hitachi = sorted(str(p) for p in (corpus / "dicom2nifti" / "tests" / "data" / "hitachi" / "anatomical" / "001").iterdir())
    assert DICOMDiffusionVolumePlugin().examine([hitachi]) == []  # a Hitachi MR series is parsed, then declined


def test_ge_t1_is_declined_without_a_header_plan(corpus, monkeypatch):
    """GE writes (0043,1039) on every MR image (b = 0 when not diffusion weighted): a series in
    which no image has b > 0 there (or in 0018,9087) is declined from the cached values alone."""
    from DICOMBrowser.DICOMBrowserLib import diffusion

    def no_plan(*args, **kwargs):
        raise AssertionError("the header plan was made for a series without any b > 0")

    monkeypatch.setattr(diffusion, "plan_dwi", no_plan)
    files = [str(p) for p in sorted((corpus / "ge_t1").rglob("*")) if p.is_file()]
    assert pydicom.dcmread(files[0], stop_before_pixels=True).get((0x0043, 0x1039)) is not None
    assert DICOMDiffusionVolumePlugin().examine([files]) == []


def test_enhanced_fmri_is_declined_without_a_header_plan(corpus, monkeypatch):
    """An enhanced MR series none of whose frames has an MR Diffusion Sequence (the Siemens XA10
    fMRI run, one file per volume) is declined from the headers, without planning every frame;
    the Philips enhanced DTI (per-frame diffusion sequences) is still offered."""
    from DICOMBrowser.DICOMBrowserLib import diffusion

    real = diffusion.plan_dwi
    planned = []

    def counting(files, *args, **kwargs):
        planned.append(files)
        return real(files, *args, **kwargs)

    monkeypatch.setattr(diffusion, "plan_dwi", counting)
    fmri = sorted(str(p) for p in (corpus / "fmri_timeseries/In/Siemens/XA10").rglob("*.dcm"))
    assert len(fmri) == 18
    assert DICOMDiffusionVolumePlugin().examine([fmri]) == [] and planned == []
    dti = sorted(str(p) for p in (corpus / "dicom2nifti/tests/data/philips_enhanced/dti").rglob("*") if p.is_file())
    loadables = DICOMDiffusionVolumePlugin().examine([dti])
    assert len(loadables) == 1 and loadables[0].selected and len(planned) == 1


def test_ge_dwi_found_when_the_probed_images_are_all_b0(ge_copy):
    """Examine probes the first, middle and last file; when all three are b = 0 images, a b > 0
    elsewhere in the series still makes it a DWI (GE's tag is on every image, so its presence in
    the probes proves nothing either way)."""
    def bvalue(path):
        raw = pydicom.dcmread(str(path), stop_before_pixels=True)[0x0043, 0x1039].value
        return float(raw[0]) % 100000

    b0 = [p for p in ge_copy if bvalue(p) == 0]
    weighted = [p for p in ge_copy if bvalue(p) > 0]
    assert len(b0) == 2 and len(weighted) == 12
    third = b0[0].parent / "b0_again.dcm"
    shutil.copy(b0[0], third)

    def another_instance(ds):
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = 99

    _edit(third, another_instance)
    files = [str(p) for p in [b0[0], *weighted[:6], third, *weighted[6:], b0[1]]]
    assert [bvalue(files[i]) for i in (0, len(files) // 2, len(files) - 1)] == [0, 0, 0]
    loadables = DICOMDiffusionVolumePlugin().examine([files])
    assert len(loadables) == 1 and "b = 0, 1000" in loadables[0].tooltip


@pytest.mark.timeout(120)
def test_nrrd_dwi_read_back_by_slicer(ge_files, tmp_path):
    """Our NRRD DWI, read by slicer-core's own vtkMRMLNRRDStorageNode into a DWI node."""
    import slicer

    series = read_dwi(ge_files)
    series.bvalues[3] = 500.0  # a second shell, to check the sqrt(b / b_max) scaling
    path = save_dwi(series, tmp_path / "dwi.nrrd")[0]
    header = path.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "DWMRI_b-value:=1000" in header and "kinds: list domain domain domain" in header
    assert "space: left-posterior-superior" in header and "measurement frame: (1,0,0) (0,1,0) (0,0,1)" in header
    line = next(l for l in header.splitlines() if l.startswith("DWMRI_gradient_0003"))
    np.testing.assert_allclose(np.linalg.norm([float(v) for v in line.split("=")[1].split()]), np.sqrt(0.5), atol=1e-9)
    scene = slicer.vtkMRMLScene()
    storage = slicer.vtkMRMLNRRDStorageNode()
    storage.SetFileName(str(path))
    scene.AddNode(storage)
    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    scene.AddNode(node)
    assert storage.ReadData(node) == 1
    back = series_from_node(node)
    np.testing.assert_array_equal(back.voxels, series.voxels)
    np.testing.assert_allclose(back.ijk_to_ras, series.ijk_to_ras, atol=1e-6)
    np.testing.assert_allclose(back.bvalues, series.bvalues, atol=1e-3)
    np.testing.assert_allclose(back.gradients_lps, series.gradients_lps, atol=1e-6)
    ours = read_nrrd(path)
    np.testing.assert_allclose(ours.gradients_lps, series.gradients_lps, atol=1e-6)


def test_slicer_written_dwi_nrrd_read_by_us(ge_files, tmp_path):
    """The other direction: Slicer's writer (RAS space, non-identity measurement frame)."""
    import slicer

    scene = new_scene()
    series = read_dwi(ge_files)
    node = add_dwi_node(scene, series)
    storage = slicer.vtkMRMLNRRDStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "slicer.nrrd"))
    assert storage.WriteData(node) == 1
    back = read_nrrd(tmp_path / "slicer.nrrd")
    np.testing.assert_array_equal(back.voxels, series.voxels)
    np.testing.assert_allclose(back.gradients_lps, series.gradients_lps, atol=1e-6)
    np.testing.assert_allclose(back.ijk_to_ras, series.ijk_to_ras, atol=1e-6)


def test_save_dwi_by_extension(ge_files, tmp_path):
    scene = new_scene()
    node = add_dwi_node(scene, read_dwi(ge_files))
    written = save_dwi(node, tmp_path / "out" / "dwi.nii.gz")
    assert [p.name for p in written] == ["dwi.nii.gz", "dwi.bval", "dwi.bvec"]
    array, affine, bvals, bvecs = read_fsl(written[0])
    assert array.shape == (256, 256, 2, 7) and list(bvals) == [0] + [1000] * 6
    with pytest.raises(DICOMBrowserError):
        save_dwi(node, tmp_path / "dwi.mha")


def test_bvec_conventions_are_inverse_for_both_handednesses():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(20, 3))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for sign in (1, -1):
        affine = np.eye(4)
        affine[:3, :3] = rotation @ np.diag([2.0, 2.0, 3.0 * sign])
        np.testing.assert_allclose(world_from_fsl_bvecs(fsl_bvecs(vectors, affine), affine), vectors, atol=1e-12)
    b_max, scaled = nrrd_gradients(vectors[:3], np.array([0.0, 500.0, 1000.0]))
    bvalues, units = from_nrrd_gradients(b_max, scaled)
    np.testing.assert_allclose(bvalues, [0, 500, 1000], atol=1e-9)
    np.testing.assert_allclose(units[1:], vectors[1:3], atol=1e-12)


# --- warnings on real data, modified ------------------------------------------------------
def _edit(path: Path, change) -> None:
    ds = pydicom.dcmread(str(path))
    change(ds)
    ds.save_as(str(path))


def test_derived_trace_image_is_excluded(ge_copy, ge_files):
    trace = ge_copy[0].parent / "trace.dcm"
    shutil.copy(ge_copy[2], trace)

    def as_trace(ds):
        ds.SOPInstanceUID = generate_uid()
        ds.ImageType = ["DERIVED", "PRIMARY", "TRACEW"]
        ds.InstanceNumber = 99

    _edit(trace, as_trace)
    series = read_dwi(ge_copy + [trace])
    assert series.voxels.shape == (7, 2, 256, 256)
    assert any("derived" in w for w in series.warnings)
    np.testing.assert_array_equal(series.voxels, read_dwi(ge_files).voxels)


def test_missing_slice_is_reported(ge_copy):
    series = read_dwi(ge_copy[:5] + ge_copy[6:])  # one slice of the third volume gone
    assert any("missing slices" in w for w in series.warnings)
    assert series.voxels.shape[0] == 6


def test_mixed_orientation_is_reported(ge_copy):
    extra = ge_copy[0].parent / "sagittal.dcm"
    shutil.copy(ge_copy[0], extra)
    _edit(extra, lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]))
    series = read_dwi(ge_copy + [extra])
    assert any("mixed orientations" in w for w in series.warnings)
    assert series.voxels.shape == (7, 2, 256, 256)


def _strip_ge(ds) -> None:
    for tag in [(0x0043, 0x1039), (0x0019, 0x10BB), (0x0019, 0x10BC), (0x0019, 0x10BD), (0x0018, 0x9087)]:
        if tag in ds:
            del ds[tag]


@pytest.mark.parametrize("where", ["shared functional groups (Canon)", "top-level MR Diffusion Sequence (Hitachi)"])
def test_standard_diffusion_sequence_in_oblique_slices(ge_copy, ge_files, where):
    """Canon/Toshiba and Hitachi classic images carry the standard diffusion macro in a sequence."""
    truth = read_dwi(ge_files)
    by_file = {}
    for volume_index, volume in enumerate(range(7)):
        by_file[2 * volume] = by_file[2 * volume + 1] = volume_index

    for index, path in enumerate(ge_copy):
        volume = by_file[index]

        def relabel(ds, volume=volume):
            _strip_ge(ds)
            ds.Manufacturer = "CANON_MEC" if "Canon" in where else "Hitachi Medical Corporation"
            item = pydicom.Dataset()
            item.DiffusionBValue = float(truth.bvalues[volume])
            item.DiffusionDirectionality = "DIRECTIONAL" if truth.bvalues[volume] > 0 else "NONE"
            if truth.bvalues[volume] > 0:
                direction = pydicom.Dataset()
                direction.DiffusionGradientOrientation = [float(v) for v in truth.gradients_lps[volume]]
                item.DiffusionGradientDirectionSequence = [direction]
            if "Canon" in where:
                group = pydicom.Dataset()
                group.MRDiffusionSequence = [item]
                ds.SharedFunctionalGroupsSequence = [group]
            else:
                ds.MRDiffusionSequence = [item]

        _edit(path, relabel)
    loadables = DICOMDiffusionVolumePlugin().examine([[str(p) for p in ge_copy]])
    assert len(loadables) == 1
    series = read_dwi(ge_copy)
    np.testing.assert_array_equal(series.bvalues, truth.bvalues)
    np.testing.assert_allclose(series.gradients_lps, truth.gradients_lps, atol=1e-9)
    np.testing.assert_array_equal(series.voxels, truth.voxels)


def test_philips_private_tags_isotropic_image_and_order(ge_copy, ge_files):
    """Philips private b-value/direction, the isotropic image excluded, volumes in 2005,1413 order."""
    truth = read_dwi(ge_files)
    reversed_order = list(range(7))[::-1]
    for index, path in enumerate(ge_copy):
        volume = index // 2

        def relabel(ds, volume=volume):
            _strip_ge(ds)
            ds.Manufacturer = "Philips Medical Systems"
            ds.InstanceNumber = 100 - index  # scrambled, as Philips can be
            imaging = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
            imaging.add_new(0x03, "FL", float(truth.bvalues[volume]))
            imaging.add_new(0x04, "CS", "O" if truth.bvalues[volume] > 0 else "0")
            mr = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            for offset, value in zip((0xB0, 0xB1, 0xB2), truth.gradients_lps[volume]):
                mr.add_new(offset, "FL", float(value))
            ds.add_new((0x2005, 0x0014), "LO", "Philips MR Imaging DD 005")  # the block Philips uses
            numbers = ds.private_block(0x2005, "Philips MR Imaging DD 005")
            numbers.add_new(0x12, "IS", 1 if truth.bvalues[volume] == 0 else 2)  # (2005,1412)
            numbers.add_new(0x13, "IS", reversed_order[volume] + 1)  # (2005,1413)

        _edit(path, relabel)
    isotropic = ge_copy[0].parent / "iso.dcm"
    shutil.copy(ge_copy[2], isotropic)

    def as_isotropic(ds):
        ds.SOPInstanceUID = generate_uid()
        ds[0x2001, 0x1004].value = "I"
        for element in (0x10B0, 0x10B1, 0x10B2):
            ds[0x2005, element].value = 0.0

    _edit(isotropic, as_isotropic)
    series = read_dwi(ge_copy + [isotropic])
    assert any("derived" in w for w in series.warnings)
    # ordered by (2005,1412) then (2005,1413): b=0 first, then the weighted volumes reversed
    expected = [0] + sorted(range(1, 7), key=lambda v: reversed_order[v])
    np.testing.assert_array_equal(series.bvalues, truth.bvalues[expected])
    np.testing.assert_allclose(series.gradients_lps, truth.gradients_lps[expected], atol=1e-6)
    np.testing.assert_array_equal(series.voxels, truth.voxels[expected])


@pytest.mark.timeout(300)
def test_cli_load_writes_dwi_nrrd(cli_runner, ge_files, tmp_path):
    """`dicombrowser load FOLDER --output dwi.nrrd` picks the diffusion loadable by default."""
    output = tmp_path / "dwi.nrrd"
    result = cli_runner("load", str(ge_files[0].parent), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "DICOMDiffusionVolumePlugin" in result.output
    back = read_nrrd(output)
    truth = read_dwi(ge_files)
    np.testing.assert_array_equal(back.voxels, truth.voxels)
    np.testing.assert_allclose(back.gradients_lps, truth.gradients_lps, atol=1e-6)
    np.testing.assert_allclose(back.bvalues, truth.bvalues, atol=1e-3)
    np.testing.assert_allclose(back.ijk_to_ras, truth.ijk_to_ras, atol=1e-6)


@pytest.mark.timeout(300)
def test_cli_import_then_load_series_uid(cli_runner, ge_files, tmp_path):
    """Through the database: import the folder, then load the series by its UID."""
    assert cli_runner("import", str(ge_files[0].parent)).exit_code == 0
    series_uid = str(pydicom.dcmread(str(ge_files[0]), stop_before_pixels=True).SeriesInstanceUID)
    output = tmp_path / "by-uid.nrrd"
    result = cli_runner("load", series_uid, "--output", str(output))
    assert result.exit_code == 0, result.output
    back = read_nrrd(output)
    truth = read_dwi(ge_files)
    np.testing.assert_array_equal(back.voxels, truth.voxels)
    np.testing.assert_allclose(back.gradients_lps, truth.gradients_lps, atol=1e-6)
