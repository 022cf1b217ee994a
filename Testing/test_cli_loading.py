"""`dicombrowser examine / load / view`: a user's story on the real CT head of the corpus.

Given the CT head imported into a database (or read straight from its folder), the loadables
come out as JSON, the default loads into a volume written as NRRD/NIfTI/MRB that SimpleITK and
nibabel read with SimpleITK's own geometry, and an off-screen screenshot shows three views.
"""
from __future__ import annotations

import json
import zipfile

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

CT_HEAD = "slicer_ct_head/Testing/Data/Input/CTHeadAxialDicom"


@pytest.fixture(scope="module")
def ct_reference(corpus):
    """SimpleITK's reading of the CT head, the independent peer."""
    folder = corpus / CT_HEAD
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return folder, reader.Execute()


@pytest.fixture
def imported(cli_runner, ct_reference):
    folder, _ = ct_reference
    result = cli_runner("import", str(folder))
    assert result.exit_code == 0, result.output
    listing = json.loads(cli_runner("ls", "--level", "series", "--json").output)
    (series,) = listing
    return series["SeriesInstanceUID"]


def _same_geometry(image, reference):
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-2)
    assert np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-3)
    assert np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-5)


@pytest.mark.slow
def test_examine_json_then_load_nrrd_from_database(cli_runner, imported, ct_reference, tmp_path):
    result = cli_runner("examine", imported, "--json")
    assert result.exit_code == 0, result.output
    loadables = json.loads(result.output)
    assert {"name", "plugin", "confidence", "selected", "warning", "files"} <= set(loadables[0])
    selected = [l for l in loadables if l["selected"]]
    assert len(selected) == 1 and selected[0]["plugin"] == "DICOMScalarVolumePlugin"
    assert len(selected[0]["files"]) == 93 and selected[0]["warning"] == ""
    again = cli_runner("examine", imported, "--json")  # served from the examine cache
    assert json.loads(again.output) == loadables

    output = tmp_path / "ct.nrrd"
    result = cli_runner("load", imported, "--output", str(output))
    assert result.exit_code == 0, result.output
    image = sitk.ReadImage(str(output))
    _same_geometry(image, ct_reference[1])
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ct_reference[1]))


@pytest.mark.slow
def test_load_folder_without_database_to_nifti_and_mrb(cli_runner, ct_reference, tmp_path):
    folder, reference = ct_reference
    nifti = tmp_path / "ct.nii.gz"
    result = cli_runner("load", str(folder), "--output", str(nifti), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["loaded"][0]["class"] == "vtkMRMLScalarVolumeNode"
    assert not cli_runner.database_dir.exists(), "a folder is loaded without creating a database"
    image = sitk.ReadImage(str(nifti))
    _same_geometry(image, reference)
    affine = nibabel.load(str(nifti)).affine  # RAS: SimpleITK's LPS origin with x, y negated
    assert np.allclose(affine[:3, 3], np.array(reference.GetOrigin()) * [-1, -1, 1], atol=1e-2)

    bundle = tmp_path / "ct.mrb"
    result = cli_runner("load", str(folder), "--output", str(bundle))
    assert result.exit_code == 0, result.output
    names = zipfile.ZipFile(bundle).namelist()
    assert any(n.endswith(".mrml") for n in names) and any(n.endswith(".nrrd") for n in names)


@pytest.mark.slow
def test_view_screenshot_shows_three_views(cli_runner, ct_reference, tmp_path):
    png = tmp_path / "ct.png"
    result = cli_runner("view", str(ct_reference[0]), "--screenshot", str(png), "--size", "600", "200")
    assert result.exit_code == 0, result.output
    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.shape == (200, 600)
    for pane in range(3):  # head tissue (grey) in every pane, black background around it
        view = pixels[:, pane * 200:(pane + 1) * 200]
        assert (view > 60).mean() > 0.2, f"pane {pane} is nearly empty"
        assert view[2, 100] < 20  # top centre of axial/sagittal/coronal is air


def test_view_without_display_asks_for_screenshot(cli_runner, series_factory, monkeypatch):
    files = series_factory(count=3)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = cli_runner("view", str(files[0].parent))
    assert result.exit_code == 1 and "--screenshot" in result.output


def test_choosing_loadables(cli_runner, series_factory, tmp_path):
    a = series_factory("a", count=3, series_description="first")
    series_factory("b", count=4, series_description="second")
    result = cli_runner("load", str(tmp_path), "--output", str(tmp_path / "x.nrrd"))
    assert result.exit_code == 1 and "--loadable" in result.output
    result = cli_runner("examine", str(tmp_path), "--json")
    loadables = json.loads(result.output)
    index = next(i for i, l in enumerate(loadables) if l["selected"] and len(l["files"]) == 3)
    result = cli_runner("load", str(tmp_path), "--loadable", str(index), "--output", str(tmp_path / "x.nrrd"))
    assert result.exit_code == 0, result.output
    assert sitk.ReadImage(str(tmp_path / "x.nrrd")).GetSize() == (16, 16, 3)
    result = cli_runner("load", str(a[0].parent), "--loadable", "99", "--output", str(tmp_path / "y.nrrd"))
    assert result.exit_code == 1 and "no loadable 99" in result.output
    result = cli_runner("load", str(tmp_path), "--output", str(tmp_path / "x.tiff"), "--loadable", str(index))
    assert result.exit_code == 1 and "unknown output format" in result.output


def test_screenshot_orientation_follows_slicer_views(tmp_path):
    """Radiological convention: patient right on the screen's left (axial, coronal), anterior up
    in axial, anterior to the right in sagittal, superior up in sagittal/coronal."""
    from DICOMBrowser.DICOMBrowserLib import scene as scenes
    from DICOMBrowser.DICOMBrowserLib import view

    scene = scenes.new_scene()
    voxels = np.zeros((40, 50, 60), np.int16)
    # LPS-ordered axial acquisition: i -> left, j -> posterior, k -> superior (1 mm voxels)
    ijk_to_ras = np.array([[-1, 0, 0, 30], [0, -1, 0, 25], [0, 0, 1, -20], [0, 0, 0, 1]], float)
    voxels[:, 20:30, 2:10] = 1000  # at the patient's right, through the centre front-back, all heights
    voxels[25:38, 2:10, 28:32] = 1000  # centre left-right, anterior, superior
    node = scenes.add_scalar_volume(scene, voxels, ijk_to_ras, "phantom", series_uid="1", instance_uids=["1"],
                                    window_level=(1000.0, 500.0))
    png = view.screenshot(node, tmp_path / "phantom.png", size=(900, 300))
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    bright = (rgb[..., 0] > 128) & (abs(rgb[..., 0] - rgb[..., 2]) < 10)  # grey, not the yellow labels
    axial, sagittal, coronal = (bright[:, i * 300:(i + 1) * 300] for i in range(3))
    ys, xs = np.nonzero(axial)
    assert xs.max() < 150 and 100 < ys.mean() < 200  # right block on the left, centred front-back
    ys, xs = np.nonzero(sagittal)
    assert xs.min() > 150 and ys.max() < 150  # anterior-superior block: right and up
    ys, xs = np.nonzero(coronal)
    assert xs.max() < 150 and ys.max() - ys.min() > 150  # right block on the left, full height
    scenes.close_scene(scene)


def test_time_series_loads_as_4d_by_default(cli_runner, tmp_path):
    """Repeated positions over temporal positions: one 4D loadable selected, written as 4D NIfTI,
    a Slicer volume sequence (.seq.nrrd) or a bundle; the screenshot shows its first volume."""
    from pydicom.uid import generate_uid

    from DICOMBrowser.DICOMBrowserLib import sampledata

    folder = tmp_path / "fmri"
    study_uid, series_uid = generate_uid(), generate_uid()
    for t in range(3):
        sampledata.write_series(folder, count=5, rows=8, columns=10, spacing=2.0, study_uid=study_uid,
                                series_uid=series_uid, file_name=f"T{t}_{{index:02d}}.dcm", modality="MR",
                                rescale=None, pixels=lambda i, r, c, t=t: np.full((r, c), 10 * t + i, np.int16),
                                extra={"TemporalPositionIdentifier": t + 1, "NumberOfTemporalPositions": 3})
    loadables = json.loads(cli_runner("examine", str(folder), "--json").output)
    (default,) = [l for l in loadables if l["selected"]]
    assert len(default["files"]) == 15 and "4D" in default["name"]

    nifti = tmp_path / "fmri.nii.gz"
    result = cli_runner("load", str(folder), "--output", str(nifti), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["loaded"][0]["class"] == "vtkMRMLSequenceNode"
    image = nibabel.load(str(nifti))
    assert image.shape == (10, 8, 5, 3)
    assert np.allclose(np.diag(image.affine), [-1, -1, 2, 1])
    assert np.asarray(image.dataobj)[0, 0, :, :].tolist() == [[10 * t + k for t in range(3)] for k in range(5)]

    for name in ("fmri.seq.nrrd", "fmri.mrb"):
        result = cli_runner("load", str(folder), "--output", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).stat().st_size > 0
    png = tmp_path / "fmri.png"
    result = cli_runner("view", str(folder), "--screenshot", str(png))
    assert result.exit_code == 0, result.output
    assert Image.open(png).size == (900, 300)


@pytest.mark.x11
@pytest.mark.timeout(120)
def test_view_opens_an_interactive_window(series_factory, tmp_path):
    """Under a real X display (Xvfb in CI): the window opens, renders and closes."""
    import os
    import subprocess
    import sys

    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (run under xvfb-run)")
    files = series_factory(count=4, rows=32, columns=32)
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    completed = subprocess.run([sys.executable, "-m", "DICOMBrowser", "--temporary", "view", str(files[0].parent),
                                "--close-after", "1"], capture_output=True, text=True, timeout=90, env=env)
    assert completed.returncode == 0, completed.stderr


def test_screenshot_of_a_multicomponent_volume_shows_its_first_component(tmp_path):
    from DICOMBrowser.DICOMBrowserLib import scene as scenes
    from DICOMBrowser.DICOMBrowserLib import view

    scene = scenes.new_scene()
    voxels = np.zeros((20, 30, 30, 4), np.int16)
    voxels[:, 10:20, 10:20, 0] = 1000  # a centred block in the first component only
    voxels[:, :, :, 1:] = 500
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "dwi-like")
    scenes.set_geometry(node, np.diag([-1.0, -1.0, 1.0, 1.0]))
    node.SetAndObserveImageData(scenes.image_data_from_array(voxels))
    png = view.screenshot(node, tmp_path / "vector.png", size=(600, 200))
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    axial = rgb[:, :200]
    grey = (axial[..., 0] > 128) & (abs(axial[..., 0] - axial[..., 2]) < 10)
    ys, xs = np.nonzero(grey)
    assert len(xs) > 100 and abs(xs.mean() - 100) < 10 and abs(ys.mean() - 100) < 10
    scenes.close_scene(scene)


def test_dwi_to_nifti_writes_fsl_sidecars_like_dcm2niix(cli_runner, corpus, tmp_path):
    """The default loadable of the GE DWI series is a diffusion node; NIfTI output brings .bval/.bvec."""
    output = tmp_path / "dwi.nii.gz"
    result = cli_runner("load", str(corpus / "ge_dwi" / "In"), "--output", str(output), "--json")
    if "--loadable" in result.output:  # more than one default (e.g. a localizer): take the DWI one
        loadables = json.loads(cli_runner("examine", str(corpus / "ge_dwi" / "In"), "--json").output)
        index = next(i for i, l in enumerate(loadables) if l["selected"] and "Diffusion" in l["plugin"])
        result = cli_runner("load", str(corpus / "ge_dwi" / "In"), "--loadable", str(index), "--output",
                            str(output), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["loaded"][0]["class"] == "vtkMRMLDiffusionWeightedVolumeNode"
    reference = corpus / "ge_dwi" / "Ref" / "Ax_DWI_TENSOR_R2_1.bval"
    ours = np.loadtxt(tmp_path / "dwi.bval")
    assert np.allclose(ours, np.loadtxt(reference))
    assert nibabel.load(str(output)).shape[3] == len(ours)


def test_relative_output_paths(cli_runner, series_factory, tmp_path, monkeypatch):
    """Outputs named relative to the working directory land there (MRML resolves names against
    the scene's root directory, so a relative path must not be doubled)."""
    files = series_factory("series", count=3)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for output in ("ct.nrrd", "out/ct.nii.gz", "scene/ct.mrml", "bundle/ct.mrb"):
        result = cli_runner("load", str(files[0].parent), "--output", output, "--screenshot", "shots/ct.png")
        assert result.exit_code == 0, (output, result.output)
        assert (work / output).is_file(), output
    assert (work / "shots" / "ct.png").is_file()
    assert list((work / "scene").glob("*.nrrd")) and not (work / "scene" / "scene").exists()


def _same_voxels_in_world(ours: "nibabel.Nifti1Image", reference: "nibabel.Nifti1Image") -> None:
    """Every voxel of ours lands on a voxel of the reference (within 1e-2 mm) with the same values;
    dcm2niix flips rows, so the grids may differ by axis flips/permutations."""
    mapping = np.linalg.inv(reference.affine) @ ours.affine
    assert np.allclose(mapping, np.round(mapping), atol=1e-2 / min(reference.header.get_zooms()[:3]))
    mapping = np.round(mapping).astype(int)
    shape = ours.shape[:3]
    grid = np.indices(shape).reshape(3, -1)
    target = mapping[:3, :3] @ grid + mapping[:3, 3:4]
    assert target.min() >= 0 and np.all(target.max(axis=1) < np.array(reference.shape[:3]))
    a = np.asarray(ours.dataobj)
    b = np.asarray(reference.dataobj)
    assert np.array_equal(a[tuple(grid)], b[tuple(target)])


@pytest.mark.slow
def test_4d_enhanced_multiframe_nifti_matches_dcm2niix(cli_runner, corpus, tmp_path):
    """Siemens XA enhanced multiband EPI (4 multi-frame files, one per time point): our 4D NIfTI
    and dcm2niix's reference put the same values at the same places."""
    output = tmp_path / "rest.nii.gz"
    result = cli_runner("load", str(corpus / "enhanced_multiframe" / "In" / "Siemens"), "--output", str(output))
    assert result.exit_code == 0, result.output
    ours = nibabel.load(str(output))
    reference = nibabel.load(str(corpus / "enhanced_multiframe" / "Ref" / "Siemens_REST1_w_SMS_PF7-8_6.nii"))
    assert ours.shape == reference.shape == (64, 64, 6, 4)
    _same_voxels_in_world(ours, reference)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("series", [CT_HEAD, "ge_t1/In/05_3D_Ax_T1_MP_RAGE_R22"])
def test_nifti_of_real_series_matches_dcm2niix_run_live(cli_runner, corpus, tmp_path, series):
    """No stored reference for these: dcm2niix (Debian) converts the same files in the test."""
    import shutil
    import subprocess

    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not installed (apt-get install dcm2niix)")
    folder = corpus / series
    peer = tmp_path / "dcm2niix"
    peer.mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "volume", "-o", str(peer), str(folder)], check=True,
                   capture_output=True, timeout=240)
    (reference_path,) = peer.glob("volume*.nii")
    output = tmp_path / "ours.nii.gz"
    result = cli_runner("load", str(folder), "--output", str(output))
    assert result.exit_code == 0, result.output
    ours, reference = nibabel.load(str(output)), nibabel.load(str(reference_path))
    assert ours.shape == reference.shape
    _same_voxels_in_world(ours, reference)
