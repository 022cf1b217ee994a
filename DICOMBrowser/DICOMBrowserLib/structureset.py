"""RT Structure Sets: planar contours rasterised onto the referenced image grid.

An RTSTRUCT holds, per ROI, closed polygons each lying in one image plane (LPS mm). Here each
ROI becomes a binary labelmap on a regular grid: every polygon's plane is matched to a slice of
the grid, and the pixels whose centres lie inside are set with the even-odd rule over all the
polygons of that slice, so a contour inside another is a hole and disjoint contours are islands
(DICOM PS3.3 C.8.8.6 leaves holes to this convention, as planning systems draw them). The closed
surface is then made from the labelmap by Slicer's own conversion rule (slicer-core has no
planar-contour rule). Polygons are matched in the grid's own IJK frame (points times the inverse
of IJK-to-LPS), so axial, sagittal, coronal and oblique images work alike: a polygon is parallel
to the slices when its points spread along the slice normal by at most
max(0.05 mm, a tenth of the slice spacing), and is drawn on the nearest slice (one between two
slices goes to the nearer; when several contour planes fall to one slice, as with contours finer
than the slices, the plane nearest the slice is drawn and the others are reported). Polygons not
parallel to the slices are reported and left out; POINT ROIs (isocentres, markers) become markups
points.

The grid: the referenced CT's in-plane grid (orientation, spacing, rows, columns) and its slice
spacing, extended along the normal to every contour plane (a structure set often covers more
slices than the files at hand); without any referenced image, a grid with 1 mm pixels over the
contours' bounds, its slices parallel to the contours (axial unless every contour lies in one
other orientation) and the contours' plane spacing apart.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import DICOMFileError, LoadError
from .geometry import LPS_TO_RAS, slice_normal

logger = logging.getLogger(__name__)

#: distance (mm) between a contour plane and the nearest grid slice still taken as on that slice
PLANE_TOLERANCE_MM = 0.05
#: spread (mm) of a contour's points along the slice normal beyond which it is not in one slice plane
NON_PLANAR_TOLERANCE_MM = 0.05
DEFAULT_PIXEL_MM = 1.0


@dataclass
class ImagePlane:
    """What a grid needs from one referenced image: position (LPS mm), orientation, spacing, size."""

    position: np.ndarray
    orientation: np.ndarray  # row cosines, column cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    rows: int
    columns: int


@dataclass
class Grid:
    """A regular grid: (k, j, i) shape and the IJK-to-LPS matrix (mm)."""

    shape: tuple[int, int, int]
    ijk_to_lps: np.ndarray

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.ijk_to_lps


@dataclass
class ROI:
    """One structure: number, name, colour (0..1), its closed polygons (LPS mm) and points."""

    number: int
    name: str
    color: tuple[float, float, float]
    polygons: list[np.ndarray] = field(default_factory=list)  # each (n, 3) LPS
    points: list[np.ndarray] = field(default_factory=list)
    interpreted_type: str = ""


@dataclass
class StructureSet:
    rois: list[ROI]
    referenced_series_uids: list[str]
    frame_of_reference_uid: str
    label: str


def read_structure_set(dataset: Any, path: str) -> StructureSet:
    """The ROIs of an RTSTRUCT dataset with their contours (polygons and points)."""
    if "StructureSetROISequence" not in dataset:
        raise DICOMFileError(path, "StructureSetROISequence is missing: not a structure set")
    names = {int(item.ROINumber): str(item.get("ROIName", "") or f"ROI {item.ROINumber}")
             for item in dataset.StructureSetROISequence}
    types = {int(item.ReferencedROINumber): str(item.get("RTROIInterpretedType", "") or "")
             for item in dataset.get("RTROIObservationsSequence", []) or []}
    rois: dict[int, ROI] = {number: ROI(number, name, (0.5, 0.5, 0.5), interpreted_type=types.get(number, ""))
                            for number, name in names.items()}
    for item in dataset.get("ROIContourSequence", []) or []:
        number = int(item.ReferencedROINumber)
        roi = rois.setdefault(number, ROI(number, f"ROI {number}", (0.5, 0.5, 0.5)))
        color = item.get("ROIDisplayColor")
        if color and len(color) >= 3:
            roi.color = tuple(float(c) / 255.0 for c in list(color)[:3])  # type: ignore[assignment]
        for contour in item.get("ContourSequence", []) or []:
            data = np.asarray([float(v) for v in contour.get("ContourData", [])], dtype=float).reshape(-1, 3)
            kind = str(contour.get("ContourGeometricType", "")).upper()
            if kind == "POINT":
                roi.points.extend(data)
            elif kind == "CLOSED_PLANAR" and len(data) >= 3:
                roi.polygons.append(data)
            elif len(data):
                logger.info("%s: ROI %s has a %s contour, which has no inside; skipped", path, roi.name, kind or "untyped")
    series = []
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []) or []:
        for study in frame.get("RTReferencedStudySequence", []) or []:
            for item in study.get("RTReferencedSeriesSequence", []) or []:
                uid = str(item.get("SeriesInstanceUID", ""))
                if uid and uid not in series:
                    series.append(uid)
    frame_uid = ""
    frames = dataset.get("ReferencedFrameOfReferenceSequence", []) or []
    if frames:
        frame_uid = str(frames[0].get("FrameOfReferenceUID", ""))
    return StructureSet(rois=[rois[n] for n in sorted(rois)], referenced_series_uids=series,
                        frame_of_reference_uid=frame_uid, label=str(dataset.get("StructureSetLabel", "") or ""))


def image_plane(dataset: Any) -> ImagePlane | None:
    """The plane of an image header (None when it has no geometry)."""
    try:
        return ImagePlane(np.asarray([float(v) for v in dataset.ImagePositionPatient]),
                          np.asarray([float(v) for v in dataset.ImageOrientationPatient]),
                          (float(dataset.PixelSpacing[0]), float(dataset.PixelSpacing[1])),
                          int(dataset.Rows), int(dataset.Columns))
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def _parallel(polygon: np.ndarray, normal: np.ndarray, spacing: float | None = None) -> bool:
    """Whether a polygon (LPS) lies in one plane perpendicular to `normal` (see module docstring)."""
    along = polygon @ normal
    return float(along.max() - along.min()) <= max(NON_PLANAR_TOLERANCE_MM, 0.1 * (spacing or 0.0))


def _plane_positions(structure_set: StructureSet, normal: np.ndarray) -> np.ndarray:
    """Positions along `normal` of the contour planes parallel to it (the others have none)."""
    return np.array(sorted({round(float(np.mean(p @ normal)), 4) for roi in structure_set.rois for p in roi.polygons
                            if _parallel(p, normal)}))


def contour_normal(structure_set: StructureSet) -> np.ndarray | None:
    """The unit normal every closed contour shares (Newell's method per polygon), None when they do
    not all lie in parallel planes. Sign: as the first polygon's, made to point along +z, +y or +x."""
    found: np.ndarray | None = None
    for roi in structure_set.rois:
        for polygon in roi.polygons:
            shifted = np.roll(polygon, -1, axis=0)
            normal = np.array([np.sum((polygon[:, 1] - shifted[:, 1]) * (polygon[:, 2] + shifted[:, 2])),
                               np.sum((polygon[:, 2] - shifted[:, 2]) * (polygon[:, 0] + shifted[:, 0])),
                               np.sum((polygon[:, 0] - shifted[:, 0]) * (polygon[:, 1] + shifted[:, 1]))])
            length = float(np.linalg.norm(normal))
            if length == 0.0:
                continue
            normal /= length
            if found is None:
                found = normal
            elif abs(float(normal @ found)) < 1.0 - 1e-4:
                return None
    if found is None:
        return None
    for axis in (2, 1, 0):
        if abs(found[axis]) > 1e-6:
            return found if found[axis] > 0 else -found
    return found


def _typical_gap(values: np.ndarray) -> float | None:
    gaps = np.diff(np.unique(np.round(values, 3)))
    gaps = gaps[gaps > PLANE_TOLERANCE_MM]
    if gaps.size == 0:
        return None
    smallest = gaps.min()
    return float(np.median(gaps[gaps < smallest * 1.5]))


def reference_grid(structure_set: StructureSet, planes: Sequence[ImagePlane]) -> Grid:
    """The grid the ROIs are rasterised on (see module docstring)."""
    if planes:
        first = planes[0]
        row, column = first.orientation[:3], first.orientation[3:6]
        normal = slice_normal(first.orientation)
        image_positions = np.array([float(p.position @ normal) for p in planes])
        contour_positions = _plane_positions(structure_set, normal)
        gap = _typical_gap(image_positions) if len(planes) > 1 else None
        gap = gap or _typical_gap(contour_positions) or 1.0
        every = np.concatenate([image_positions, contour_positions])
        start = float(image_positions.min())
        low = start - np.ceil((start - every.min()) / gap - 1e-6) * gap
        count = int(np.floor((every.max() - low) / gap + 1e-6)) + 1
        matrix = np.eye(4)
        matrix[:3, 0] = row * first.pixel_spacing[1]
        matrix[:3, 1] = column * first.pixel_spacing[0]
        matrix[:3, 2] = normal * gap
        origin = first.position + normal * (low - float(first.position @ normal))
        matrix[:3, 3] = origin
        return Grid((count, first.rows, first.columns), matrix)
    points = [p for roi in structure_set.rois for p in roi.polygons]
    if not points:
        raise LoadError("structure set has no closed contours and no referenced image: no grid to rasterise on")
    normal = contour_normal(structure_set)
    if normal is not None and abs(float(normal[2])) < 1.0 - 1e-6:
        return _contour_grid(structure_set, normal)
    every = np.concatenate(points)
    low, high = every.min(axis=0) - DEFAULT_PIXEL_MM, every.max(axis=0) + DEFAULT_PIXEL_MM
    normal = np.array([0.0, 0.0, 1.0])
    gap = _typical_gap(_plane_positions(structure_set, normal)) or DEFAULT_PIXEL_MM
    low[2], high[2] = every[:, 2].min(), every[:, 2].max()
    shape = (int(round((high[2] - low[2]) / gap)) + 1, int(np.ceil((high[1] - low[1]) / DEFAULT_PIXEL_MM)) + 1,
             int(np.ceil((high[0] - low[0]) / DEFAULT_PIXEL_MM)) + 1)
    matrix = np.diag([DEFAULT_PIXEL_MM, DEFAULT_PIXEL_MM, gap, 1.0])
    matrix[:3, 3] = low
    return Grid(shape, matrix)


def _contour_grid(structure_set: StructureSet, normal: np.ndarray) -> Grid:
    """Without a referenced image: 1 mm pixels in the contours' own (non-axial) planes, rows along
    the patient axis most perpendicular to the normal, slices the contours' plane spacing apart."""
    axes = np.eye(3)
    row = axes[int(np.argmin(np.abs(axes @ normal)))]
    row = row - (row @ normal) * normal
    row /= np.linalg.norm(row)
    column = np.cross(normal, row)
    every = np.concatenate([p for roi in structure_set.rois for p in roi.polygons])
    frame = np.stack([row, column, normal], axis=1)  # LPS = frame @ (u, v, w)
    local = every @ frame
    gap = _typical_gap(_plane_positions(structure_set, normal)) or DEFAULT_PIXEL_MM
    low = local.min(axis=0) - [DEFAULT_PIXEL_MM, DEFAULT_PIXEL_MM, 0.0]
    high = local.max(axis=0) + [DEFAULT_PIXEL_MM, DEFAULT_PIXEL_MM, 0.0]
    shape = (int(round((high[2] - low[2]) / gap)) + 1, int(np.ceil((high[1] - low[1]) / DEFAULT_PIXEL_MM)) + 1,
             int(np.ceil((high[0] - low[0]) / DEFAULT_PIXEL_MM)) + 1)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = row * DEFAULT_PIXEL_MM, column * DEFAULT_PIXEL_MM, normal * gap
    matrix[:3, 3] = frame @ low
    return Grid(shape, matrix)


def fill_polygon(vertices_ij: np.ndarray, shape_ji: tuple[int, int]) -> np.ndarray:
    """Pixels (j, i) whose centres lie inside a polygon given in fractional (i, j) pixel
    coordinates, by scanlines through the pixel centres (even-odd rule)."""
    mask = np.zeros(shape_ji, dtype=bool)
    x, y = vertices_ij[:, 0], vertices_ij[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    rows = np.arange(max(int(np.ceil(y.min())), 0), min(int(np.floor(y.max())), shape_ji[0] - 1) + 1)
    for j in rows:
        # half-open rule on each edge ((y <= j < y2) or (y2 <= j < y)) so vertices are counted once
        crossing = ((y <= j) & (y2 > j)) | ((y2 <= j) & (y > j))
        if not crossing.any():
            continue
        xs = x[crossing] + (j - y[crossing]) * (x2[crossing] - x[crossing]) / (y2[crossing] - y[crossing])
        xs.sort()
        for left, right in zip(xs[0::2], xs[1::2]):
            first, last = int(np.ceil(left)), int(np.ceil(right)) - 1  # centres in [left, right)
            first, last = max(first, 0), min(last, shape_ji[1] - 1)
            if first <= last:
                mask[j, first:last + 1] ^= True
    return mask


def rasterize(roi: ROI, grid: Grid, problems: list[str]) -> np.ndarray:
    """The ROI's binary mask (k, j, i) uint8 on `grid`: each polygon taken into the grid's IJK frame,
    drawn on its nearest slice (even-odd over the polygons of one contour plane); see the module
    docstring for what is left out and reported."""
    mask = np.zeros(grid.shape, dtype=bool)
    lps_to_ijk = np.linalg.inv(grid.ijk_to_lps)
    spacing = float(np.linalg.norm(grid.ijk_to_lps[:3, 2]))
    tolerance = max(NON_PLANAR_TOLERANCE_MM, 0.1 * spacing) / spacing  # in slices
    by_slice: dict[int, dict[float, list[np.ndarray]]] = {}
    not_parallel = outside = 0
    for polygon in roi.polygons:
        ijk = (lps_to_ijk @ np.c_[polygon, np.ones(len(polygon))].T)[:3].T
        if float(ijk[:, 2].max() - ijk[:, 2].min()) > tolerance:
            not_parallel += 1
            continue
        k = float(np.mean(ijk[:, 2]))
        nearest = int(round(k))
        if not 0 <= nearest < grid.shape[0]:
            outside += 1
            continue
        by_slice.setdefault(nearest, {}).setdefault(round(k, 3), []).append(ijk)
    between = finer = 0
    for nearest, planes in by_slice.items():
        chosen = min(planes, key=lambda plane: abs(plane - nearest))
        for plane, polygons in planes.items():
            if plane != chosen:
                finer += len(polygons)
                continue
            if abs(plane - nearest) * spacing > PLANE_TOLERANCE_MM:
                between += len(polygons)
            for ijk in polygons:
                mask[nearest] ^= fill_polygon(ijk[:, :2], grid.shape[1:])
    if not_parallel:
        problems.append(f"{roi.name}: {not_parallel} contour(s) not parallel to the image slices left out")
    if outside:
        problems.append(f"{roi.name}: {outside} contour(s) outside the grid left out")
    if finer:
        problems.append(f"{roi.name}: {finer} contour(s) on planes finer than the slices left out (each slice "
                        "takes the contour plane nearest to it)")
    if between:
        logger.info("%s: %d contour(s) between slices drawn on the nearest slice", roi.name, between)
    return mask.astype(np.uint8)


def add_structure_set(scene: Any, structure_set: StructureSet, grid: Grid, name: str, *, series_uid: str,
                      instance_uids: Sequence[str], dicom_identity: dict[str, str]) -> tuple[Any, list[str]]:
    """A segmentation node (binary labelmap source, closed surface made from it by Slicer's rule) with
    one segment per ROI that has closed contours, and a markups node of the POINT ROIs. Returns
    (segmentation node, problems)."""
    import slicer

    from . import segmentation as segmentations
    from .scene import _set_dicom_attributes, add_to_subject_hierarchy

    segmentations.register_conversion_rules()
    problems: list[str] = []
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    seg = node.GetSegmentation()
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    seg.SetSourceRepresentationName(labelmap_name)
    geometry_image = segmentations.oriented_image(np.zeros((1, 1, 1), dtype=np.uint8), grid.ijk_to_ras)
    geometry_image.SetDimensions(grid.shape[2], grid.shape[1], grid.shape[0])
    seg.SetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
                               slicer.vtkSegmentationConverter.SerializeImageGeometry(geometry_image))
    for roi in structure_set.rois:
        if not roi.polygons:
            continue
        mask = rasterize(roi, grid, problems)
        if not mask.any():
            problems.append(f"{roi.name}: no pixel centre inside its contours on this grid")
        segment = segmentations.add_segment(seg, f"ROI_{roi.number}", roi.name, roi.color, labelmap_name,
                                            segmentations.oriented_image(mask, grid.ijk_to_ras))
        segment.SetTag("DICOM.ROINumber", str(roi.number))
        if roi.interpreted_type:
            segment.SetTag("DICOM.RTROIInterpretedType", roi.interpreted_type)
    seg.CollapseBinaryLabelmaps(False)
    if seg.GetNumberOfSegments():
        node.CreateClosedSurfaceRepresentation()
    _set_dicom_attributes(node, series_uid, instance_uids, dicom_identity)
    node.SetAttribute("DICOM.referencedSeriesUIDs", " ".join(structure_set.referenced_series_uids))
    if problems:
        node.SetAttribute("DICOM.warning", "; ".join(problems))
        for problem in problems:
            logger.warning("%s: %s", name, problem)
    add_to_subject_hierarchy(scene, node, series_uid, dicom_identity)
    points = [(roi, point) for roi in structure_set.rois for point in roi.points]
    if points:
        markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(f"{name} points"))
        for roi, point in points:
            ras = LPS_TO_RAS[:3, :3] @ np.asarray(point, dtype=float)
            index = markups.AddControlPoint(float(ras[0]), float(ras[1]), float(ras[2]))
            markups.SetNthControlPointLabel(index, roi.name)
        markups.SetAttribute("DICOM.seriesInstanceUID", series_uid)
    return node, problems
