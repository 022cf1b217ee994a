"""Export of volumes into an existing study: given a loaded volume, when exported through the
user's command and imported again, then the same voxels at the same places, and every object
passes dciodvfy (dicom3tools) with 0 errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_checks import assert_valid, export_json, require_dciodvfy, same_volume, volume_arrays


def _load(logic, uid):
    report = logic.examine([uid])
    return logic.load(logic.choose_loadables(report.loadables), report=report)[0]


def test_ct_head_exported_into_its_study_round_trips(corpus, cli_runner, logic_for, tmp_path):
    """The corpus CT (93 slices) loaded from the database, exported back into its study."""
    require_dciodvfy()
    assert cli_runner("import", str(corpus / "slicer_ct_head")).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    original = volume_arrays(_load(logic, series_uid))
    logic.close()

    out = export_json(cli_runner, series_uid, "--study", study_uid, "--series-description", "Exported CT",
                  "--set", "BodyPartExamined=HEAD", "--to-database", "--output-dir", str(tmp_path / "out"))
    assert out["instances"] == 93 and out["imported"] and len(out["files"]) == 93
    warnings = assert_valid(out["files"])
    assert all("Retired Person Name" in w or "Laterality" in w for w in warnings), warnings

    logic = logic_for()
    assert {s["SeriesInstanceUID"] for s in logic.series(study_uid)} == {series_uid, out["series"]}
    exported = volume_arrays(_load(logic, out["series"]))
    same_volume(*original, *exported)
    first = pydicom.dcmread(out["files"][0])
    source = pydicom.dcmread(logic.files_for_uid(series_uid)[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyID"):
        assert first.get(keyword) == source.get(keyword), keyword
    assert first.SeriesDescription == "Exported CT" and first.BodyPartExamined == "HEAD"
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert int(first.SeriesNumber) == int(source.SeriesNumber) + 1


def test_oblique_float_volume_keeps_frame_and_precision(series_factory, cli_runner, logic_for, tmp_path):
    """An oblique MR-like series; its node exported with float voxels (0.25 steps: stored exactly)."""
    require_dciodvfy()
    angle = np.radians(25.0)
    orientation = (1.0, 0.0, 0.0, 0.0, np.cos(angle), np.sin(angle))
    normal = np.cross(orientation[:3], orientation[3:])
    files = series_factory(positions=[tuple(np.array([3.0, -7.0, 11.0]) + 2.5 * k * normal) for k in range(8)],
                           orientation=orientation, rows=12, columns=10, modality="MR", rescale=(0.25, -10.0),
                           patient_name="Oblique^Test", patient_id="OBL1")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    frame = pydicom.dcmread(files[0]).FrameOfReferenceUID
    original = volume_arrays(_load(logic, series_uid))
    assert original[0].dtype.kind == "f" and np.any(original[0] != np.round(original[0]))
    logic.close()

    out = export_json(cli_runner, series_uid, "--study", study_uid, "--modality", "MR", "--to-database")
    assert out["frame_of_reference"] == frame and out["frame_of_reference_kept"]
    assert out["max_quantization_error"] == 0.0
    logic = logic_for()
    files_out = logic.files_for_uid(out["series"])
    assert_valid(files_out)
    same_volume(*original, *volume_arrays(_load(logic, out["series"])))


def test_float_volume_file_keeps_precision_within_half_a_step(series_factory, cli_runner, logic_for, tmp_path):
    """A NIfTI of arbitrary floats: stored in 16 bits with the error the result reports (half a step)."""
    import SimpleITK as sitk

    require_dciodvfy()
    files = series_factory(count=6, patient_id="FLOAT1")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    logic.close()
    voxels = np.random.default_rng(1).normal(0.0, 3.0, size=(5, 9, 7)).astype(np.float32)
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((0.7, 0.8, 1.5))
    image.SetOrigin((10.0, -4.0, 2.0))
    path = tmp_path / "float.nii.gz"
    sitk.WriteImage(image, str(path))

    out = export_json(cli_runner, str(path), "--study", study_uid, "--modality", "OT", "--output-dir",
                  str(tmp_path / "out"), "--to-database", "--frame-of-reference", "study")
    step = out["rescale_slope"]
    assert 0 < out["max_quantization_error"] <= step / 2 + 1e-9
    assert step < (voxels.max() - voxels.min()) / 60000
    assert out["frame_of_reference_kept"]
    assert_valid(out["files"])
    logic = logic_for()
    loaded, matrix = volume_arrays(_load(logic, out["series"]))
    from DICOMBrowser.DICOMBrowserLib.export import read_volume_source

    source = read_volume_source(path)
    same_volume(source.voxels[0], source.ijk_to_ras, loaded, matrix, value_tolerance=step / 2 + 1e-6)


@pytest.mark.slow
def test_gantry_tilted_ct_round_trips(corpus, cli_runner, logic_for, tmp_path):
    """dicom2nifti's gantry-tilted CT loaded as it is (sheared grid) exports and loads back identically."""
    require_dciodvfy()
    folder = corpus / "dicom2nifti" / "tests" / "data" / "failing" / "gantrytilting" / "001"
    if not folder.is_dir():
        pytest.skip(f"{folder} not in the corpus")
    assert cli_runner("import", str(folder)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    original = volume_arrays(_load(logic, series_uid))
    logic.close()
    out = export_json(cli_runner, series_uid, "--study", study_uid, "--to-database", "--output-dir", str(tmp_path / "o"))
    assert_valid(out["files"])
    logic = logic_for()
    same_volume(*original, *volume_arrays(_load(logic, out["series"])))


def test_4d_sequence_exports_as_one_series_with_temporal_positions(series_factory, cli_runner, logic_for, tmp_path):
    """A volume sequence (.seq.nrrd, 3 time points) becomes one MR series; it loads back as 4D."""
    from DICOMBrowser.DICOMBrowserLib import scene

    require_dciodvfy()
    files = series_factory(count=4, patient_id="FOURD")
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

    out = export_json(cli_runner, str(path), "--study", study_uid, "--modality", "MR", "--output-dir", str(tmp_path / "o"),
                  "--to-database")
    assert out["instances"] == 12
    assert_valid(out["files"])
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in out["files"]]
    assert {int(h.TemporalPositionIdentifier) for h in headers} == {1, 2, 3}
    assert {int(h.NumberOfTemporalPositions) for h in headers} == {3}
    logic = logic_for()
    node = _load(logic, out["series"])
    assert node.IsA("vtkMRMLSequenceNode") and node.GetNumberOfDataNodes() == 3
    loaded, loaded_matrix = volume_arrays(node)
    for t in range(3):
        same_volume(volumes[t], matrix, loaded[t], loaded_matrix)


def test_bad_requests_write_nothing(series_factory, cli_runner, logic_for, tmp_path):
    """Unknown keywords, protected attributes, an unknown study: one-line errors, nothing written."""
    files = series_factory(count=3, patient_id="BAD1")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    logic = logic_for()
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    logic.close()
    out_dir = tmp_path / "out"
    for args, message in (
            (["--set", "NoSuchKeyword=1"], "not a DICOM keyword"),
            (["--set", "Rows=3"], "computes Rows itself"),
            (["--set", "PatientWeight=heavy"], "not a valid DS"),
            (["--modality", "CT"], "say where"),
    ):
        extra = ["--output-dir", str(out_dir)] if "say where" not in message else []
        result = cli_runner("export", series_uid, "--study", study_uid, *args, *extra)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    result = cli_runner("export", series_uid, "--study", "1.2.3.4", "--to-database")
    assert result.exit_code == 1 and "1.2.3.4" in result.output
    assert not out_dir.exists() or not any(out_dir.iterdir())
    logic = logic_for()
    assert len(logic.series()) == 1


def test_failed_import_leaves_the_database_as_it_was(series_factory, logic_for, monkeypatch, tmp_path):
    """When indexing stops half-way, the files already copied in are removed again."""
    from DICOMBrowser.DICOMBrowserLib import indexer
    from DICOMBrowser.DICOMBrowserLib.export import VolumeExportOptions

    files = series_factory(count=6, patient_id="HALF1")
    logic = logic_for()
    logic.import_paths([files[0].parent])
    study_uid = logic.studies()[0]["StudyInstanceUID"]
    series_uid = logic.series(study_uid)[0]["SeriesInstanceUID"]
    real_import = indexer.import_paths

    def half_then_fail(database, paths, **kwargs):
        real_import(database, list(paths)[:3], **kwargs)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(indexer, "import_paths", half_then_fail)
    with pytest.raises(OSError):
        logic.export_volume(series_uid, study_uid, VolumeExportOptions(), to_database=True)
    assert [s["SeriesInstanceUID"] for s in logic.series()] == [series_uid]
    copied = [p for p in Path(logic.database.images_folder).rglob("*") if p.is_file()]
    assert not copied, copied
