"""A volume series as one enhanced multi-frame object (`export --enhanced`), by highdicom's
legacy converters.

The per-slice CT/MR data sets that `volume.build_volume_series` makes (patient, study, frame of
reference and series attributes as the per-slice export has them) are handed, in memory, to
`highdicom.legacy.LegacyConvertedEnhancedCTImage` / `...MRImage`, which writes the shared and
per-frame functional groups (PS3.3 A.70-A.72). We use the converter rather than building
Enhanced CT/MR Image objects ourselves because the true Enhanced IODs demand acquisition
attributes (CT Acquisition Type, MR Timing and Related Parameters, ...) that a derived volume
does not know; the legacy converted IODs are made for exactly this: images whose acquisition
details are those of single-frame objects.

What we change after the conversion, and why:
- the references to the per-slice objects (Conversion Source Attributes per frame, Common
  Instance Reference) are removed: those objects exist only in memory and are never stored, so
  the references would point at nothing (dciodvfy accepts the object without them);
- Laterality is put back at the top level (General Series, type 2C), where the converter's
  "unassigned shared" group hides it;
- Frame Type / Image Type say DERIVED\\PRIMARY\\VOLUME\\NONE: in the enhanced IODs value 2 is
  "patient examination characteristics", whose only value is PRIMARY, and the per-slice AXIAL
  (CT) or OTHER (MR) are not terms of their value 3, VOLUME is;
- SeriesDescription is the export's, not the converter's "... (enhanced conversion)";
- a 4D sequence: TemporalPositionIndex (1..T) in each frame's Frame Content, and the dimension
  index is (temporal position, in-stack position) instead of the converter's instance number, so
  a reader can split the frames into time points without guessing.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..errors import ExportError

if TYPE_CHECKING:
    from .volume import ExportResult

logger = logging.getLogger(__name__)

#: modality -> highdicom's converter class name (OT: Secondary Capture has no enhanced form)
CONVERTERS = {"CT": "LegacyConvertedEnhancedCTImage", "MR": "LegacyConvertedEnhancedMRImage"}
#: Frame Type / Image Type of an exported volume: derived, not acquired; value 2 is enumerated
#: PRIMARY in the enhanced IODs (C.8.16.1.2), value 3 VOLUME (one volume)
FRAME_TYPE = ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
_FRAME_TYPE_SEQUENCES = ("CTImageFrameTypeSequence", "MRImageFrameTypeSequence")
#: attributes the converter leaves in the "unassigned" groups that belong at the top level
_TOP_LEVEL = ("Laterality",)


def convert_to_enhanced(result: ExportResult, modality: str, description: str, label: str) -> ExportResult:
    """`result` (an ExportResult holding one data set per slice and time point) with its data
    sets replaced by one Legacy Converted Enhanced CT/MR Image object; ExportError names `label`
    when the converter refuses the slices."""
    from highdicom import legacy

    modality = modality.upper()
    if modality not in CONVERTERS:
        raise ExportError(f"{label}: --enhanced writes CT or MR (Legacy Converted Enhanced CT/MR Image); "
                          f"{modality} has no enhanced multi-frame form here")
    slices = result.datasets
    if not slices:
        raise ExportError(f"{label}: nothing to convert to one enhanced object")
    four_d = "TemporalPositionIdentifier" in slices[0]
    times = int(slices[0].NumberOfTemporalPositions) if four_d else 1
    per_volume = len(slices) // times
    # build_volume_series numbers the objects time point by time point, slice k of the volume
    # within each: instance n is (time (n-1)//K + 1, slice (n-1)%K + 1)
    where: dict[str, tuple[int, int]] = {}  # per-slice SOP Instance UID -> (temporal position, slice), 1-based
    for ds in slices:
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the converter keeps the source's syntax
        ds.file_meta = meta
        if "AcquisitionNumber" in ds and ds.AcquisitionNumber in ("", None):
            del ds.AcquisitionNumber  # empty here; the converter would write an invalid FrameAcquisitionNumber
        instance = int(ds.InstanceNumber) - 1
        where[str(ds.SOPInstanceUID)] = (instance // per_volume + 1, instance % per_volume + 1)
        if four_d:
            ds.TemporalPositionIndex = where[str(ds.SOPInstanceUID)][0]  # the converter copies it into Frame Content

    converter = getattr(legacy, CONVERTERS[modality])
    first = slices[0]
    try:
        enhanced = converter(slices, result.series_uid, int(first.SeriesNumber), generate_uid(), 1)
    except (ValueError, AttributeError, RuntimeError) as error:
        raise ExportError(f"{label}: highdicom's {CONVERTERS[modality]} refused the slices: {error}") from error

    frames = enhanced.PerFrameFunctionalGroupsSequence
    frame_places = []
    for frame in frames:
        source_uid = str(frame.ConversionSourceAttributesSequence[0].ReferencedSOPInstanceUID)
        frame_places.append(where[source_uid])
        del frame.ConversionSourceAttributesSequence
    for keyword in ("ReferencedSeriesSequence", "StudiesContainingOtherReferencedInstancesSequence"):
        if keyword in enhanced:
            delattr(enhanced, keyword)
    _lift_to_top_level(enhanced, first)
    _set_frame_type(enhanced)
    enhanced.SeriesDescription = description[:64]
    if four_d:
        _temporal_dimensions(enhanced, frame_places)

    result.datasets = [enhanced]
    result.sop_class_uid = str(enhanced.SOPClassUID)
    result.notes.append(f"one Legacy Converted Enhanced {modality} Image object, {len(frames)} frames"
                        + (f" in {times} temporal positions" if four_d else ""))
    return result


def _lift_to_top_level(enhanced: Dataset, first: Dataset) -> None:
    """General Series attributes the converter filed as "unassigned" go back to the top level."""
    shared = enhanced.SharedFunctionalGroupsSequence[0]
    unassigned = shared.get("UnassignedSharedConvertedAttributesSequence")
    for keyword in _TOP_LEVEL:
        if keyword in first:
            enhanced[keyword] = first[keyword]
            if unassigned and keyword in unassigned[0]:
                delattr(unassigned[0], keyword)


def _set_frame_type(enhanced: Dataset) -> None:
    groups = [enhanced.SharedFunctionalGroupsSequence[0], *enhanced.PerFrameFunctionalGroupsSequence]
    for group in groups:
        for keyword in _FRAME_TYPE_SEQUENCES:
            if keyword in group:
                group[keyword].value[0].FrameType = list(FRAME_TYPE)
    enhanced.ImageType = list(FRAME_TYPE)


def _temporal_dimensions(enhanced: Dataset, frame_places: list[tuple[int, int]]) -> None:
    """Dimension index (TemporalPositionIndex, InStackPositionNumber), both in Frame Content."""
    organization = generate_uid()
    dimensions = []
    for pointer, label in ((0x00209128, "Temporal Position Index"), (0x00209057, "In-Stack Position Number")):
        item = Dataset()
        item.DimensionOrganizationUID = organization
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
        item.DimensionDescriptionLabel = label
        dimensions.append(item)
    enhanced.DimensionIndexSequence = dimensions
    organization_item = Dataset()
    organization_item.DimensionOrganizationUID = organization
    enhanced.DimensionOrganizationSequence = [organization_item]
    enhanced.DimensionOrganizationType = "3D_TEMPORAL"
    for frame, (time, slice_number) in zip(enhanced.PerFrameFunctionalGroupsSequence, frame_places):
        content = frame.FrameContentSequence[0]
        content.TemporalPositionIndex = time
        content.StackID = "1"
        content.InStackPositionNumber = slice_number
        content.DimensionIndexValues = [time, slice_number]
