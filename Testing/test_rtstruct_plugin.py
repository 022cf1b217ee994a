"""RT Structure Sets: a user loads real structure sets and gets segmentations whose labelmaps
match an independent rasterisation of the same contours (plastimatch, Debian's package), on the
same grid, with Dice >= 0.98 per structure.

Given orthanc_tests' RTH (a TCIA structure set of 5 ROIs, 382 contours, with one of its 130 CT
slices) imported into a database, when `dicombrowser load RT_UID --output rt.seg.nrrd`, then the
grid is the CT's (0.977 mm, 512 x 512) extended over every contour plane (3 mm), each ROI keeps
its name and colour, has a closed surface, and agrees with `plastimatch convert --fixed` on that
grid. pydicom's rtstruct.dcm (no CT at all) rasterises on a 1 mm grid and keeps its two
isocentre points as markups; a contour inside another is a hole. On a generated oblique CT
series (sampledata) with a structure set written with pydicom, contours on the slices, contours
between them and a contour across them: the first two are drawn like plastimatch draws them,
the last is reported; sagittal contours without their images get a sagittal grid.
"""
from __future__ import annotations

import json
from pathlib import Path
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


def _rotated_orientation(about_x_degrees: float, about_y_degrees: float) -> tuple[float, ...]:
    """ImageOrientationPatient of the axial plane turned about x, then y (an oblique plane)."""
    ax, ay = np.radians(about_x_degrees), np.radians(about_y_degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    turned = ry @ rx
    return tuple(turned[:, 0]) + tuple(turned[:, 1])


def _write_rtstruct(image_paths: list[Path], path: Path, rois) -> None:
    """A structure set drawn on `image_paths` (pydicom): `rois` are (name, RGB, [polygons (n, 3) LPS])."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    first = pydicom.dcmread(image_paths[0], stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
                    "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "FrameOfReferenceUID"):
        setattr(ds, keyword, getattr(first, keyword))
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "RTSTRUCT", generate_uid(), 99, 1
    ds.SeriesDescription, ds.StructureSetLabel = "Generated structures", "Generated"
    ds.StructureSetDate, ds.StructureSetTime = "20260101", "120000"
    images = []
    for image in image_paths:
        header = pydicom.dcmread(image, stop_before_pixels=True)
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
        images.append(item)
    series, study, frame = Dataset(), Dataset(), Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = first.SeriesInstanceUID, images
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", first.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = first.FrameOfReferenceUID, [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, colour, polygons) in enumerate(rois, start=1):
        roi, contours, observation = Dataset(), Dataset(), Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, first.FrameOfReferenceUID, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        contours.ReferencedROINumber, contours.ROIDisplayColor, contours.ContourSequence = number, list(colour), []
        for polygon in polygons:
            contour = Dataset()
            contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(polygon)
            contour.ContourData = [f"{v:.6f}" for v in np.asarray(polygon).ravel()]
            contours.ContourSequence.append(contour)
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
        ds.StructureSetROISequence.append(roi)
        ds.ROIContourSequence.append(contours)
        ds.RTROIObservationsSequence.append(observation)
    ds.save_as(path, enforce_file_format=True)


def _structures_on(image_paths: list[Path]):
    """An ellipsoid (one contour per slice), a rectangular prism inside its bounds, a small cylinder
    drawn 0.4 slice off the slices (parallel, between them) and one square across the slices
    (along the normal). No edge lies on the pixel centres of a grid anchored at the contours'
    bounds (pixel centres on an edge are in or out by convention, which differs between tools)."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in image_paths]
    row = np.array([float(v) for v in headers[0].ImageOrientationPatient[:3]])
    column = np.array([float(v) for v in headers[0].ImageOrientationPatient[3:]])
    normal = np.cross(row, column)
    spacing = float(np.dot(np.array([float(v) for v in headers[1].ImagePositionPatient])
                           - np.array([float(v) for v in headers[0].ImagePositionPatient]), normal))

    def on_slice(k, u, v, w=0.0):  # u along the rows, v down the columns, w along the normal (mm)
        origin = np.array([float(x) for x in headers[k].ImagePositionPatient])
        return origin + np.outer(u, row) + np.outer(v, column) + w * normal

    theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    centre = len(headers) // 2
    ellipsoid = []
    for k in range(len(headers)):
        shrink = 1 - ((k - centre) * spacing / 22.0) ** 2
        if shrink > 0.02:
            ellipsoid.append(on_slice(k, 25 + 18 * np.sqrt(shrink) * np.cos(theta), 28 + 12 * np.sqrt(shrink) * np.sin(theta)))
    # the square's edges carry points every 1.2-2 mm, as a planning system's would: plastimatch
    # 1.9.4 fills a 4-point square on a sagittal grid as a triangle
    steps = np.linspace(0.0, 1.0, 10, endpoint=False)
    square_u = np.concatenate([8.3 + 12 * steps, np.full(10, 20.3), 20.3 - 12 * steps, np.full(10, 8.3)])
    square_v = np.concatenate([np.full(10, 30.3), 30.3 + 8 * steps, np.full(10, 38.3), 38.3 - 8 * steps])
    prism = [on_slice(k, square_u, square_v) for k in range(5, 30)]
    between = [on_slice(k, 40 + 6 * np.cos(theta), 12 + 6 * np.sin(theta), w=0.4 * spacing) for k in range(10, 25)]
    across = on_slice(centre, np.array([10, 30, 30, 10.0]), np.zeros(4)) + np.outer([0, 0, 10, 10], normal)
    return [("Ellipsoid", (255, 0, 0), ellipsoid + [across]), ("Prism", (0, 255, 0), prism),
            ("Between", (0, 0, 255), between)]


def test_oblique_series_contours_match_plastimatch(cli_runner, series_factory, tmp_path, caplog):
    """Given an oblique CT series (turned 25 degrees about x and 35 about y, 0.8 mm pixels, 1.5 mm
    slices) and a structure set drawn on it, when loaded through the CLI, then the grid is the
    series' own and every ROI agrees with plastimatch's rasterisation on that grid; the contour
    across the slices is reported and left out. The series is sampledata.write_series's (series_factory)."""
    ct = series_factory("ct", count=40, spacing=1.5, orientation=_rotated_orientation(25, 35), rows=64, columns=64,
                        pixel_spacing=(0.8, 0.8), pixels=lambda index, rows, columns: np.zeros((rows, columns), np.int16))
    (tmp_path / "rt").mkdir()
    rtstruct = tmp_path / "rt" / "rt.dcm"
    _write_rtstruct(ct, rtstruct, _structures_on(ct))
    assert cli_runner("import", str(tmp_path / "ct"), str(tmp_path / "rt")).exit_code == 0
    uid = str(pydicom.dcmread(rtstruct, stop_before_pixels=True).SeriesInstanceUID)
    output = tmp_path / "rt.seg.nrrd"
    result = cli_runner("load", uid, "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "Ellipsoid: 1 contour(s) not parallel to the image slices left out" in caplog.text
    assert "Prism:" not in caplog.text and "Between: " not in caplog.text
    masks, _, grid = _seg_nrrd(output)
    header = pydicom.dcmread(ct[0], stop_before_pixels=True)
    row, column = np.array(header.ImageOrientationPatient[:3], float), np.array(header.ImageOrientationPatient[3:], float)
    direction = np.array(grid.GetDirection()).reshape(3, 3)  # SimpleITK: LPS, columns are the axes
    assert np.allclose(direction[:, 0], row, atol=1e-5) and np.allclose(direction[:, 1], column, atol=1e-5)
    assert grid.GetSize() == (64, 64, 40) and np.allclose(grid.GetSpacing(), (0.8, 0.8, 1.5), atol=1e-5)
    reference = _plastimatch_masks(rtstruct, grid, tmp_path / "plastimatch")
    for name, mask in masks.items():
        assert mask.any() and _dice(mask, reference[name]) >= 0.98, name
    # the contours between slices went to the nearer slice: 15 planes of the cylinder, no more
    assert len(np.flatnonzero(masks["Between"].any(axis=(1, 2)))) == 15


def test_sagittal_contours_without_their_images_get_a_sagittal_grid(series_factory, tmp_path):
    """A structure set drawn on a sagittal series, loaded without those images: its contours all
    lie in sagittal planes, so the grid is sagittal (1 mm pixels, the contours' plane spacing)
    rather than axial, nothing is left out, and plastimatch agrees on that grid."""
    from DICOMBrowser.DICOMBrowserLib import loading, scene, segmentation

    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    ct = series_factory("ct", count=30, spacing=2.0, orientation=sagittal, rows=64, columns=64,
                        pixels=lambda index, rows, columns: np.zeros((rows, columns), np.int16))
    (tmp_path / "alone").mkdir()
    rtstruct = tmp_path / "alone" / "rt.dcm"
    rois = [roi for roi in _structures_on(ct) if roi[0] != "Between"]
    rois[0] = (rois[0][0], rois[0][1], rois[0][2][:-1])  # no contour across the slices this time
    _write_rtstruct(ct, rtstruct, rois)
    report = loading.examine(None, [[str(rtstruct)]])
    (loadable,) = [l for l in report.loadables if l.selected]
    mrml = scene.new_scene()
    (node,) = loading.load_loadables([loadable], mrml, report=report)
    assert not node.GetAttribute("DICOM.warning")
    masks, _, grid = _seg_nrrd(segmentation.save_segmentation(node, str(tmp_path / "sagittal.seg.nrrd")))
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    assert abs(direction[0, 2]) == pytest.approx(1.0, abs=1e-6) and grid.GetSpacing()[2] == pytest.approx(2.0)
    reference = _plastimatch_masks(rtstruct, grid, tmp_path / "plastimatch")
    for name, mask in masks.items():
        assert mask.any() and _dice(mask, reference[name]) >= 0.98, name
