"""A scene as a DICOM object (Slicer's data bundle): given a loaded series, when its scene is
exported into the study and loaded back through the plugins, then the scene's volume returns
with the same voxels and geometry, and the object passes dciodvfy with 0 errors."""
from __future__ import annotations

import json

import pydicom

from dicom_checks import assert_valid, require_dciodvfy, same_volume


def test_scene_bundle_round_trip(series_factory, cli_runner, tmp_path):
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib import scene

    require_dciodvfy()
    files = series_factory(count=5, rows=14, columns=12, patient_id="SCENE1", patient_name="Scene^Test")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    first = pydicom.dcmread(files[0])
    result = cli_runner("export-scene", first.SeriesInstanceUID, "--study", first.StudyInstanceUID,
                        "--series-description", "My scene", "--to-database", "--output-dir", str(tmp_path / "out"),
                        "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = json.loads(result.output[result.output.index("{"):])
    [path] = out["files"]
    assert_valid([path])
    ds = pydicom.dcmread(path)
    assert ds[0xCADB0010].value == f"3D Slicer {ds[0xCADB1008].value}" and ds.StudyInstanceUID == first.StudyInstanceUID

    logic = DICOMBrowserLogic(cli_runner.database_dir)
    try:
        original_report = logic.examine([first.SeriesInstanceUID])
        original = logic.load(logic.choose_loadables(original_report.loadables), scene.new_scene(),
                              report=original_report)[0]
        report = logic.examine([out["series"]])
        chosen = logic.choose_loadables(report.loadables)
        assert [l.plugin for l in chosen] == ["DICOMSlicerDataBundlePlugin"] and chosen[0].name == "My scene"
        target = scene.new_scene()
        restored = logic.load(chosen, target, report=report)[0]
        assert restored.IsA("vtkMRMLScalarVolumeNode") and restored.GetScene() is target
        same_volume(scene.array_from_volume(original), scene.ijk_to_ras_of(original),
                    scene.array_from_volume(restored), scene.ijk_to_ras_of(restored))
    finally:
        logic.close()
