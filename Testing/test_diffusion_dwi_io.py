"""One DWI writer per format, whatever the entry point: `scene.save_volume` (what `dicombrowser
load --output` calls), `DICOMBrowserLogic.save_dwi` and `diffusion.save_dwi` write the same
bytes for the same node; Slicer-style NRRD DWI (RAS space, a rotated measurement frame, a
detached header) is read back by our reader and by slicer-core's own storage node."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic
from DICOMBrowser.DICOMBrowserLib import scene as scenes
from DICOMBrowser.DICOMBrowserLib.diffusion import read_dwi, read_nrrd, save_dwi
from DICOMBrowser.DICOMBrowserLib.diffusion.node import add_dwi_node, series_from_node

FORMATS = {".nrrd": [".nrrd"], ".nhdr": [".nhdr", ".raw.gz"], ".nii": [".nii", ".bval", ".bvec"],
           ".nii.gz": [".nii.gz", ".bval", ".bvec"]}


@pytest.fixture
def dwi_node(ge_files):
    """The real GE DWI as a vtkMRMLDiffusionWeightedVolumeNode in a scene (kept alive with it)."""
    scene = scenes.new_scene()
    series = read_dwi(ge_files)
    series.bvalues[3] = 500.0  # a second shell, so the NRRD vectors are scaled by sqrt(b / b_max)
    node = add_dwi_node(scene, series)
    yield node, series
    scenes.close_scene(scene)


def _content(path: Path) -> bytes:
    """A file's bytes; gzip members by their content (the stream header may hold a time stamp)."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


@pytest.mark.timeout(120)
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_every_entry_point_writes_the_same_file(dwi_node, tmp_path, suffix):
    node, _series = dwi_node
    entry_points = {
        "scene.save_volume": lambda path: scenes.save_volume(node, path),
        "DICOMBrowserLogic.save_volume": lambda path: DICOMBrowserLogic(tmp_path / "db").save_volume(node, path),
        "DICOMBrowserLogic.save_dwi": lambda path: DICOMBrowserLogic(tmp_path / "db").save_dwi(node, path),
        "diffusion.save_dwi": lambda path: save_dwi(node, path),
    }
    written = {}
    for name, write in entry_points.items():
        folder = tmp_path / name
        write(folder / f"dwi{suffix}")
        written[name] = {extension: folder / f"dwi{extension}" for extension in FORMATS[suffix]}
    reference = written.pop("diffusion.save_dwi")
    for name, files in written.items():
        for extension, path in files.items():
            assert path.is_file(), f"{name} did not write {path.name}"
            assert _content(path) == _content(reference[extension]), f"{name}: {path.name} differs"
    if suffix in (".nrrd", ".nhdr"):  # our NRRD is byte-stable (no gzip time stamp): identical files
        for name, files in written.items():
            assert files[suffix].read_bytes() == reference[suffix].read_bytes(), name


@pytest.mark.timeout(300)
def test_cli_load_writes_the_file_save_dwi_writes(cli_runner, ge_files, tmp_path):
    """`dicombrowser load FOLDER --output dwi.nrrd` and save_dwi of the node the plugin loads."""
    from DICOMPlugins.DICOMDiffusionVolumePlugin import DICOMDiffusionVolumePlugin

    for suffix in (".nrrd", ".nii.gz"):
        output = tmp_path / "cli" / f"dwi{suffix}"
        result = cli_runner("load", str(ge_files[0].parent), "--output", str(output))
        assert result.exit_code == 0, result.output
        plugin = DICOMDiffusionVolumePlugin()
        scene = scenes.new_scene()
        node = plugin.load(plugin.examine([[str(p) for p in ge_files]])[0], scene)
        ours = save_dwi(node, tmp_path / "direct" / f"dwi{suffix}")
        for path in ours:
            assert _content(path) == _content(output.parent / path.name), path.name
        scenes.close_scene(scene)


def _rewrite_in_frame(path: Path, target: Path, frame: np.ndarray, space_ras: bool) -> None:
    """Our NRRD DWI rewritten as other writers lay it out: gradients in a measurement frame whose
    columns are `frame`'s (v_space = frame @ v_file), and optionally space RAS (DWIConvert and
    Slicer's writer do both)."""
    header, payload = path.read_bytes().split(b"\n\n", 1)
    lines = header.decode("ascii").splitlines()
    to_space = np.diag([-1.0, -1.0, 1.0]) if space_ras else np.eye(3)
    measurement = to_space @ frame  # file vectors -> the header's space
    out = []
    for line in lines:
        if line.startswith("DWMRI_gradient_"):
            key, value = line.split(":=")
            vector = np.array([float(v) for v in value.split()])
            vector = np.linalg.solve(frame, vector)  # LPS -> the frame's components
            line = f"{key}:= " + " ".join(repr(float(v)) for v in vector)
        elif line.startswith("measurement frame:"):
            line = "measurement frame: " + " ".join("(" + ",".join(repr(float(v)) for v in measurement[:, c]) + ")"
                                                    for c in range(3))
        elif space_ras and line.startswith("space:"):
            line = "space: right-anterior-superior"
        elif space_ras and (line.startswith("space directions:") or line.startswith("space origin:")):
            def flip(match: re.Match) -> str:
                x, y, z = (float(v) for v in match.group(1).split(","))
                return f"({-x!r},{-y!r},{z!r})"

            line = re.sub(r"\(([^)]*)\)", flip, line)
        out.append(line)
    target.write_bytes("\n".join(out).encode("ascii") + b"\n\n" + payload)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("space_ras", [False, True], ids=["LPS", "RAS"])
def test_slicer_style_nrrd_with_a_rotated_measurement_frame_reads_back(dwi_node, tmp_path, space_ras):
    """Gradients stored in an oblique measurement frame (as DWIConvert writes Philips data), in
    LPS or RAS space: our reader and Slicer's vtkMRMLNRRDStorageNode both give the LPS vectors."""
    import slicer

    _node, series = dwi_node
    ours = save_dwi(series, tmp_path / "ours.nrrd")[0]
    angle = np.radians(25.0)
    frame = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    frame = frame @ np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.3), -np.sin(0.3)], [0.0, np.sin(0.3), np.cos(0.3)]])
    rotated = tmp_path / "rotated.nrrd"
    _rewrite_in_frame(ours, rotated, frame, space_ras)
    assert "measurement frame: (1,0,0)" not in rotated.read_bytes()[:4000].decode("ascii", "replace")
    back = read_nrrd(rotated)
    np.testing.assert_array_equal(back.voxels, series.voxels)
    np.testing.assert_allclose(back.ijk_to_ras, series.ijk_to_ras, atol=1e-9)
    np.testing.assert_allclose(back.bvalues, series.bvalues, atol=1e-6)
    np.testing.assert_allclose(back.gradients_lps, series.gradients_lps, atol=1e-9)
    scene = scenes.new_scene()
    storage = slicer.vtkMRMLNRRDStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(rotated))
    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    scene.AddNode(node)
    assert storage.ReadData(node) == 1
    through_slicer = series_from_node(node)
    np.testing.assert_allclose(through_slicer.gradients_lps, series.gradients_lps, atol=1e-6)
    np.testing.assert_allclose(through_slicer.bvalues, series.bvalues, atol=1e-3)
    np.testing.assert_allclose(through_slicer.ijk_to_ras, series.ijk_to_ras, atol=1e-6)
    scenes.close_scene(scene)


@pytest.mark.timeout(120)
def test_detached_nhdr_read_by_slicer_and_by_us(dwi_node, tmp_path):
    """`.nhdr` + `.raw.gz`: Slicer's storage node and our reader read the same DWI from it."""
    import slicer

    _node, series = dwi_node
    header, data = save_dwi(series, tmp_path / "dwi.nhdr")
    assert data.name == "dwi.raw.gz" and f"data file: {data.name}" in header.read_text()
    back = read_nrrd(header)
    np.testing.assert_array_equal(back.voxels, series.voxels)
    np.testing.assert_allclose(back.gradients_lps, series.gradients_lps, atol=1e-9)
    scene = scenes.new_scene()
    storage = slicer.vtkMRMLNRRDStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(header))
    node = slicer.vtkMRMLDiffusionWeightedVolumeNode()
    scene.AddNode(node)
    assert storage.ReadData(node) == 1
    through_slicer = series_from_node(node)
    np.testing.assert_array_equal(through_slicer.voxels, series.voxels)
    np.testing.assert_allclose(through_slicer.gradients_lps, series.gradients_lps, atol=1e-6)
    np.testing.assert_allclose(through_slicer.bvalues, series.bvalues, atol=1e-3)
    scenes.close_scene(scene)


def test_stored_dwi_keeps_integers_in_nifti_and_writes_modality_values_to_nrrd(ge_files, tmp_path):
    """read_dwi(stored=True) with one scaling for every frame: NIfTI gets the stored integers and
    scl_slope/scl_inter (the values nibabel computes equal the float series'), NRRD (no scale
    fields) the modality values; both read back equal to read_dwi's float32 voxels."""
    import dataclasses

    import nibabel

    from DICOMBrowser.DICOMBrowserLib.diffusion import write_fsl, write_nrrd

    stored = read_dwi(ge_files, stored=True)
    assert stored.rescale is None and stored.voxels.dtype.kind in "iu"  # GE: no scaling to keep
    scaled = dataclasses.replace(stored, rescale=(0.5, -3.0))
    expected = stored.voxels.astype(np.float32) * 0.5 - 3.0
    nifti, _, _ = write_fsl(scaled, tmp_path / "scaled.nii")
    image = nibabel.load(str(nifti))
    assert image.get_data_dtype() == stored.voxels.dtype
    assert (image.dataobj.slope, image.dataobj.inter) == (0.5, -3.0)  # nibabel moves scl_* here on load
    back = np.transpose(np.asarray(image.dataobj), (3, 2, 1, 0))[:, :, ::-1, :]  # to (volume, k, j, i)
    np.testing.assert_allclose(back, expected)
    reread = read_nrrd(write_nrrd(scaled, tmp_path / "scaled.nrrd"))
    assert reread.voxels.dtype == np.float32
    np.testing.assert_allclose(reread.voxels, expected)
