"""RT Structure Sets: a user loads real structure sets and gets segmentations whose labelmaps
match an independent rasterisation of the same contours (plastimatch, Debian's package), on the
same grid, with Dice >= 0.98 per structure.

Given orthanc_tests' RTH (a TCIA structure set of 5 ROIs, 382 contours, with one of its 130 CT
slices) imported into a database, when `dicombrowser load RT_UID --output rt.seg.nrrd`, then the
grid is the CT's (0.977 mm, 512 x 512) extended over every contour plane (3 mm), each ROI keeps
its name and colour, has a closed surface, and agrees with `plastimatch convert --fixed` on that
grid. pydicom's rtstruct.dcm (no CT at all) rasterises on a 1 mm grid and keeps its two
isocentre points as markups; a contour inside another is a hole.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

RTH = "orthanc_tests/Database/HierarchicalAnonymization/RTH"


def _plastimatch_masks(rtstruct, grid_image, folder, xor: bool = False) -> dict[str, np.ndarray]:
    """plastimatch's rasterisation of every ROI onto `grid_image`'s grid (name -> (k, j, i) bool);
    `xor`: contours of a plane combined by the even-odd rule (plastimatch's default ORs them)."""
    if shutil.which("plastimatch") is None:
        pytest.skip("plastimatch not installed (Debian package plastimatch; Utilities/setup.sh --test)")
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(grid_image, str(folder / "grid.nrrd"))
    subprocess.run(["plastimatch", "convert", "--input", str(rtstruct), "--fixed", str(folder / "grid.nrrd"),
                    "--output-prefix", str(folder / "out"), "--prefix-format", "nrrd", *(["--xor-contours"] if xor else [])],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return {path.stem: sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0 for path in (folder / "out").glob("*.nrrd")}


def _seg_nrrd(path) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, ...]], object]:
    """Segment name -> mask, name -> colour, and an empty image on the file's grid (read by SimpleITK)."""
    image = sitk.ReadImage(str(path))
    voxels = sitk.GetArrayFromImage(image)
    if voxels.ndim == 3:
        voxels = voxels[..., np.newaxis]
    masks, colors = {}, {}
    index = 0
    while image.HasMetaDataKey(f"Segment{index}_ID"):
        name = image.GetMetaData(f"Segment{index}_Name")
        layer, label = int(image.GetMetaData(f"Segment{index}_Layer")), int(image.GetMetaData(f"Segment{index}_LabelValue"))
        masks[name] = voxels[..., layer] == label
        colors[name] = tuple(float(v) for v in image.GetMetaData(f"Segment{index}_Color").split())
        index += 1
    grid = sitk.Image(list(voxels.shape[:3][::-1]), sitk.sitkUInt8)
    grid.SetOrigin(image.GetOrigin()[:3])
    grid.SetSpacing(image.GetSpacing()[:3])
    grid.SetDirection(image.GetDirection()[:9])
    return masks, colors, grid


def _dice(a, b) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.slow
def test_rth_structure_set_matches_plastimatch(cli_runner, corpus, tmp_path):
    rtstruct = corpus / RTH / "RT.dcm"
    assert cli_runner("import", str(corpus / RTH)).exit_code == 0
    uid = str(pydicom.dcmread(rtstruct, stop_before_pixels=True).SeriesInstanceUID)
    ct_uid = str(pydicom.dcmread(corpus / RTH / "CT01.dcm", stop_before_pixels=True).SeriesInstanceUID)
    (loadable,) = json.loads(cli_runner("examine", uid, "--json").output)
    assert loadable["plugin"] == "DICOMRTStructureSetPlugin" and loadable["selected"]
    assert loadable["referencedSeriesUIDs"] == [ct_uid]

    output = tmp_path / "rt.seg.nrrd"
    result = cli_runner("load", uid, "--output", str(output))
    assert result.exit_code == 0, result.output
    masks, colors, grid = _seg_nrrd(output)
    assert set(masks) == {"SpinalCord", "Lung_R", "Lung_L", "Heart", "Esophagus"}
    assert np.allclose(colors["Heart"], np.array([179, 255, 178]) / 255, atol=1e-5)
    assert grid.GetSize() == (512, 512, 104)  # CT01's in-plane grid, slices -640.2 .. -331.2 every 3 mm
    assert np.allclose(grid.GetSpacing(), [0.976562, 0.976562, 3.0], atol=1e-5)
    reference = _plastimatch_masks(rtstruct, grid, tmp_path / "plastimatch")
    for name, mask in masks.items():
        assert _dice(mask, reference[name]) >= 0.98, name
    # Lung_R has 93 contours on 79 planes: islands on a plane must all be filled
    assert np.count_nonzero(masks["Lung_R"]) == pytest.approx(np.count_nonzero(reference["Lung_R"]), rel=0.01)


def test_closed_surface_and_markups_from_pydicom_rtstruct(pydicom_file, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import loading, scene, segmentation

    source = pydicom_file("rtstruct.dcm")
    report = loading.examine(None, [[str(source)]])
    (loadable,) = [l for l in report.loadables if l.selected]
    mrml = scene.new_scene()
    (node,) = loading.load_loadables([loadable], mrml, report=report)
    import slicer

    seg = node.GetSegmentation()
    patient = seg.GetSegment("ROI_1")
    assert patient.GetName() == "patient"
    surface = patient.GetRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
    assert surface is not None and surface.GetNumberOfPoints() > 0
    points = mrml.GetNodesByClass("vtkMRMLMarkupsFiducialNode").GetItemAsObject(0)
    assert [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())] == [
        "Isocenter 1", "Isocenter 2"]
    output = segmentation.save_segmentation(node, str(tmp_path / "pydicom.seg.nrrd"))
    masks, _, grid = _seg_nrrd(output)
    reference = _plastimatch_masks(source, grid, tmp_path / "plastimatch")
    assert _dice(masks["patient"], reference["patient"]) >= 0.98


def test_contour_inside_contour_is_a_hole(pydicom_file, tmp_path):
    from DICOMBrowser.DICOMBrowserLib import structureset

    dataset = pydicom.dcmread(pydicom_file("rtstruct.dcm"), force=True)
    contours = dataset.ROIContourSequence[0].ContourSequence
    outer = np.asarray(contours[0].ContourData, dtype=float).reshape(-1, 3)
    centre, z = outer[:, :2].mean(axis=0), outer[0, 2]
    square = [(centre[0] + dx, centre[1] + dy, z) for dx, dy in ((-20, -20), (20, -20), (20, 20), (-20, 20))]
    hole = pydicom.Dataset()
    hole.ContourGeometricType = "CLOSED_PLANAR"
    hole.NumberOfContourPoints = 4
    hole.ContourData = [float(v) for point in square for v in point]
    contours.append(hole)
    structures = structureset.read_structure_set(dataset, "holes")
    grid = structureset.reference_grid(structures, [])
    problems: list[str] = []
    mask = structureset.rasterize(structures.rois[0], grid, problems)
    centre_ijk = np.linalg.inv(grid.ijk_to_lps) @ [centre[0], centre[1], z, 1]
    k, j, i = (int(round(c)) for c in centre_ijk[2::-1])
    assert mask[k, j, i] == 0 and mask[k, j, i + 25] == 1  # inside the hole: out; in the ring: in
    assert not problems
    # 40 x 40 mm hole on a 1 mm grid: 1600 pixel centres (41 x 41 on the closed square's edges, half counted)
    without_hole = structureset.rasterize(structureset.read_structure_set(
        pydicom.dcmread(pydicom_file("rtstruct.dcm"), force=True), "plain").rois[0], grid, [])
    assert np.count_nonzero(without_hole[k]) - np.count_nonzero(mask[k]) == 1600
    path = tmp_path / "holes.dcm"
    dataset.save_as(path, enforce_file_format=False)
    sitk_grid = sitk.Image([grid.shape[2], grid.shape[1], grid.shape[0]], sitk.sitkUInt8)
    sitk_grid.SetOrigin(tuple(grid.ijk_to_lps[:3, 3]))
    sitk_grid.SetSpacing(tuple(np.linalg.norm(grid.ijk_to_lps[:3, :3], axis=0)))
    reference = _plastimatch_masks(path, sitk_grid, tmp_path / "plastimatch", xor=True)
    assert _dice(mask.astype(bool), reference["patient"]) >= 0.98
    assert reference["patient"][k, j, i] == 0  # plastimatch's even-odd reading has the same hole


def test_fill_polygon_counts_pixel_centres():
    from DICOMBrowser.DICOMBrowserLib.structureset import fill_polygon

    square = np.array([[1.5, 1.5], [5.5, 1.5], [5.5, 4.5], [1.5, 4.5]])  # centres 2..5 x 2..4
    mask = fill_polygon(square, (8, 8))
    assert np.count_nonzero(mask) == 12 and mask[2:5, 2:6].all()
