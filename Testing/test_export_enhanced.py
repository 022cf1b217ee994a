"""Enhanced multi-frame export (`export --enhanced`): given a loaded volume, when exported through
the user's command as one Legacy Converted Enhanced CT/MR Image object, imported and loaded by
our scalar plugin, then the same voxels at the same places (1e-2 mm), the study's patient and
study attributes and frame of reference, and dciodvfy (dicom3tools) reports 0 errors."""
from __future__ import annotations


import numpy as np
import pydicom
import pytest

from dicom_checks import assert_valid, export_json, require_dciodvfy, same_volume, volume_arrays

LEGACY_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
LEGACY_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
#: what dciodvfy says about these objects besides errors (listed in docs/export.md)
KNOWN_WARNINGS = ("Retired Person Name form",  # the corpus CT's own PatientName / ReferringPhysicianName
                  "Laterality")  # empty: a derived volume does not know the side


def _load(logic, uid):
    report = logic.examine([uid])
    chosen = logic.choose_loadables(report.loadables)
    assert [loadable.plugin for loadable in chosen] == ["DICOMScalarVolumePlugin"], chosen
    return logic.load(chosen, report=report)[0]


def _export(cli_runner, *args):
    return export_json(cli_runner, *args, "--enhanced")


def _only_known(warnings: set[str]) -> bool:
    return all(any(known in warning for known in KNOWN_WARNINGS) for warning in warnings)


def test_corpus_ct_as_one_enhanced_object_round_trips(corpus, cli_runner, logic_for, tmp_path):
    """The corpus CT head (93 slices) loaded from the database, exported back into its study as
    one multi-frame object, imported and loaded again."""
    require_dciodvfy()
    assert cli_runner("import", str(corpus / "slicer_ct_head")).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    original = volume_arrays(_load(logic, series_uid))
    source = pydicom.dcmread(logic.files_for_uid(series_uid)[0], stop_before_pixels=True)
    logic.close()

    out = _export(cli_runner, series_uid, "--study", study_uid, "--series-description", "Enhanced CT",
                  "--set", "BodyPartExamined=HEAD", "--to-database", "--output-dir", str(tmp_path / "out"))
    assert out["instances"] == 1 and out["imported"] and len(out["files"]) == 1
    # the corpus CT states no Frame of Reference: the export makes one, as the per-slice export does
    assert out["sop_class"] == LEGACY_ENHANCED_CT and not out["frame_of_reference_kept"]
    warnings = assert_valid(out["files"])
    assert _only_known(warnings), warnings

    written = pydicom.dcmread(out["files"][0], stop_before_pixels=True)
    assert int(written.NumberOfFrames) == 93 and written.SOPClassUID == LEGACY_ENHANCED_CT
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "PatientPosition"):
        assert written.get(keyword) == source.get(keyword), keyword
    assert written.FrameOfReferenceUID == out["frame_of_reference"]
    assert written.SeriesDescription == "Enhanced CT" and int(written.SeriesNumber) == int(source.SeriesNumber) + 1
    assert written.SeriesInstanceUID == out["series"] and written.Modality == "CT"
    assert "ReferencedSeriesSequence" not in written  # the per-slice objects were never stored
    assert not any("ConversionSourceAttributesSequence" in frame for frame in written.PerFrameFunctionalGroupsSequence)

    logic = logic_for()
    assert {s["SeriesInstanceUID"] for s in logic.series(study_uid)} == {series_uid, out["series"]}
    same_volume(*original, *volume_arrays(_load(logic, out["series"])))


def _oblique_mr(series_factory, cli_runner, logic_for):
    angle = np.radians(25.0)
    orientation = (1.0, 0.0, 0.0, 0.0, np.cos(angle), np.sin(angle))
    normal = np.cross(orientation[:3], orientation[3:])
    files = series_factory(positions=[tuple(np.array([3.0, -7.0, 11.0]) + 2.5 * k * normal) for k in range(8)],
                           orientation=orientation, rows=12, columns=10, modality="MR", rescale=(0.25, -10.0),
                           patient_name="Oblique^Enhanced", patient_id="OBLENH")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    original = volume_arrays(_load(logic, series_uid))
    logic.close()
    return files, study_uid, series_uid, original


def test_oblique_mr_with_float_voxels_as_one_enhanced_object(series_factory, cli_runner, logic_for, tmp_path):
    """A 25-degree oblique MR whose voxels are floats (0.25 steps): one Legacy Converted Enhanced
    MR object, stored exactly, the frame of reference kept, loaded back identically."""
    require_dciodvfy()
    files, study_uid, series_uid, original = _oblique_mr(series_factory, cli_runner, logic_for)
    assert original[0].dtype.kind == "f" and np.any(original[0] != np.round(original[0]))

    out = _export(cli_runner, series_uid, "--study", study_uid, "--modality", "MR", "--to-database",
                  "--output-dir", str(tmp_path / "out"))
    assert out["sop_class"] == LEGACY_ENHANCED_MR and out["instances"] == 1
    assert out["frame_of_reference"] == pydicom.dcmread(files[0]).FrameOfReferenceUID and out["frame_of_reference_kept"]
    assert out["max_quantization_error"] == 0.0
    warnings = assert_valid(out["files"])
    assert _only_known(warnings), warnings
    written = pydicom.dcmread(out["files"][0], stop_before_pixels=True)
    assert int(written.NumberOfFrames) == 8 and str(written.PatientName) == "Oblique^Enhanced"
    logic = logic_for()
    same_volume(*original, *volume_arrays(_load(logic, out["series"])))


def test_4d_sequence_as_one_enhanced_object_with_temporal_positions(series_factory, cli_runner, logic_for, tmp_path):
    """A 3-volume sequence (.seq.nrrd): one MR object of 12 frames indexed by (temporal position,
    in-stack position), which our plugin loads back as a 3-volume sequence."""
    from DICOMBrowser.DICOMBrowserLib import scene

    require_dciodvfy()
    files = series_factory(count=4, patient_id="FOURDENH")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    logic.close()
    volumes = np.stack([np.full((4, 6, 5), 100 * t, dtype=np.int16) + np.arange(5, dtype=np.int16)
                        for t in range(3)])
    matrix = np.array([[-0.9, 0, 0, 5], [0, -1.1, 0, 7], [0, 0, 2.0, -3], [0, 0, 0, 1]])
    work = scene.new_scene()
    sequence = scene.add_volume_sequence(work, volumes, matrix, "perfusion", series_uid="1.2.3", instance_uids=[],
                                         index_values=[0.0, 1.5, 3.0], index_unit="s")
    path = scene.save_volume(sequence, tmp_path / "perfusion.seq.nrrd")

    out = _export(cli_runner, str(path), "--study", study_uid, "--modality", "MR", "--to-database",
                  "--output-dir", str(tmp_path / "o"))
    assert out["instances"] == 1
    warnings = assert_valid(out["files"])
    assert _only_known(warnings), warnings
    written = pydicom.dcmread(out["files"][0], stop_before_pixels=True)
    assert int(written.NumberOfFrames) == 12 and written.DimensionOrganizationType == "3D_TEMPORAL"
    assert [int(d.DimensionIndexPointer) for d in written.DimensionIndexSequence] == [0x00209128, 0x00209057]
    places = [tuple(int(v) for v in f.FrameContentSequence[0].DimensionIndexValues)
              for f in written.PerFrameFunctionalGroupsSequence]
    assert sorted(places) == [(t, k) for t in (1, 2, 3) for k in (1, 2, 3, 4)]
    assert all(f.FrameContentSequence[0].TemporalPositionIndex == t
               for f, (t, _) in zip(written.PerFrameFunctionalGroupsSequence, places))

    logic = logic_for()
    node = _load(logic, out["series"])
    assert node.IsA("vtkMRMLSequenceNode") and node.GetNumberOfDataNodes() == 3
    loaded, loaded_matrix = volume_arrays(node)
    for t in range(3):
        same_volume(volumes[t], matrix, loaded[t], loaded_matrix)


def test_enhanced_refuses_secondary_capture_and_segmentations(series_factory, cli_runner, logic_for, tmp_path):
    """Secondary Capture and SEG have no enhanced form here: a one-line refusal, nothing written."""
    files = series_factory(count=3, patient_id="ENHBAD")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    logic.close()
    for modality in ("OT", "SEG"):
        result = cli_runner("export", series_uid, "--study", study_uid, "--modality", modality, "--enhanced",
                            "--output-dir", str(tmp_path / "out"))
        assert result.exit_code == 2 and "--enhanced writes CT or MR" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_enhanced_option_from_python_names_the_volume_when_refused():
    """The library refuses OT itself (not only the CLI), naming the volume."""
    from DICOMBrowser.DICOMBrowserLib.errors import ExportError
    from DICOMBrowser.DICOMBrowserLib.export import VolumeExportOptions, VolumeSource, build_volume_series
    from DICOMBrowser.DICOMBrowserLib.export.study import StudyContext
    from pydicom.dataset import Dataset

    header = Dataset()
    header.StudyInstanceUID = "1.2.3"
    source = VolumeSource(np.zeros((1, 2, 3, 3), dtype=np.int16), np.eye(4), name="scratch")
    with pytest.raises(ExportError, match="scratch.*--enhanced writes CT or MR"):
        build_volume_series(source, StudyContext("1.2.3", header), VolumeExportOptions(modality="OT", enhanced=True))
