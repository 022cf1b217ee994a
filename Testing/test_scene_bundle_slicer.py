"""Slicer's data bundle both ways, without Slicer: given a loaded series, when a bundle is written
exactly as Slicer's DICOMExportScene writes it (the scene's own WriteToMRB with a JPEG screenshot,
DCMTK's dcmdump of the reference file, the three (CADB,xxxx) lines appended, dump2dcm with new
UIDs, img2dcm over the screenshot) and imported, then our plugin offers it and restores the
volume; and when our export-scene object is read the way Slicer's DICOMSlicerDataBundlePlugin
reads it (size from the private creator, the zip from the end of the file, the application
logic's OpenSlicerDataBundle), then Slicer's reader gets the same volume."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_checks import same_volume

DCMTK_TOOLS = ("dcmdump", "dump2dcm", "img2dcm")


def _write_bundle_as_slicer_does(scene, reference_file: Path, folder: Path, tags: dict[str, str]) -> Path:
    """Slicer's DICOMExportScene.createDICOMFileForScene, step by step, with our own code."""
    from PIL import Image
    from vtkmodules.vtkIOImage import vtkJPEGReader

    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / "scene.jpg"  # Slicer grabs its main window; any JPEG stands for it
    gradient = (np.indices((48, 64)).sum(axis=0) * 2).astype(np.uint8)
    Image.fromarray(np.stack([gradient, 255 - gradient, gradient // 2], axis=-1)).save(screenshot)
    reader = vtkJPEGReader()
    reader.SetFileName(str(screenshot))
    reader.Update()
    zip_file = folder / "scene.zip"
    assert scene.WriteToMRB(str(zip_file), reader.GetOutput())
    zip_size = zip_file.stat().st_size
    dump = subprocess.run(["dcmdump", "--print-all", "--write-pixel", str(folder), str(reference_file)],
                          capture_output=True, text=True, check=True).stdout
    creator = f"3D Slicer {zip_size}"
    dump += (f"(cadb,0010) LO [{creator}]\n"
             f"(cadb,1008) LO [{zip_size}]\n"
             f"(cadb,1010) OB ={zip_file}\n")
    (folder / "dump.dcm").write_text(dump)
    subprocess.run(["dump2dcm", str(folder / "dump.dcm"), str(folder / "template.dcm"), "--generate-new-uids",
                    "--overwrite-uids", "--ignore-errors"], check=True, capture_output=True)
    args = ["img2dcm", "-k", "SeriesDescription=Slicer Data Bundle"]
    if "--no-latin1" in subprocess.run(["img2dcm", "--help"], capture_output=True, text=True).stdout:
        args.append("--no-latin1")  # Slicer passes it; DCMTK before 3.6.8 has no such option
    for key, value in tags.items():
        if value:
            args += ["-k", f"{key}={value}"]
    bundle = folder / "SlicerDataBundle.dcm"
    subprocess.run(args + ["--dataset-from", str(folder / "template.dcm"), str(screenshot), str(bundle)],
                   check=True, capture_output=True)
    return bundle


def _read_zip_as_slicer_does(path: Path) -> bytes:
    """Slicer's DICOMSlicerDataBundlePlugin.load: the size from the creator string, the zip from the end."""
    creator = str(pydicom.dcmread(path, specific_tags=[0xCADB0010])[0xCADB0010].value)
    zip_size = int(creator.split(" ")[2])
    with open(path, "rb") as stream:
        stream.seek(-zip_size if zip_size % 2 == 0 else -(1 + zip_size), os.SEEK_END)
        return stream.read(zip_size)


@pytest.fixture
def loaded_series(series_factory, cli_runner):
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
    from DICOMBrowser.DICOMBrowserLib import scene as scenes

    files = series_factory(count=5, rows=14, columns=12, patient_id="SDB1", patient_name="Bundle^Slicer")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    first = pydicom.dcmread(files[0])
    logic = DICOMBrowserLogic(cli_runner.database_dir)
    report = logic.examine([first.SeriesInstanceUID])
    scene = scenes.new_scene()
    volume = logic.load(logic.choose_loadables(report.loadables), scene, report=report)[0]
    yield logic, scene, volume, files
    logic.close()


def test_a_bundle_written_as_slicer_writes_it_loads_through_our_plugin(loaded_series, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import scene as scenes

    if not all(shutil.which(tool) for tool in DCMTK_TOOLS):
        pytest.skip("DCMTK's dcmdump, dump2dcm and img2dcm are needed to write a bundle as Slicer does")
    logic, scene, volume, files = loaded_series
    reference = pydicom.dcmread(files[0])
    tags = {"PatientName": str(reference.PatientName), "PatientID": reference.PatientID,
            "StudyDate": reference.get("StudyDate", ""), "StudyDescription": reference.get("StudyDescription", "")}
    bundle = _write_bundle_as_slicer_does(scene, files[0], tmp_path / "slicer", tags)

    written = pydicom.dcmread(bundle)
    assert written.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # img2dcm's Secondary Capture
    assert written.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # the screenshot as JPEG Baseline
    assert written.SeriesDescription == "Slicer Data Bundle" and written.PatientID == reference.PatientID
    assert written[0xCADB0010].value == f"3D Slicer {(tmp_path / 'slicer' / 'scene.zip').stat().st_size}"
    assert max(int(t) for t in written.keys()) == 0xCADB1010  # the zip is the last element
    assert _read_zip_as_slicer_does(bundle) == (tmp_path / "slicer" / "scene.zip").read_bytes()

    logic.import_paths([bundle])
    report = logic.examine([str(written.SeriesInstanceUID)])
    chosen = logic.choose_loadables(report.loadables)
    assert [l.plugin for l in chosen] == ["DICOMSlicerDataBundlePlugin"], report.loadables
    assert chosen[0].name == "Slicer Data Bundle"
    target = scenes.new_scene()
    restored = logic.load(chosen, target, report=report)[0]
    assert restored.IsA("vtkMRMLScalarVolumeNode") and restored.GetScene() is target
    same_volume(scenes.array_from_volume(volume), scenes.ijk_to_ras_of(volume),
                scenes.array_from_volume(restored), scenes.ijk_to_ras_of(restored))
    # placed in the subject hierarchy as Slicer's plugin places it: the bundle's series, patient and study
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(target)
    item = hierarchy.GetItemByDataNode(restored)
    uid_name = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()
    assert hierarchy.GetItemUID(item, uid_name) == written.SeriesInstanceUID
    assert hierarchy.GetItemUID(hierarchy.GetItemParent(item), uid_name) == written.StudyInstanceUID


def test_our_scene_object_is_read_by_slicers_procedure(loaded_series, cli_runner, tmp_path):
    import slicer

    from DICOMBrowser.DICOMBrowserLib import scene as scenes

    logic, scene, volume, files = loaded_series
    first = pydicom.dcmread(files[0])
    result = cli_runner("export-scene", first.SeriesInstanceUID, "--study", first.StudyInstanceUID,
                        "--output-dir", str(tmp_path / "ours"), "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    [path] = json.loads(result.output[result.output.index("{"):])["files"]
    ours = pydicom.dcmread(path)
    assert ours.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert max(int(t) for t in ours.keys()) == 0xCADB1010
    zip_data = _read_zip_as_slicer_does(Path(path))
    assert zip_data == bytes(ours[0xCADB1010].value)[:len(zip_data)]
    assert any(name.endswith(".mrml") for name in zipfile.ZipFile(io.BytesIO(zip_data)).namelist())

    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "scene.zip").write_bytes(zip_data)
    (work / "scene").mkdir()  # Slicer unpacks into a fresh temporary folder (tempfile.mkdtemp)
    target = scenes.new_scene()
    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(target)
    try:
        assert application.OpenSlicerDataBundle(str(work / "scene.zip"), str(work / "scene"))
    finally:
        application.SetMRMLScene(None)
    restored = target.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    assert restored is not None
    same_volume(scenes.array_from_volume(volume), scenes.ijk_to_ras_of(volume),
                scenes.array_from_volume(restored), scenes.ijk_to_ras_of(restored))


def test_odd_and_even_zip_sizes_read_back_both_ways(loaded_series, tmp_path):
    """Slicer's reader skips one pad byte when the zip's size is odd: bundles of both parities,
    written as Slicer writes them, give the zip to Slicer's procedure and to ours."""
    from DICOMBrowser.DICOMBrowserLib.export.bundle import bundle_from_file

    if not all(shutil.which(tool) for tool in DCMTK_TOOLS):
        pytest.skip("DCMTK's dcmdump, dump2dcm and img2dcm are needed to write a bundle as Slicer does")
    logic, scene, volume, files = loaded_series
    seen: dict[int, int] = {}
    for extra in range(16):  # the scene grows by a few characters until both parities were written
        volume.SetAttribute("note", "x" * extra)
        bundle = _write_bundle_as_slicer_does(scene, files[0], tmp_path / f"b{extra}", {})
        zip_data = (tmp_path / f"b{extra}" / "scene.zip").read_bytes()
        assert _read_zip_as_slicer_does(bundle) == zip_data
        assert bundle_from_file(bundle) == zip_data
        seen[len(zip_data) % 2] = len(zip_data)
        if len(seen) == 2:
            break
    assert set(seen) == {0, 1}, seen
