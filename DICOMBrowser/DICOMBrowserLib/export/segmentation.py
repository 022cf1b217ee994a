"""A labelmap (NRRD/NIfTI, or a labelmap volume node) as a DICOM Segmentation, with highdicom.

The SEG object references the image series it was drawn on (`reference_series_uid`, one of the
study's series): highdicom copies patient, study and frame of reference from those images and
lists them as the source images. Each label value becomes one binary segment (names, colours and
terminology from `segments`, else "Segment <value>" as SNOMED CT "Tissue"); the labelmap's own
grid is written as plane positions (LPS) so it need not match the images' grid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from ..errors import ExportError
from .study import StudyContext
from .volume import ExportResult, VolumeSource, _version, slice_geometry

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass
class SegmentInfo:
    """One label of the labelmap: its name, display colour (RGB 0-255) and SNOMED CT terms."""

    label: int
    name: str = ""
    color: tuple[int, int, int] | None = None
    category: tuple[str, str, str] = ("85756007", "SCT", "Tissue")  # code, scheme, meaning
    type: tuple[str, str, str] = ("85756007", "SCT", "Tissue")


def parse_segment(text: str) -> SegmentInfo:
    """`LABEL=Name[:R,G,B]` (the CLI's --segment) as SegmentInfo."""
    label_text, sep, rest = text.partition("=")
    try:
        label = int(label_text)
    except ValueError as error:
        raise ExportError(f"--segment {text!r}: expected LABEL=Name[:R,G,B] with an integer label") from error
    name, _, color_text = rest.partition(":")
    color = None
    if color_text:
        try:
            color = tuple(int(c) for c in color_text.split(","))
        except ValueError as error:
            raise ExportError(f"--segment {text!r}: colour must be R,G,B (0-255)") from error
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ExportError(f"--segment {text!r}: colour must be three values 0-255")
    return SegmentInfo(label, name.strip(), color)


def build_segmentation(labelmap: VolumeSource, study: StudyContext, reference_series_uid: str | None,
                       segments: list[SegmentInfo] | None = None, series_description: str = "",
                       series_number: int | None = None) -> ExportResult:
    """One DICOM SEG object for the labelmap, checked by highdicom's constructor (nothing written)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    if labelmap.voxels.shape[0] != 1:
        raise ExportError(f"labelmap {labelmap.name}: a 4D labelmap cannot be one segmentation")
    voxels = np.asarray(labelmap.voxels[0])
    if voxels.dtype.kind == "f":
        if not np.all(voxels == np.round(voxels)):
            raise ExportError(f"labelmap {labelmap.name}: voxels are not whole numbers; a labelmap holds labels")
    voxels = voxels.astype(np.int64)
    labels = [int(v) for v in np.unique(voxels) if v > 0]
    if not labels:
        raise ExportError(f"labelmap {labelmap.name}: no segment (every voxel is 0)")
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

    infos = {info.label: info for info in (segments or [])}
    unknown = sorted(set(infos) - set(labels))
    if unknown:
        raise ExportError(f"labelmap {labelmap.name}: --segment labels {unknown} do not occur (labels: {labels})")
    descriptions = []
    for number, label in enumerate(labels, start=1):
        info = infos.get(label, SegmentInfo(label))
        color = hd.color.CIELabColor.from_rgb(*info.color) if info.color is not None else None
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=info.name or f"Segment {label}",
            segmented_property_category=Code(*info.category), segmented_property_type=Code(*info.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL, display_color=color))

    slices = voxels.shape[0]
    geometry = slice_geometry(labelmap.ijk_to_ras, slices, f"labelmap {labelmap.name}")
    pixel_array = np.stack([voxels == label for label in labels], axis=-1).astype(np.uint8)  # (k, j, i, segments)
    coordinate = hd.CoordinateSystemNames.PATIENT
    plane_positions = [hd.PlanePositionSequence(coordinate, position) for position in geometry.positions]
    orientation = hd.PlaneOrientationSequence(coordinate, geometry.orientation)
    measures = hd.PixelMeasuresSequence(pixel_spacing=geometry.pixel_spacing,
                                        slice_thickness=geometry.slice_thickness)
    series_uid = generate_uid()
    number = series_number if series_number is not None else study.next_series_number()
    try:
        seg = hd.seg.Segmentation(
            source_images=source_images, pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=series_uid, series_number=number, sop_instance_uid=generate_uid(),
            instance_number=1, manufacturer="DICOMBrowser", manufacturer_model_name="DICOMBrowser",
            software_versions=_version(), device_serial_number="0", plane_positions=plane_positions,
            plane_orientation=orientation, pixel_measures=measures,
            series_description=(series_description or labelmap.name)[:64], omit_empty_frames=True)
    except (ValueError, TypeError) as error:
        raise ExportError(f"labelmap {labelmap.name} -> SEG for series {reference_uid}: {error}") from error
    result = ExportResult(study.study_uid, series_uid, SEGMENTATION_STORAGE, str(seg.FrameOfReferenceUID), True,
                          datasets=[seg])
    result.notes.append(f"{len(labels)} segment(s) referencing series {reference_uid}")
    return result


def _default_reference(study: StudyContext) -> str:
    """The study's only series, else ExportError asking for --reference."""
    if len(study.series_files) == 1:
        return next(iter(study.series_files))
    raise ExportError(f"study {study.study_uid} has {len(study.series_files)} series; name the one the "
                      "segmentation was drawn on with --reference SERIES_UID")


def export_segmentation(database: Any, labelmap: VolumeSource, study_uid: str, reference_series_uid: str | None,
                        segments: list[SegmentInfo] | None = None, series_description: str = "",
                        output_dir: Any = None, to_database: bool = False, send: Any = None,
                        deidentify: Any = None) -> ExportResult:
    """Build the SEG, then write/import/send it like a volume export."""
    from .destinations import deliver
    from .study import study_context

    study = study_context(database, study_uid)
    result = build_segmentation(labelmap, study, reference_series_uid, segments, series_description)
    return deliver(database, result, output_dir=output_dir, to_database=to_database, send=send,
                   deidentify=deidentify, prefix="SEG_")
