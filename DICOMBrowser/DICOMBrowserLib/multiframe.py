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

import struct

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
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


#: keyword -> tag of what frame_geometries reads (tags: no keyword lookup per frame and element)
_TAG = {keyword: tag_for_keyword(keyword) for keyword in (
    "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence", "FrameContentSequence",
    "MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "PETFrameTypeSequence", "MREchoSequence",
    "PixelValueTransformationSequence", "FrameVOILUTSequence", "MRDiffusionSequence",
    "CardiacSynchronizationSequence", "FrameType", "EffectiveEchoTime", "TemporalPositionIndex", "StackID",
    "InStackPositionNumber", "DiffusionBValue", "NominalCardiacTriggerDelayTime", "RescaleSlope",
    "RescaleIntercept", "WindowCenter", "WindowWidth", "EchoNumbers", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness")}
#: binary number VRs read straight from a raw element: struct code of one value
_BINARY = {"FD": "d", "FL": "f", "UL": "L", "US": "H", "SL": "l", "SS": "h"}
_DECIMAL = frozenset("0123456789+-.eE")


def _raw_parts(item: Dataset, tag: int) -> list | None:
    """The values of a not yet converted DS, IS or binary-number element of `item`, straight from
    its bytes (DS/IS as their text, the rest as numbers); None when pydicom is to convert it:
    absent or converted already, implicit VR, big endian, another VR, or text that is not
    plainly a number.

    Why: pydicom converts an element in ~20 µs (hooks, validation, DSfloat objects); a Siemens
    XA fMRI file has ~20 such per frame, so frame_geometries spent ~0.5 ms a frame. The values
    are the same as pydicom's (Testing/test_fastheader.py compares frame_geometries with
    $DICOMBROWSER_FAST_HEADER on and off, the switch for this too)."""
    element = item.get_item(tag) if tag in item else None
    if type(element) is not RawDataElement or element.is_implicit_VR or not element.is_little_endian:
        return None
    data, vr = element.value, element.VR
    if data is None:
        return None
    code = _BINARY.get(vr)
    if code is not None:
        size = struct.calcsize("<" + code)
        if not data or len(data) % size:
            return None
        return list(struct.unpack(f"<{len(data) // size}{code}", data))
    if vr not in ("DS", "IS") or not data:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    if text[-1] == " ":
        text = text[:-1]  # the padding byte of an odd length
    parts = text.split("\\")
    for part in parts:
        if not part or not _DECIMAL.issuperset(part):
            return None
    return parts


def _value_text(item: Dataset | None, tag: int, fast: bool = True) -> str:
    """`item`'s value of `tag` as text ('' when absent), as _text gives pydicom's value; `fast`:
    from the raw bytes where _raw_parts can, else always pydicom's conversion."""
    if item is None:
        return ""
    parts = _raw_parts(item, tag) if fast else None
    if parts is not None:
        return "\\".join(str(part) for part in parts)
    return _text(item[tag].value) if tag in item else ""


def _value_numbers(item: Dataset | None, tag: int, count: int, fast: bool = True) -> tuple[float, ...] | None:
    """The first `count` numbers of `item`'s `tag` (None when absent or fewer), as _numbers."""
    if item is None:
        return None
    parts = _raw_parts(item, tag) if fast else None
    if parts is not None:
        return tuple(float(part) for part in parts[:count]) if len(parts) >= count else None
    value = item[tag].value if tag in item else None
    return _numbers(value, count) if value not in (None, "") else None


def _first_item(groups: list[Dataset], tag: int) -> Dataset | None:
    """The first item of functional group `tag`, looked up per-frame first, then shared."""
    for group in groups:
        if group is None or tag not in group:
            continue
        sequence = group[tag].value
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
    fast = fast_header_enabled()
    tag = _TAG

    def text(item: Dataset | None, keyword: str) -> str:
        return _value_text(item, tag[keyword], fast)

    def numbers(item: Dataset | None, keyword: str, count: int) -> tuple[float, ...] | None:
        return _value_numbers(item, tag[keyword], count, fast)

    records = []
    for index in range(min(count, len(per_frame))):
        groups = [per_frame[index], shared]
        plane_position = _first_item(groups, tag["PlanePositionSequence"])
        plane_orientation = _first_item(groups, tag["PlaneOrientationSequence"])
        measures = _first_item(groups, tag["PixelMeasuresSequence"])
        content = _first_item(groups, tag["FrameContentSequence"])
        frame_type = (_first_item(groups, tag["MRImageFrameTypeSequence"])
                      or _first_item(groups, tag["CTImageFrameTypeSequence"])
                      or _first_item(groups, tag["PETFrameTypeSequence"]))
        echo = _first_item(groups, tag["MREchoSequence"])
        transform = _first_item(groups, tag["PixelValueTransformationSequence"])
        voi = _first_item(groups, tag["FrameVOILUTSequence"])
        diffusion = _first_item(groups, tag["MRDiffusionSequence"])
        cardiac = _first_item(groups, tag["CardiacSynchronizationSequence"])
        philips = _private_item(groups, PHILIPS_PRIVATE_FRAME_GROUP)
        attributes = {
            "frame": str(index + 1),
            FRAME_TYPE: text(frame_type, "FrameType"),
            ECHO_TIME: text(echo, "EffectiveEchoTime"),
            TEMPORAL_POSITION: text(content, "TemporalPositionIndex"),
            STACK_ID: text(content, "StackID"),
            IN_STACK_POSITION: text(content, "InStackPositionNumber"),
            B_VALUE: text(diffusion, "DiffusionBValue"),
            TRIGGER_TIME: text(cardiac, "NominalCardiacTriggerDelayTime"),
            RESCALE_SLOPE: text(transform if transform is not None else dataset, "RescaleSlope"),
            RESCALE_INTERCEPT: text(transform if transform is not None else dataset, "RescaleIntercept"),
            WINDOW_CENTER: text(voi, "WindowCenter"),
            WINDOW_WIDTH: text(voi, "WindowWidth"),
            ECHO_NUMBER: text(philips, "EchoNumbers"),
            PHILIPS_SCALE_SLOPE: _private_text(philips, 0x2005100E) if philips is not None else "",
        }
        thickness = numbers(measures, "SliceThickness", 1)
        records.append(FrameGeometry(
            path=str(path), frame=index,
            position=numbers(plane_position, "ImagePositionPatient", 3),
            orientation=numbers(plane_orientation, "ImageOrientationPatient", 6),
            pixel_spacing=numbers(measures, "PixelSpacing", 2),
            rows=rows, columns=columns,
            slice_thickness=thickness[0] if thickness else None,
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
