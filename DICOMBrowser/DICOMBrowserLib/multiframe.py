"""Multi-frame files (enhanced CT/MR/PET, legacy multi-frame) -> per-frame geometry records.

Enhanced objects keep each frame's position, orientation, spacing, frame type, echo time,
temporal position and rescale in functional group sequences (PS3.3 C.7.6.16), which the tag
cache does not hold (sequences are not cached as strings). So this module reads the header of
the file (never its pixel data) and returns `geometry.FrameGeometry` records whose
``attributes`` carry the per-frame grouping keys and rescale. Frames are LPS millimetres like
every DICOM position.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from DICOMBrowser.DICOMBrowserLib import fastheader
from DICOMBrowser.DICOMBrowserLib.errors import DICOMFileError
from DICOMBrowser.DICOMBrowserLib.geometry import FrameGeometry

logger = logging.getLogger(__name__)

#: per-frame attribute keys put in FrameGeometry.attributes (strings, '' when absent)
FRAME_TYPE = "frame_type"
ECHO_TIME = "echo_time"
TEMPORAL_POSITION = "temporal_position"
STACK_ID = "stack_id"
IN_STACK_POSITION = "in_stack_position"
B_VALUE = "b_value"
RESCALE_SLOPE = "rescale_slope"
RESCALE_INTERCEPT = "rescale_intercept"
WINDOW_CENTER = "window_center"
WINDOW_WIDTH = "window_width"
TRIGGER_TIME = "trigger_time"
ECHO_NUMBER = "echo_number"
#: Philips' private scale slope (2005,100E): with RescaleSlope/Intercept it gives the precise
#: floating-point value dcm2niix writes by default (see pixelreader.philips_precise_scaling)
PHILIPS_SCALE_SLOPE = "philips_scale_slope"
#: Philips' private per-frame functional group, which holds EchoNumbers and the scale slope
PHILIPS_PRIVATE_FRAME_GROUP = (0x2005, 0x140F)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _first_item(groups: list[Dataset], keyword: str) -> Dataset | None:
    """The first item of functional group `keyword`, looked up per-frame first, then shared."""
    for group in groups:
        if group is None:
            continue
        sequence = group.get(keyword)
        if sequence:
            return sequence[0]
    return None


def _private_item(groups: list[Dataset], tag: tuple[int, int]) -> Dataset | None:
    """The first item of a private sequence `tag`, per-frame group first, then shared."""
    for group in groups:
        if group is None or tag not in group:
            continue
        sequence = group[tag].value
        if isinstance(sequence, (list, tuple, pydicom.sequence.Sequence)) and len(sequence):
            return sequence[0]
    return None


def _private_text(item: Dataset, tag: int) -> str:
    """A private element's value as text; '' when absent or undecodable (e.g. an implicit VR UN)."""
    if tag not in item:
        return ""
    value = item[tag].value
    if isinstance(value, bytes):
        if len(value) == 4:  # FL read as UN (implicit VR without a private dictionary entry)
            import struct

            return repr(struct.unpack("<f", value)[0])
        return ""
    return _text(value)


def _numbers(value: Any, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = [float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])]
    return tuple(values[:count]) if len(values) >= count else None


def fast_header_enabled() -> bool:
    """Whether headers go through fastheader (the default) or plain pydicom
    ($DICOMBROWSER_FAST_HEADER=0); both give equal data sets, see docs/fastheader.md."""
    import os

    return os.environ.get("DICOMBROWSER_FAST_HEADER", "1").strip() != "0"


@functools.lru_cache(maxsize=256)
def _read_header(path: str, mtime_ns: int, fast: bool = True) -> Dataset:
    try:
        if fast:
            return fastheader.read_header(path)
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (OSError, pydicom.errors.InvalidDicomError, ValueError, EOFError) as error:
        raise DICOMFileError(path, f"cannot read multi-frame header: {error}") from error


def read_header(path: str) -> Dataset:
    """The file's header without pixel data (cached per path, modification time and reader)."""
    import os

    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as error:
        raise DICOMFileError(path, f"cannot stat: {error}") from error
    return _read_header(str(path), mtime, fast_header_enabled())


def number_of_frames(dataset: Dataset) -> int:
    try:
        return int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def is_enhanced(dataset: Dataset) -> bool:
    """True when the object carries per-frame functional groups."""
    return "PerFrameFunctionalGroupsSequence" in dataset


def frame_geometries(path: str, dataset: Dataset | None = None) -> list[FrameGeometry]:
    """One FrameGeometry per frame of a multi-frame file (LPS mm), in stored frame order.

    Enhanced objects: from the per-frame and shared functional groups. Legacy multi-frame
    (e.g. RT dose, NM): the top-level position shifted along the normal by
    GridFrameOffsetVector when present, else the same position for every frame.
    """
    dataset = read_header(path) if dataset is None else dataset
    count = number_of_frames(dataset)
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    if not is_enhanced(dataset):
        return _legacy_frames(str(path), dataset, count, rows, columns)

    per_frame = dataset.PerFrameFunctionalGroupsSequence
    shared_sequence = dataset.get("SharedFunctionalGroupsSequence")
    shared = shared_sequence[0] if shared_sequence else None
    if len(per_frame) != count:
        logger.warning("%s: NumberOfFrames %d but %d per-frame functional groups", path, count, len(per_frame))
    records = []
    for index in range(min(count, len(per_frame))):
        groups = [per_frame[index], shared]
        plane_position = _first_item(groups, "PlanePositionSequence")
        plane_orientation = _first_item(groups, "PlaneOrientationSequence")
        measures = _first_item(groups, "PixelMeasuresSequence")
        content = _first_item(groups, "FrameContentSequence")
        frame_type = (_first_item(groups, "MRImageFrameTypeSequence") or _first_item(groups, "CTImageFrameTypeSequence")
                      or _first_item(groups, "PETFrameTypeSequence"))
        echo = _first_item(groups, "MREchoSequence")
        transform = _first_item(groups, "PixelValueTransformationSequence")
        voi = _first_item(groups, "FrameVOILUTSequence")
        diffusion = _first_item(groups, "MRDiffusionSequence")
        cardiac = _first_item(groups, "CardiacSynchronizationSequence")
        philips = _private_item(groups, PHILIPS_PRIVATE_FRAME_GROUP)
        attributes = {
            "frame": str(index + 1),
            FRAME_TYPE: _text(frame_type.get("FrameType")) if frame_type else "",
            ECHO_TIME: _text(echo.get("EffectiveEchoTime")) if echo else "",
            TEMPORAL_POSITION: _text(content.get("TemporalPositionIndex")) if content else "",
            STACK_ID: _text(content.get("StackID")) if content else "",
            IN_STACK_POSITION: _text(content.get("InStackPositionNumber")) if content else "",
            B_VALUE: _text(diffusion.get("DiffusionBValue")) if diffusion else "",
            TRIGGER_TIME: _text(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac else "",
            RESCALE_SLOPE: _text(transform.get("RescaleSlope")) if transform else _text(dataset.get("RescaleSlope")),
            RESCALE_INTERCEPT: (_text(transform.get("RescaleIntercept")) if transform
                                else _text(dataset.get("RescaleIntercept"))),
            WINDOW_CENTER: _text(voi.get("WindowCenter")) if voi else "",
            WINDOW_WIDTH: _text(voi.get("WindowWidth")) if voi else "",
            ECHO_NUMBER: _text(philips.get("EchoNumbers")) if philips is not None else "",
            PHILIPS_SCALE_SLOPE: _private_text(philips, 0x2005100E) if philips is not None else "",
        }
        thickness = measures.get("SliceThickness") if measures else None
        records.append(FrameGeometry(
            path=str(path), frame=index,
            position=_numbers(plane_position.get("ImagePositionPatient"), 3) if plane_position else None,
            orientation=_numbers(plane_orientation.get("ImageOrientationPatient"), 6) if plane_orientation else None,
            pixel_spacing=_numbers(measures.get("PixelSpacing"), 2) if measures else None,
            rows=rows, columns=columns,
            slice_thickness=float(thickness) if thickness not in (None, "") else None,
            instance_number=index + 1,
            attributes=attributes,
        ))
    return records


def _legacy_frames(path: str, dataset: Dataset, count: int, rows: int, columns: int) -> list[FrameGeometry]:
    import numpy as np

    from DICOMBrowser.DICOMBrowserLib.geometry import slice_normal

    position = _numbers(dataset.get("ImagePositionPatient"), 3)
    orientation = _numbers(dataset.get("ImageOrientationPatient"), 6)
    spacing = _numbers(dataset.get("PixelSpacing"), 2)
    offsets = _numbers(dataset.get("GridFrameOffsetVector"), count) if "GridFrameOffsetVector" in dataset else None
    thickness = dataset.get("SliceThickness")
    records = []
    for index in range(count):
        frame_position = position
        if position is not None and orientation is not None and offsets is not None:
            frame_position = tuple(float(v) for v in np.asarray(position) + offsets[index] * slice_normal(orientation))
        records.append(FrameGeometry(
            path=path, frame=index, position=frame_position, orientation=orientation, pixel_spacing=spacing,
            rows=rows, columns=columns,
            slice_thickness=float(thickness) if thickness not in (None, "") else None,
            instance_number=index + 1,
            attributes={"frame": str(index + 1),
                        RESCALE_SLOPE: _text(dataset.get("RescaleSlope")),
                        RESCALE_INTERCEPT: _text(dataset.get("RescaleIntercept"))},
        ))
    return records
