"""The MRML scene: volume nodes as Slicer makes them, saved the ways Slicer saves them.

Generated arrays with an oblique geometry, and the real CT head of the corpus loaded through
the scalar volume plugin, written to NRRD and read back by SimpleITK (a round trip against an
independent reader).
"""
from __future__ import annotations

import zipfile

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from DICOMBrowser.DICOMBrowserLib import scene as scenes

IDENTITY = {"PatientID": "PAT1", "PatientName": "Doe^Jane", "PatientSex": "F", "StudyInstanceUID": "1.2.3",
            "StudyDescription": "Head study", "StudyDate": "20260101", "Modality": "CT", "SeriesNumber": "7",
            "SeriesInstanceUID": "1.2.3.4"}


def oblique_ijk_to_ras() -> np.ndarray:
    """Columns 0.5 mm, rows 0.7 mm, slices 2 mm, rotated 30 degrees about S, shifted."""
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([0.5, 0.7, 2.0])
    matrix[:3, 3] = [10.0, -20.0, 35.5]
    return matrix


@pytest.fixture
def volume():
    scene = scenes.new_scene()
    voxels = (np.arange(4 * 5 * 6) - 60).astype(np.int16).reshape(4, 5, 6)
    node = scenes.add_scalar_volume(scene, voxels, oblique_ijk_to_ras(), "Head CT", series_uid="1.2.3.4",
                                    instance_uids=["1.1", "1.2", "1.3", "1.4"], window_level=(400.0, 40.0),
                                    dicom_identity=IDENTITY)
    yield scene, node, voxels
    scenes.close_scene(scene)


def test_volume_node_as_slicer_makes_it(volume):
    scene, node, voxels = volume
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetName() == "Head CT"
    image = node.GetImageData()
    assert image.GetOrigin() == (0.0, 0.0, 0.0) and image.GetSpacing() == (1.0, 1.0, 1.0)
    assert image.GetDimensions() == (6, 5, 4)
    assert np.allclose(node.GetSpacing(), (0.5, 0.7, 2.0))
    assert np.allclose(node.GetOrigin(), (10.0, -20.0, 35.5))
    assert np.allclose(scenes.ijk_to_ras_of(node), oblique_ijk_to_ras())
    assert np.array_equal(scenes.array_from_volume(node), voxels)
    assert node.GetAttribute("DICOM.instanceUIDs") == "1.1 1.2 1.3 1.4"
    assert node.GetAttribute("DICOM.seriesInstanceUID") == "1.2.3.4"
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (400.0, 40.0)
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeGrey"


def test_subject_hierarchy_patient_study_series(volume):
    import slicer

    scene, node, voxels = volume
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    series = hierarchy.GetItemByDataNode(node)
    study = hierarchy.GetItemParent(series)
    patient = hierarchy.GetItemParent(study)
    assert hierarchy.GetItemUID(series, "DICOM") == "1.2.3.4"
    assert (hierarchy.GetItemLevel(study), hierarchy.GetItemUID(study, "DICOM")) == ("Study", "1.2.3")
    assert (hierarchy.GetItemLevel(patient), hierarchy.GetItemUID(patient, "DICOM")) == ("Patient", "PAT1")
    assert hierarchy.GetItemName(patient) == "Doe^Jane"
    assert hierarchy.GetItemAttribute(series, "DICOM.Modality") == "CT"
    # a second series of the same study goes under the same items
    other = scenes.add_scalar_volume(scene, voxels, np.eye(4), "Second", series_uid="1.2.3.5", instance_uids=["2.1"],
                                     dicom_identity={**IDENTITY, "SeriesInstanceUID": "1.2.3.5"})
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(other)) == study


def test_nrrd_through_storage_node_read_back_by_simpleitk(volume, tmp_path):
    scene, node, voxels = volume
    path = scenes.save_volume(node, tmp_path / "head.nrrd")
    image = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(image), voxels)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ oblique_ijk_to_ras()
    assert np.allclose(image.GetSpacing(), (0.5, 0.7, 2.0))
    assert np.allclose(image.GetOrigin(), lps[:3, 3])
    assert np.allclose(np.array(image.GetDirection()).reshape(3, 3), lps[:3, :3] / [0.5, 0.7, 2.0])


def test_nifti_3d_affine_is_ras(volume, tmp_path):
    scene, node, voxels = volume
    path = scenes.save_volume(node, tmp_path / "head.nii.gz")
    nifti = nibabel.load(str(path))
    assert np.allclose(nifti.affine, oblique_ijk_to_ras(), atol=1e-4)
    assert np.array_equal(np.asarray(nifti.dataobj).transpose(2, 1, 0), voxels)


def test_volume_sequence_4d_saved_as_nifti_and_nrrd(tmp_path):
    scene = scenes.new_scene()
    volumes = np.stack([np.full((3, 4, 5), t, dtype=np.int16) for t in range(4)])
    sequence = scenes.add_volume_sequence(scene, volumes, oblique_ijk_to_ras(), "fMRI", series_uid="9.8",
                                          instance_uids=["a", "b"], index_values=[0, 2.5, 5, 7.5],
                                          dicom_identity=IDENTITY)
    assert sequence.IsA("vtkMRMLSequenceNode") and sequence.GetNumberOfDataNodes() == 4
    assert sequence.GetNthIndexValue(1) == "2.5"
    proxy = scenes.sequence_proxy(scene, sequence)
    assert proxy is not None and proxy.IsA("vtkMRMLScalarVolumeNode")
    assert np.allclose(scenes.ijk_to_ras_of(proxy), oblique_ijk_to_ras())
    voxels, matrix = scenes.sequence_array(sequence)
    assert np.array_equal(voxels, volumes)
    nifti = nibabel.load(str(scenes.save_volume(sequence, tmp_path / "fmri.nii.gz")))
    assert nifti.shape == (5, 4, 3, 4)
    assert np.allclose(nifti.affine, oblique_ijk_to_ras(), atol=1e-4)
    assert np.array_equal(np.asarray(nifti.dataobj)[..., 2].transpose(2, 1, 0), volumes[2])
    nrrd = scenes.save_volume(sequence, tmp_path / "fmri.seq.nrrd")
    assert nrrd.stat().st_size > 0
    scenes.close_scene(scene)


def test_mrml_scene_and_mrb_bundle_reload(volume, tmp_path):
    scene, node, voxels = volume
    mrml = scenes.save_scene(scene, tmp_path / "scene" / "scene.mrml")
    assert (tmp_path / "scene" / "Head_CT.nrrd").exists()
    bundle = scenes.save_bundle(scene, tmp_path / "head.mrb")
    names = zipfile.ZipFile(bundle).namelist()
    assert any(n.endswith(".mrml") for n in names) and any(n.endswith(".nrrd") for n in names)
    for path in (mrml, bundle):
        reloaded = scenes.load_scene(path)
        nodes = reloaded.GetNodesByClass("vtkMRMLScalarVolumeNode")
        assert nodes.GetNumberOfItems() == 1
        again = nodes.GetItemAsObject(0)
        assert again.GetAttribute("DICOM.instanceUIDs") == "1.1 1.2 1.3 1.4"
        assert np.allclose(scenes.ijk_to_ras_of(again), oblique_ijk_to_ras())
        assert np.array_equal(scenes.array_from_volume(again), voxels)
        scenes.close_scene(reloaded)


def test_unknown_output_format_refused(volume, tmp_path):
    from DICOMBrowser.DICOMBrowserLib.errors import LoadError

    with pytest.raises(LoadError, match="unknown output format"):
        scenes.save_volume(volume[1], tmp_path / "head.tiff")


@pytest.mark.slow
@pytest.mark.parametrize("series", ["slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom",
                                    "ge_t1/In/05_3D_Ax_T1_MP_RAGE_R22"])
def test_round_trip_real_series_nrrd_matches_simpleitk_series_reader(corpus, tmp_path, series):
    """Load a real CT/MR series through the plugins, save NRRD, read back: SimpleITK's geometry and voxels."""
    from DICOMBrowser.DICOMBrowserLib import loading

    folder = corpus / series
    report = loading.examine(None, loading.file_lists_for(None, [str(folder)]))
    chosen = [l for l in report.loadables if l.selected]
    assert len(chosen) == 1, [l.to_json() for l in report.loadables]
    scene = scenes.new_scene()
    (node,) = loading.load_loadables(chosen, scene)
    path = scenes.save_volume(node, tmp_path / "ct.nrrd")
    ours = sitk.ReadImage(str(path))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    theirs = reader.Execute()
    assert ours.GetSize() == theirs.GetSize()
    assert np.allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-3)
    assert np.allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-3)
    assert np.allclose(ours.GetDirection(), theirs.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
    scenes.close_scene(scene)


def test_multicomponent_volume_to_4d_nifti(tmp_path):
    """A diffusion/vector volume's components become NIfTI's 4th dimension (as dcm2niix writes DWI)."""
    scene = scenes.new_scene()
    voxels = np.stack([np.full((3, 4, 5), c, dtype=np.int16) for c in range(6)], axis=-1)  # (k, j, i, c)
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "vectors")
    scenes.set_geometry(node, oblique_ijk_to_ras())
    node.SetAndObserveImageData(scenes.image_data_from_array(voxels))
    assert scenes.array_from_volume(node).shape == (3, 4, 5, 6)
    nifti = nibabel.load(str(scenes.save_volume(node, tmp_path / "vectors.nii.gz")))
    assert nifti.shape == (5, 4, 3, 6)
    assert np.allclose(nifti.affine, oblique_ijk_to_ras(), atol=1e-4)
    assert np.asarray(nifti.dataobj)[1, 2, 0, 4] == 4
    scenes.close_scene(scene)


def test_scene_is_freed_with_its_last_reference_and_orphan_nodes_still_save(tmp_path):
    """No logic keeps a scene (and its volumes) alive; a node that outlived its scene writes NRRD,
    and asking for a scene file says why it cannot."""
    import gc

    from DICOMBrowser.DICOMBrowserLib.errors import LoadError

    scene = scenes.new_scene()
    voxels = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    node = scenes.add_scalar_volume(scene, voxels, oblique_ijk_to_ras(), "orphan", series_uid="5", instance_uids=["1"])
    del scene
    gc.collect()
    assert node.GetScene() is None
    image = sitk.ReadImage(str(scenes.save_volume(node, tmp_path / "orphan.nrrd")))
    assert np.array_equal(sitk.GetArrayFromImage(image), voxels)
    with pytest.raises(LoadError, match="in no scene"):
        scenes.save_volume(node, tmp_path / "orphan.mrb")


def test_mrml_scene_keeps_segmentations_and_tables_not_builtin_colours(cli_runner, corpus, tmp_path):
    """A .mrml scene holds every node a plugin made (a SEG as .seg.nrrd beside it), not only
    volumes, and none of the built-in colour tables."""
    output = tmp_path / "scene" / "scene.mrml"
    result = cli_runner("load", str(corpus / "dcmqi_seg/data/segmentations/liver.dcm"), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in output.parent.iterdir()) == ["1__Liver_Segmentation.seg.nrrd", "scene.mrml"]
    scene = scenes.load_scene(output)
    segmentation = scene.GetNodesByClass("vtkMRMLSegmentationNode").GetItemAsObject(0)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    scenes.close_scene(scene)
