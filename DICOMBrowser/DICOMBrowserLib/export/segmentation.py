"""Segmentations as DICOM Segmentation objects (SEG), written with highdicom.

Sources (`segmentation_source`): a labelmap (NRRD/NIfTI file or labelmap volume node: each
non-zero value one segment), or a 3D Slicer segmentation (a `.seg.nrrd` read by Slicer's
segmentation storage node, or a `vtkMRMLSegmentationNode`, e.g. the one our SEG plugin loads):
each segment its own mask, so overlapping segments (Slicer's layers) stay whole. All masks are
put on one grid (the union of the segments' extents on the first segment's lattice).

Each segment carries a name, a display colour and its terminology (category and type, with an
optional type modifier and anatomic region): from the segment's `TerminologyEntry` when the
segmentation has one, else from `--segment`, else SNOMED CT "Tissue" (85756007) for both, the
generic term Slicer itself uses for an unspecified segment. `--segment` overrides any of them.

The SEG references the image series it was drawn on (`reference_series_uid`, one of the
study's series): highdicom copies patient, study and frame of reference from those images and
lists them as source images. The segments' own grid is written as plane positions (LPS), so it
need not match the images' grid; each segment gets its own frames (highdicom writes one frame
per segment and plane), which is what keeps overlaps. BINARY by default; FRACTIONAL on request
(max value 255, probability), which also takes a probability map (a float volume in 0..1) as
one fractional segment.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from ..errors import ExportError
from .study import StudyContext
from .volume import ExportResult, VolumeSource, _version, read_volume_source, slice_geometry, volume_from_node

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: the default category and type (code, scheme, meaning): SNOMED CT "Tissue", as Slicer names a
#: segment nobody described
TISSUE = ("85756007", "SCT", "Tissue")
#: fractional values are stored as 0..255 (highdicom's default maximum)
MAX_FRACTIONAL_VALUE = 255

Code3 = tuple[str, str, str]  # (code value, coding scheme designator, code meaning), as pydicom's Code


@dataclass
class SegmentInfo:
    """One segment: its label (labelmap value, or segment number/name/ID of a segmentation), name,
    display colour (RGB 0-255) and terms (code, scheme, meaning); None means "not given"."""

    label: int | str
    name: str = ""
    color: tuple[int, int, int] | None = None
    category: Code3 | None = None
    type: Code3 | None = None
    type_modifier: Code3 | None = None
    anatomic_region: Code3 | None = None
    position: int = 0  # the segment's place in its source (1 = first), which --segment N names for a segmentation


@dataclass
class SegmentationSource:
    """What a SEG export writes: masks (segments, k, j, i), binary uint8 or fractions float32 in
    0..1, on the grid `ijk_to_ras` (RAS mm, i = column, j = row, k = slice); one SegmentInfo each."""

    masks: np.ndarray
    ijk_to_ras: np.ndarray
    segments: list[SegmentInfo]
    name: str = "segmentation"
    fractional_values: bool = False  # masks hold fractions (a probability map), not 0/1
    notes: list[str] = field(default_factory=list)


def _code(text: str, option: str) -> Code3:
    parts = text.split("^")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ExportError(f"--segment {option!r}: a code is CodeValue^Scheme^Meaning (e.g. 10200004^SCT^Liver), "
                          f"not {text!r}")
    return (parts[0].strip(), parts[1].strip(), parts[2].strip())


def parse_segment(text: str) -> SegmentInfo:
    """`LABEL=Name[:R,G,B[:Category:Type]]` (the CLI's --segment) as SegmentInfo; a code is
    CodeValue^Scheme^Meaning. LABEL is a labelmap value, or for a segmentation the segment's
    number (1 = first), name or ID."""
    label_text, sep, rest = text.partition("=")
    if not sep or not label_text.strip():
        raise ExportError(f"--segment {text!r}: expected LABEL=Name[:R,G,B[:Category:Type]]")
    label: int | str = label_text.strip()
    if str(label).isdigit():
        label = int(label)
    fields = rest.split(":")
    name = fields[0].strip()
    color = None
    if len(fields) > 1 and fields[1].strip():
        try:
            color = tuple(int(c) for c in fields[1].split(","))
        except ValueError as error:
            raise ExportError(f"--segment {text!r}: colour must be R,G,B (0-255)") from error
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ExportError(f"--segment {text!r}: colour must be three values 0-255")
    category = type_ = None
    if len(fields) == 3 or len(fields) > 4:
        raise ExportError(f"--segment {text!r}: give both the category and the type code, or neither")
    if len(fields) == 4:
        category, type_ = _code(fields[2], text), _code(fields[3], text)
    return SegmentInfo(label, name, color, category, type_)  # type: ignore[arg-type]


# --- sources ------------------------------------------------------------------------------------
def segmentation_source(source: Any, *, fractional: bool = False) -> SegmentationSource:
    """A file (.seg.nrrd, labelmap .nrrd/.nii/.nii.gz), a segmentation or labelmap node, a
    VolumeSource (labelmap) or a SegmentationSource, as a SegmentationSource."""
    if isinstance(source, SegmentationSource):
        return source
    if isinstance(source, VolumeSource):
        return segments_from_labelmap(source, fractional=fractional)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise ExportError(f"{path}: no such segmentation or labelmap file")
        if _is_slicer_segmentation(path):
            return segments_from_node(_read_seg_nrrd(path))
        return segments_from_labelmap(read_volume_source(path), fractional=fractional)
    if hasattr(source, "IsA") and source.IsA("vtkMRMLSegmentationNode"):
        return segments_from_node(source)
    return segments_from_labelmap(volume_from_node(source), fractional=fractional)


def _is_slicer_segmentation(path: Path) -> bool:
    """A `.seg.nrrd`, or any NRRD whose header has Slicer's segment keys (Segment0_ID)."""
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return True
    if not name.endswith((".nrrd", ".nhdr")):
        return False
    with open(path, "rb") as stream:
        header = stream.read(65536).split(b"\n\n", 1)[0]
    return b"Segment0_ID:=" in header


def _read_seg_nrrd(path: Path) -> Any:
    from .. import scene as scenes
    from ..segmentation import register_conversion_rules

    slicer = scenes._slicer()
    register_conversion_rules()
    scene = scenes.new_scene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", path.name.split(".")[0])
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise ExportError(f"{path}: Slicer's segmentation storage node could not read it")
    return node


def segments_from_labelmap(labelmap: VolumeSource, *, fractional: bool = False) -> SegmentationSource:
    """Each non-zero value of a labelmap one binary segment; with `fractional`, a float volume that
    is not whole numbers is a probability map (0..1): one fractional segment."""
    if labelmap.voxels.shape[0] != 1:
        raise ExportError(f"labelmap {labelmap.name}: a 4D labelmap cannot be one segmentation")
    voxels = np.asarray(labelmap.voxels[0])
    if voxels.dtype.kind == "f" and not np.all(voxels == np.round(voxels)):
        if not fractional:
            raise ExportError(f"labelmap {labelmap.name}: voxels are not whole numbers; a labelmap holds labels "
                              "(a probability map in 0..1 exports with --fractional)")
        low, high = float(np.nanmin(voxels)), float(np.nanmax(voxels))
        if not np.all(np.isfinite(voxels)) or low < 0 or high > 1:
            raise ExportError(f"labelmap {labelmap.name}: a probability map must lie in 0..1 (found {low}..{high})")
        return SegmentationSource(voxels[np.newaxis].astype(np.float32), labelmap.ijk_to_ras, [SegmentInfo(1)],
                                  labelmap.name, fractional_values=True)
    voxels = voxels.astype(np.int64)
    labels = [int(v) for v in np.unique(voxels) if v > 0]
    if not labels:
        raise ExportError(f"labelmap {labelmap.name}: no segment (every voxel is 0)")
    masks = np.stack([voxels == label for label in labels]).astype(np.uint8)
    infos = [SegmentInfo(label, position=position) for position, label in enumerate(labels, start=1)]
    return SegmentationSource(masks, labelmap.ijk_to_ras, infos, labelmap.name)


def segments_from_node(node: Any) -> SegmentationSource:
    """A segmentation node's segments (binary labelmap representation), each its own mask on one
    grid, with names, colours and terminology. Empty segments are left out (named in the notes)."""
    import slicer

    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segmentation = node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        raise ExportError(f"segmentation {node.GetName()}: no segments")
    if not segmentation.ContainsRepresentation(labelmap_name):
        node.CreateBinaryLabelmapRepresentation()
    found, notes = [], []
    for index, info in enumerate(describe_segments(node)):
        segment = segmentation.GetNthSegment(index)
        image = segment.GetRepresentation(labelmap_name)
        mask, ijk_to_ras = _segment_mask(image, segment.GetLabelValue()) if image is not None else (None, None)
        if mask is None or not mask.any():
            notes.append(f"segment {info.name!r} ({info.label}) is empty: left out")
            continue
        found.append((info, mask, ijk_to_ras))
    if not found:
        raise ExportError(f"segmentation {node.GetName()}: every segment is empty")
    masks, ijk_to_ras = _common_grid([(m, a) for _, m, a in found], node.GetName())
    return SegmentationSource(masks, ijk_to_ras, [info for info, _, _ in found], node.GetName(), notes=notes)


def describe_segments(node: Any) -> list[SegmentInfo]:
    """The segments of a segmentation node as the SEG would describe them (ID as label, name,
    colour 0-255, terminology), without reading their masks: what the export dialog shows."""
    segmentation = node.GetSegmentation()
    infos = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        info = SegmentInfo(segmentation.GetNthSegmentID(index), segment.GetName(),
                           tuple(int(round(c * 255)) for c in segment.GetColor()), position=index + 1)
        _terminology_into(info, segment.GetTerminology())  # the segment's TerminologyEntry tag
        infos.append(info)
    return infos


def _terminology_into(info: SegmentInfo, entry: str) -> None:
    """Category, type, type modifier and anatomic region from Slicer's TerminologyEntry string:
    context~category~type~modifier~anatomic context~region~region modifier, each code
    Scheme^Value^Meaning."""
    if not entry:
        return
    fields = entry.split("~")

    def code(position: int) -> Code3 | None:
        if position >= len(fields):
            return None
        parts = fields[position].split("^")
        if len(parts) < 3 or not parts[0].strip() or not parts[1].strip():
            return None
        return (parts[1].strip(), parts[0].strip(), "^".join(parts[2:]).strip() or parts[1].strip())

    category, type_ = code(1), code(2)
    if category is not None and type_ is not None:
        info.category, info.type, info.type_modifier = category, type_, code(3)
    info.anatomic_region = code(5)


def _segment_mask(image: Any, label: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mask (k, j, i), IJK-to-RAS of its first voxel) of one segment's oriented image."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from ..scene import matrix_to_array

    extent = image.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    if min(dims) <= 0 or image.GetPointData().GetScalars() is None:
        return None, None
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    matrix = vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    offset = np.eye(4)
    offset[:3, 3] = [extent[0], extent[2], extent[4]]
    return (values == label).astype(np.uint8), matrix_to_array(matrix) @ offset


def _common_grid(masks: list[tuple[np.ndarray, np.ndarray]], label: str) -> tuple[np.ndarray, np.ndarray]:
    """Every mask on one grid: the first mask's lattice, spanning all masks. Masks on that
    lattice are placed voxel for voxel; others are resampled (nearest)."""
    from ..segmentation import resample_nearest

    base = masks[0][1]
    inverse = np.linalg.inv(base)
    low, high = np.full(3, np.inf), np.full(3, -np.inf)
    placed = []
    for mask, ijk_to_ras in masks:
        to_base = inverse @ ijk_to_ras
        aligned = np.allclose(to_base[:3, :3], np.eye(3), atol=1e-4) and \
            np.allclose(to_base[:3, 3], np.round(to_base[:3, 3]), atol=1e-3)
        shape_ijk = np.array(mask.shape[::-1])
        corners = np.array([[i, j, k, 1.0] for i in (0, shape_ijk[0] - 1) for j in (0, shape_ijk[1] - 1)
                            for k in (0, shape_ijk[2] - 1)]).T
        in_base = (to_base @ corners)[:3]
        low, high = np.minimum(low, np.floor(in_base.min(axis=1) + 1e-3)), np.maximum(high, np.ceil(in_base.max(axis=1) - 1e-3))
        placed.append((mask, ijk_to_ras, aligned, np.round(to_base[:3, 3]).astype(int)))
    start = low.astype(int)
    size = (high - low).astype(int) + 1
    grid = base.copy()
    grid[:3, 3] = (base @ np.array([*start, 1.0]))[:3]
    shape_kji = (int(size[2]), int(size[1]), int(size[0]))
    out = np.zeros((len(masks), *shape_kji), dtype=np.uint8)
    for index, (mask, ijk_to_ras, aligned, origin) in enumerate(placed):
        if aligned:
            i0, j0, k0 = origin - start
            out[index, k0:k0 + mask.shape[0], j0:j0 + mask.shape[1], i0:i0 + mask.shape[2]] = mask
        else:
            logger.info("segmentation %s: segment %d on another lattice, resampled (nearest)", label, index + 1)
            out[index] = resample_nearest(mask, ijk_to_ras, grid, shape_kji)
    return out, grid


def _apply_overrides(source: SegmentationSource, overrides: list[SegmentInfo]) -> list[SegmentInfo]:
    """The source's segments with `--segment` values put over them (each must match a segment)."""
    infos = [replace(info) for info in source.segments]
    for override in overrides:
        # a labelmap's segments are named by value; a segmentation's by number, name or ID
        matches = [info for info in infos
                   if override.label == info.label or override.label == info.name
                   or (isinstance(info.label, str) and override.label == info.position)]
        if not matches:
            known = [info.label if isinstance(info.label, int) else f"{info.position}={info.name}" for info in infos]
            raise ExportError(f"{source.name}: --segment label {override.label!r} does not occur (segments: {known})")
        for info in matches:
            info.name = override.name or info.name
            info.color = override.color or info.color
            if override.category is not None:
                info.category, info.type, info.type_modifier = override.category, override.type, None
    return infos


def current_code(code: Code3) -> Code3:
    """A SNOMED RT code ("SRT", which PS3.16 deprecates; older SEGs such as dcmqi's liver.dcm
    carry them) as the SNOMED CT ("SCT") code PS3.16 maps it to; other codes unchanged. The
    mapping table is pydicom's copy of the standard's (the one pydicom's Code equality uses)."""
    value, scheme, meaning = code
    if scheme != "SRT":
        return code
    try:
        from pydicom.sr._snomed_dict import mapping
    except ImportError:  # the table moved: keep the deprecated code (dciodvfy then warns)
        return code
    translated = mapping.get("SRT", {}).get(value)
    return (translated, "SCT", meaning) if translated else code


# --- the SEG object -----------------------------------------------------------------------------
def build_segmentation(source: Any, study: StudyContext, reference_series_uid: str | None,
                       segments: list[SegmentInfo] | None = None, series_description: str = "",
                       series_number: int | None = None, fractional: bool = False) -> ExportResult:
    """One DICOM SEG object for `source` (see `segmentation_source`), checked by highdicom's
    constructor (nothing written)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    source = segmentation_source(source, fractional=fractional)
    reference_uid = reference_series_uid or _default_reference(study)
    files = study.series_files.get(reference_uid)
    if not files:
        raise ExportError(f"series {reference_uid} is not in study {study.study_uid}; "
                          f"name one of {sorted(study.series_files)} with --reference")
    try:
        source_images = [pydicom.dcmread(f) for f in files]
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise ExportError(f"reference series {reference_uid}: cannot read {error}") from error
    source_images = [ds for ds in source_images if "PixelData" in ds and "FrameOfReferenceUID" in ds]
    for ds in source_images:  # an empty character set means the default; highdicom wants it absent then
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet
    if not source_images:
        raise ExportError(f"reference series {reference_uid} has no images with a frame of reference to refer to")

    infos = _apply_overrides(source, segments or [])
    descriptions = []
    for number, info in enumerate(infos, start=1):
        color = hd.color.CIELabColor.from_rgb(*info.color) if info.color is not None else None
        name = info.name or f"Segment {info.label}"
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=Code(*current_code(info.category or TISSUE)),
            segmented_property_type=Code(*current_code(info.type or TISSUE)),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL, display_color=color,
            anatomic_regions=[Code(*current_code(info.anatomic_region))] if info.anatomic_region else None)
        if info.type_modifier is not None:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(*current_code(info.type_modifier))]
        descriptions.append(description)

    slices = source.masks.shape[1]
    geometry = slice_geometry(source.ijk_to_ras, slices, f"segmentation {source.name}")
    pixel_array = np.moveaxis(source.masks, 0, -1)  # (k, j, i, segments): each segment its own frames
    if fractional:
        pixel_array = pixel_array.astype(np.float32)
    coordinate = hd.CoordinateSystemNames.PATIENT
    plane_positions = [hd.PlanePositionSequence(coordinate, position) for position in geometry.positions]
    orientation = hd.PlaneOrientationSequence(coordinate, geometry.orientation)
    measures = hd.PixelMeasuresSequence(pixel_spacing=geometry.pixel_spacing,
                                        slice_thickness=geometry.slice_thickness)
    series_uid = generate_uid()
    number = series_number if series_number is not None else study.next_series_number()
    kind = hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
    try:
        seg = hd.seg.Segmentation(
            source_images=source_images, pixel_array=pixel_array, segmentation_type=kind,
            segment_descriptions=descriptions, series_instance_uid=series_uid, series_number=number,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer="DICOMBrowser",
            manufacturer_model_name="DICOMBrowser", software_versions=_version(), device_serial_number="0",
            plane_positions=plane_positions, plane_orientation=orientation, pixel_measures=measures,
            max_fractional_value=MAX_FRACTIONAL_VALUE,
            series_description=(series_description or source.name)[:64], omit_empty_frames=True)
    except (ValueError, TypeError) as error:
        raise ExportError(f"segmentation {source.name} -> SEG for series {reference_uid}: {error}") from error
    result = ExportResult(study.study_uid, series_uid, SEGMENTATION_STORAGE, str(seg.FrameOfReferenceUID), True,
                          datasets=[seg])
    result.notes.extend(source.notes)
    result.notes.append(f"{len(infos)} {kind.value.lower()} segment(s) referencing series {reference_uid}")
    return result


def _default_reference(study: StudyContext) -> str:
    """The study's only series, else ExportError asking for --reference."""
    if len(study.series_files) == 1:
        return next(iter(study.series_files))
    raise ExportError(f"study {study.study_uid} has {len(study.series_files)} series; name the one the "
                      "segmentation was drawn on with --reference SERIES_UID")


def export_segmentation(database: Any, source: Any, study_uid: str, reference_series_uid: str | None,
                        segments: list[SegmentInfo] | None = None, series_description: str = "",
                        output_dir: Any = None, to_database: bool = False, send: Any = None,
                        deidentify: Any = None, fractional: bool = False) -> ExportResult:
    """Build the SEG, then write/import/send it like a volume export."""
    from .destinations import deliver
    from .study import study_context

    study = study_context(database, study_uid)
    result = build_segmentation(source, study, reference_series_uid, segments, series_description,
                                fractional=fractional)
    return deliver(database, result, output_dir=output_dir, to_database=to_database, send=send,
                   deidentify=deidentify, prefix="SEG_")
