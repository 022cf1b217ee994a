"""DICOM Segmentation objects (SEG) read with highdicom, and 3D Slicer segmentation nodes.

Reading: `read_seg` gives each segment's binary mask on one regular grid (highdicom's
`Segmentation.get_volume`: frames placed by their plane positions, missing planes of sparse
objects filled with zeros, overlapping segments kept as separate channels), the segment's
number, label, recommended display colour (CIELab converted to sRGB) and terminology codes, and
the series the object references. Fractional segments are made binary at half their maximum,
as dcmqi (Slicer's DICOM SEG reader) does.

Nodes: `add_segmentation` makes a `vtkMRMLSegmentationNode` with one binary labelmap per
segment; non-overlapping segments share a layer (Slicer's `CollapseBinaryLabelmaps`), so a
`.seg.nrrd` written by Slicer's storage node holds one layer per set of overlapping segments.

Coordinates: highdicom's volume affine maps (slice, row, column) to LPS mm; node matrices are
IJK-to-RAS (i = column, j = row, k = slice).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import DICOMBrowserError, DICOMFileError, LoadError
from .geometry import LPS_TO_RAS

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASSES = {SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE}
#: Slicer's terminology context name for codes taken from a DICOM object
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass
class SegmentInfo:
    """One segment: its number in the object, label, colour (sRGB 0..1) and coded meaning."""

    number: int
    label: str
    color: tuple[float, float, float]
    category: tuple[str, str, str] = ("", "", "")  # (scheme, value, meaning)
    type: tuple[str, str, str] = ("", "", "")
    type_modifier: tuple[str, str, str] = ("", "", "")
    anatomic_region: tuple[str, str, str] = ("", "", "")
    anatomic_region_modifier: tuple[str, str, str] = ("", "", "")
    algorithm_type: str = ""
    description: str = ""

    def terminology(self) -> str:
        """Slicer's terminology entry string (vtkSegment::SetTerminology, the .seg.nrrd tag)."""
        def code(c: tuple[str, str, str]) -> str:
            return "^".join(c)

        return "~".join([TERMINOLOGY_CONTEXT, code(self.category), code(self.type), code(self.type_modifier),
                         ANATOMIC_CONTEXT, code(self.anatomic_region), code(self.anatomic_region_modifier)])


@dataclass
class SegmentationData:
    """What `read_seg` gives: masks (segments, k, j, i) uint8 0/1, on the grid `ijk_to_ras` (RAS mm)."""

    masks: np.ndarray
    ijk_to_ras: np.ndarray
    segments: list[SegmentInfo]
    segmentation_type: str  # BINARY, FRACTIONAL, LABELMAP
    referenced_series_uids: list[str] = field(default_factory=list)
    referenced_instance_uids: list[str] = field(default_factory=list)
    frame_of_reference_uid: str = ""


def cielab_to_srgb(values: Sequence[int]) -> tuple[float, float, float]:
    """DICOM's scaled CIELab (PS3.3 C.10.7.1.1: L* 0..100 and a*, b* -128..127 scaled to 0..65535,
    D65 white) to sRGB in 0..1, through CIE XYZ and the sRGB transfer curve (IEC 61966-2-1)."""
    lightness = values[0] * 100.0 / 65535.0
    a = values[1] * 255.0 / 65535.0 - 128.0
    b = values[2] * 255.0 / 65535.0 - 128.0
    fy = (lightness + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0

    def inverse(t: float) -> float:
        return t ** 3 if t > 6.0 / 29.0 else 3 * (6.0 / 29.0) ** 2 * (t - 4.0 / 29.0)

    white = (0.950456, 1.0, 1.088754)  # D65
    xyz = np.array([white[0] * inverse(fx), white[1] * inverse(fy), white[2] * inverse(fz)])
    linear = np.array([[3.2404542, -1.5371385, -0.4985314],
                       [-0.9692660, 1.8760108, 0.0415560],
                       [0.0556434, -0.2040259, 1.0572252]]) @ xyz
    rgb = [12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055 for c in linear]
    return tuple(float(min(max(c, 0.0), 1.0)) for c in rgb)  # type: ignore[return-value]


def _code(item: Any, keyword: str) -> tuple[str, str, str]:
    sequence = item.get(keyword) if item is not None else None
    if not sequence:
        return ("", "", "")
    code = sequence[0]
    return (str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeValue", "") or code.get("LongCodeValue", "")),
            str(code.get("CodeMeaning", "")))


def _segment_info(item: Any) -> SegmentInfo:
    type_sequence = item.get("SegmentedPropertyTypeCodeSequence")
    type_item = type_sequence[0] if type_sequence else None
    region_sequence = item.get("AnatomicRegionSequence")
    region_item = region_sequence[0] if region_sequence else None
    lab = item.get("RecommendedDisplayCIELabValue")
    number = int(item.SegmentNumber)
    color = cielab_to_srgb([int(v) for v in lab]) if lab else _default_color(number)
    return SegmentInfo(
        number=number, label=str(item.get("SegmentLabel", "") or f"Segment {number}"), color=color,
        category=_code(item, "SegmentedPropertyCategoryCodeSequence"), type=_code(item, "SegmentedPropertyTypeCodeSequence"),
        type_modifier=_code(type_item, "SegmentedPropertyTypeModifierCodeSequence"),
        anatomic_region=_code(item, "AnatomicRegionSequence"),
        anatomic_region_modifier=_code(region_item, "AnatomicRegionModifierSequence"),
        algorithm_type=str(item.get("SegmentAlgorithmType", "") or ""),
        description=str(item.get("SegmentDescription", "") or ""))


def _default_color(number: int) -> tuple[float, float, float]:
    """A colour for segments without a recommended one (a fixed cycle, so reloads look the same)."""
    cycle = [(0.5, 0.68, 0.5), (0.94, 0.84, 0.57), (0.69, 0.48, 0.4), (0.44, 0.72, 0.82), (0.85, 0.4, 0.4),
             (0.56, 0.4, 0.7), (0.9, 0.6, 0.3)]
    return cycle[(number - 1) % len(cycle)]


def referenced_series(dataset: Any) -> tuple[list[str], list[str]]:
    """(series UIDs, instance UIDs) the SEG's ReferencedSeriesSequence names (the source images)."""
    series, instances = [], []
    for item in dataset.get("ReferencedSeriesSequence", []) or []:
        uid = str(item.get("SeriesInstanceUID", ""))
        if uid and uid not in series:
            series.append(uid)
        instances.extend(str(i.get("ReferencedSOPInstanceUID", "")) for i in item.get("ReferencedInstanceSequence", []) or [])
    return series, [i for i in instances if i]


def read_seg(path: str) -> SegmentationData:
    """Every segment of a SEG file as a binary mask on one grid (see the module docstring)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except (ValueError, AttributeError, KeyError, OSError) as error:
        raise DICOMFileError(str(path), f"not a readable DICOM Segmentation: {error}") from error
    segment_infos = [_segment_info(item) for item in seg.SegmentSequence]
    segment_infos = [s for s in segment_infos if s.number != 0]  # labelmap SEGs describe their background
    numbers = [s.number for s in segment_infos]
    kind = str(getattr(seg.segmentation_type, "value", seg.segmentation_type))
    try:
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False, rescale_fractional=True,
                                allow_missing_positions=True)
    except (ValueError, RuntimeError) as error:
        raise LoadError(f"{path}: segment frames do not form one regular 3D grid ({error}); "
                        "not loaded as a segmentation") from error
    array = np.asarray(volume.array)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if kind == "FRACTIONAL":
        masks = array >= 0.5  # rescaled to 0..1: half the maximum fractional value
    else:
        masks = array != 0
    masks = np.ascontiguousarray(np.moveaxis(masks.astype(np.uint8), 3, 0))
    affine = np.asarray(volume.affine, dtype=float)  # (slice, row, column) -> LPS
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0], ijk_to_lps[:3, 1], ijk_to_lps[:3, 2] = affine[:3, 2], affine[:3, 1], affine[:3, 0]
    ijk_to_lps[:3, 3] = affine[:3, 3]
    series, instances = referenced_series(seg)
    return SegmentationData(masks=masks, ijk_to_ras=LPS_TO_RAS @ ijk_to_lps, segments=segment_infos,
                            segmentation_type=kind, referenced_series_uids=series, referenced_instance_uids=instances,
                            frame_of_reference_uid=str(seg.get("FrameOfReferenceUID", "")))


def register_conversion_rules() -> None:
    """Slicer's labelmap <-> closed surface conversion rules (once per process): slicer-core does
    not register them, and a segmentation node cannot make a surface (or a labelmap from one)
    without them."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if getattr(register_conversion_rules, "_done", False):
        return
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    register_conversion_rules._done = True  # type: ignore[attr-defined]


def oriented_image(mask_kji: np.ndarray, ijk_to_ras: np.ndarray) -> Any:
    """A vtkOrientedImageData (Slicer's labelmap representation) over a (k, j, i) uint8 mask."""
    import slicer
    from vtkmodules.util import numpy_support

    from .scene import vtk_matrix

    mask = np.ascontiguousarray(mask_kji, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    scalars = numpy_support.numpy_to_vtk(mask.reshape(-1), deep=True)
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras))
    return image


def add_segment(segmentation: Any, segment_id: str, name: str, color: Sequence[float],
                representation: str, data: Any, terminology: str = "") -> Any:
    """A vtkSegment with `data` as its `representation` (binary labelmap or closed surface)."""
    import slicer

    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetColor(*[float(c) for c in color[:3]])
    segment.SetNameAutoGenerated(False)  # name and colour come from the DICOM object
    segment.SetColorAutoGenerated(False)
    if terminology:
        segment.SetTerminology(terminology)
    segment.AddRepresentation(representation, data)
    segmentation.AddSegment(segment, segment_id)
    return segment


def add_segmentation(scene: Any, data: SegmentationData, name: str, *, series_uid: str,
                     instance_uids: Sequence[str], dicom_identity: dict[str, str]) -> Any:
    """A vtkMRMLSegmentationNode holding `data`'s segments as binary labelmaps (see module docstring)."""
    import slicer

    from .scene import _set_dicom_attributes, add_to_subject_hierarchy

    register_conversion_rules()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segmentation.SetSourceRepresentationName(labelmap_name)
    for index, info in enumerate(data.segments):
        segment = add_segment(segmentation, f"Segment_{info.number}", info.label, info.color, labelmap_name,
                              oriented_image(data.masks[index], data.ijk_to_ras), info.terminology())
        segment.SetLabelValue(1)
        segment.SetTag("DICOM.SegmentNumber", str(info.number))
        if info.algorithm_type:
            segment.SetTag("DICOM.SegmentAlgorithmType", info.algorithm_type)
    # non-overlapping segments into shared layers (overlapping ones stay apart), as Slicer stores them
    segmentation.CollapseBinaryLabelmaps(False)
    _set_dicom_attributes(node, series_uid, instance_uids, dicom_identity)
    node.SetAttribute("DICOM.referencedSeriesUIDs", " ".join(data.referenced_series_uids))
    node.SetAttribute("DICOM.segmentationType", data.segmentation_type)
    add_to_subject_hierarchy(scene, node, series_uid, dicom_identity)
    return node


def save_segmentation(node: Any, path: str) -> str:
    """Write a segmentation node as Slicer does (`.seg.nrrd` through vtkMRMLSegmentationStorageNode:
    layers along the 4th axis, `SegmentN_ID/_Name/_Color/_Layer/_LabelValue/_Tags` keys, LPS space)."""
    import os

    import slicer

    path = os.path.abspath(os.path.expanduser(str(path)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    storage = node.GetStorageNode()
    if storage is None:
        storage = slicer.vtkMRMLSegmentationStorageNode()
        if node.GetScene() is not None:
            node.GetScene().AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(path)
    storage.SetUseCompression(True)
    if not storage.WriteData(node):
        raise DICOMBrowserError(f"{path}: Slicer's segmentation storage node could not write {node.GetName()}")
    return path


def segment_arrays(node: Any, reference_ijk_to_ras: np.ndarray | None = None,
                   shape_kji: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Segment name -> binary (k, j, i) mask of a segmentation node's labelmap representation, on its
    own grid or resampled (nearest) onto a reference grid."""
    import slicer

    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segmentation = node.GetSegmentation()
    found = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        image = segment.GetRepresentation(labelmap_name)
        if image is None:
            continue
        found[segment.GetName()] = _mask_of(image, segment.GetLabelValue(), reference_ijk_to_ras, shape_kji)
    return found


def _mask_of(image: Any, label: int, reference: np.ndarray | None, shape: Sequence[int] | None) -> np.ndarray:
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    from .scene import matrix_to_array

    extent = image.GetExtent()
    dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
    if min(dims) <= 0:
        return np.zeros(tuple(shape) if shape is not None else (0, 0, 0), dtype=np.uint8)
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    mask = (values == label).astype(np.uint8)
    matrix = vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    image_to_ras = matrix_to_array(matrix)
    offset = np.eye(4)
    offset[:3, 3] = [extent[0], extent[2], extent[4]]
    image_to_ras = image_to_ras @ offset
    if reference is None:
        return mask
    return resample_nearest(mask, image_to_ras, reference, shape)


def resample_nearest(mask_kji: np.ndarray, ijk_to_ras: np.ndarray, target_ijk_to_ras: np.ndarray,
                     target_shape_kji: Sequence[int]) -> np.ndarray:
    """A mask moved onto another grid by nearest neighbour (voxels outside the source are 0)."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in target_shape_kji], indexing="ij")
    points = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    source = np.linalg.inv(ijk_to_ras) @ np.asarray(target_ijk_to_ras) @ points
    index = np.rint(source[:3]).astype(np.int64)
    shape = mask_kji.shape
    inside = ((index[0] >= 0) & (index[0] < shape[2]) & (index[1] >= 0) & (index[1] < shape[1])
              & (index[2] >= 0) & (index[2] < shape[0]))
    out = np.zeros(index.shape[1], dtype=np.uint8)
    out[inside] = mask_kji[index[2, inside], index[1, inside], index[0, inside]]
    return out.reshape(tuple(target_shape_kji))
