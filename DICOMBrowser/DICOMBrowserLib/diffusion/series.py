"""A DWI series from its files: frames found, derived images dropped, volumes grouped by gradient
and ordered, geometry computed, pixels read. Nothing here imports Qt or VTK.

Grouping rule: frames are bucketed by slice location (distance along the slice normal); within a
location they are put in acquisition order (Philips 2005,1596 or 2005,1412/1413, else the frame
order of an enhanced file, else InstanceNumber), and the m-th frame of every location forms
volume m. Each volume must then have one b-value and one direction; when not, or when locations
have different frame counts (missing slices), a warning says so.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import struct
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword

from ..errors import DICOMFileError, LoadError
from ..pixelreader import philips_precise_scaling
from . import mosaic, vendors
from .gradients import LPS_TO_RAS

logger = logging.getLogger(__name__)


@dataclass
class FrameRecord:
    """One 2D frame (or one whole mosaic) with where it is and how it was diffusion-encoded."""

    file_index: int
    frame_index: int  # 0 for single-frame files
    position_lps: np.ndarray
    row_direction: np.ndarray  # IOP[:3], direction of increasing column index
    column_direction: np.ndarray  # IOP[3:], direction of increasing row index
    pixel_spacing: tuple[float, float]  # (between rows, between columns), as DICOM orders it
    slice_spacing: float
    diffusion: vendors.FrameDiffusion
    temporal_key: tuple
    slope: float = 1.0
    intercept: float = 0.0
    mosaic_layout: mosaic.MosaicLayout | None = None


@dataclass
class DWIPlan:
    """What reading would produce, from headers only (examine uses this; load reads pixels)."""

    files: list[str]
    volumes: list[list[FrameRecord]]  # volume -> its frames in slice order (one record for a mosaic)
    bvalues: np.ndarray
    gradients_lps: np.ndarray
    ijk_to_lps: np.ndarray
    shape_kji: tuple[int, int, int]
    warnings: list[str] = field(default_factory=list)
    vendor: str = ""
    series_uid: str = ""
    series_description: str = ""
    series_number: str = ""
    derived_excluded: int = 0
    identity: dict[str, str] = field(default_factory=dict)  # DICOM keyword -> value of the first image
    instance_uids: dict[int, str] = field(default_factory=dict)  # file index -> SOPInstanceUID
    #: path -> (transfer syntax, pixel data offset, length, scanned values), from the plan's header
    #: scan (empty when the values came from a database, which records these itself)
    pixel_locations: dict[str, tuple] = field(default_factory=dict, repr=False)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        matrix = self.ijk_to_lps.copy()
        matrix[:3, :] = LPS_TO_RAS @ matrix[:3, :]
        return matrix

    @property
    def name(self) -> str:
        parts = [p for p in (self.series_number, self.series_description) if p]
        return ": ".join(parts) or self.series_uid or "DWI"


@dataclass
class DWISeries:
    """A loaded DWI series: voxels (volumes, k, j, i), geometry in RAS, gradients in LPS."""

    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    bvalues: np.ndarray
    gradients_lps: np.ndarray
    warnings: list[str]
    files: list[str]
    name: str = "DWI"
    series_uid: str = ""
    vendor: str = ""
    identity: dict[str, str] = field(default_factory=dict)
    instance_uids: list[str] = field(default_factory=list)
    #: (slope, intercept) still to apply to `voxels`: set only by read_dwi(stored=True) when every
    #: frame shares one scaling (a NIfTI writer puts it in scl_slope/scl_inter, as dcm2niix does)
    rescale: tuple[float, float] | None = None


#: tags (and their VRs) read for every file, from the tag cache (database) or the fast header scan:
#: everything GE, Philips and standard-tag classic images need, plus the pixel module for reading
#: voxels straight from the recorded pixel data offsets. The plugin declares all of them, so the
#: indexer caches them at import and examining with a database opens no file.
SCAN_TAGS: dict[str, str] = {
    "0008,0008": "CS", "0008,0016": "UI", "0008,0060": "CS", "0008,0070": "LO", "0008,103e": "LO",
    "0018,0050": "DS", "0018,0088": "DS", "0018,1312": "CS", "0018,9075": "CS", "0018,9087": "FD",
    "0018,9089": "FD", "0020,000e": "UI", "0020,0011": "IS", "0020,0013": "IS", "0020,0032": "DS",
    "0020,0037": "DS", "0028,0008": "IS", "0028,0010": "US", "0028,0011": "US", "0028,0030": "DS",
    "0028,1052": "DS", "0028,1053": "DS",
    "0043,1039": "IS", "0019,10bb": "DS", "0019,10bc": "DS", "0019,10bd": "DS",
    "2001,1003": "FL", "2001,1004": "CS", "2005,10b0": "FL", "2005,10b1": "FL", "2005,10b2": "FL",
    "2005,1412": "IS", "2005,1413": "IS", "2005,1596": "IS", "2005,100e": "FL",
    "0065,0010": "LO", "0065,1009": "FD", "0065,100a": "FD", "0065,1037": "FD", "0065,1050": "DS",
    # identity, for node attributes and the subject hierarchy
    "0008,0018": "UI", "0010,0010": "PN", "0010,0020": "LO", "0010,0030": "DA", "0010,0040": "CS",
    "0020,000d": "UI", "0008,1030": "LO", "0008,0020": "DA", "0008,0030": "TM", "0020,0010": "SH",
    "0020,0052": "UI", "0018,5100": "CS",
    # pixel module (pixelreader), values not interpreted here
    "0028,0002": "US", "0028,0006": "US", "0028,0100": "US", "0028,0101": "US", "0028,0103": "US",
}
#: names of the private tags of SCAN_TAGS (standard ones are named by their DICOM keyword)
PRIVATE_TAG_NAMES = {
    "0043,1039": "GEDiffusionBValue", "0019,10bb": "GEDiffusionGradientX", "0019,10bc": "GEDiffusionGradientY",
    "0019,10bd": "GEDiffusionGradientZ", "2001,1003": "PhilipsDiffusionBValue",
    "2001,1004": "PhilipsDiffusionDirection", "2005,10b0": "PhilipsDiffusionGradientRL",
    "2005,10b1": "PhilipsDiffusionGradientAP", "2005,10b2": "PhilipsDiffusionGradientFH",
    "2005,1412": "PhilipsDiffusionBValueNumber", "2005,1413": "PhilipsGradientOrientationNumber",
    "2005,1596": "PhilipsAcquisitionOrderNumber", "0065,0010": "UIHImagePrivateHeaderCreator",
    "0065,1009": "UIHDiffusionBValue", "0065,100a": "UIHUserBValue", "0065,1037": "UIHDiffusionGradient",
    "0065,1050": "UIHSlicesInGrid",
}
#: DICOM keywords copied into `DWIPlan.identity` (scene.IDENTITY_KEYS without PatientComments)
IDENTITY_KEYWORDS = ("PatientName", "PatientID", "PatientSex", "PatientBirthDate", "StudyInstanceUID",
                     "StudyDescription", "StudyDate", "StudyTime", "StudyID", "SeriesInstanceUID",
                     "SeriesNumber", "SeriesDescription", "Modality", "FrameOfReferenceUID")
_ENHANCED_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"}
#: what a partial pydicom read fetches when the scanned strings cannot hold it
#: standard diffusion macro inside sequences (Canon/Toshiba, Hitachi, UIH, some classic objects)
_SEQUENCE_TAGS = (0x00189117, 0x52009229, 0x00189076)
#: Siemens: CSA image/series headers (0029,xx10/xx20 of the private blocks 0x10-0x1f, where
#: Siemens puts "SIEMENS CSA HEADER") and (0019,100a/c/e). pydicom converts every listed tag on
#: each call, so the list stays short.
_SIEMENS_TAGS = tuple(pydicom.tag.Tag(t) for t in (
    *_SEQUENCE_TAGS,
    *(0x00290000 | block for block in range(0x10, 0x20)),
    *(0x00290000 | (block << 8) | element for block in range(0x10, 0x20) for element in (0x10, 0x20)),
    *(0x00190000 | block for block in range(0x10, 0x20)), 0x0019100A, 0x0019100C, 0x0019100E))
#: UIH grid images: the per-slice positions (0065,1051), a sequence
_UIH_GRID_TAGS = (0x00651051,)
_FULL = None  # marker: the whole header is needed (enhanced multi-frame functional groups)
_KEYWORD_TAGS: dict[str, int | None] = {}


class _Element:
    """What `Dataset.get(tag)` gives: an object with a `.value`."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _tag_of(key: Any) -> int | None:
    if isinstance(key, int):
        return key
    if isinstance(key, tuple):
        return (key[0] << 16) | key[1]
    tag = _KEYWORD_TAGS.get(key, -1)
    if tag == -1:
        tag = tag_for_keyword(key)
        _KEYWORD_TAGS[key] = tag
    return tag


_PARSED: dict[tuple[str, str], tuple[int, Any]] = {}
_SCAN_KEYS = {tag: (int(tag[:4], 16) << 16) | int(tag[5:], 16) for tag in SCAN_TAGS}


def _parse_scanned(tag: str, text: str) -> tuple[int, Any] | None:
    """(int tag, value as pydicom would give it: numbers for binary VRs, strings else), None when
    the tag is not one of SCAN_TAGS."""
    vr = SCAN_TAGS.get(tag)
    if vr is None:
        return None
    parts = text.split("\\")
    if vr in ("FL", "FD"):
        value: tuple = tuple(float(p) for p in parts)
    elif vr == "US":
        value = tuple(int(p) for p in parts)
    else:
        value = tuple(parts)
    key = _SCAN_KEYS[tag]
    return key, value if len(value) > 1 or key == 0x00080008 else value[0]  # ImageType: always a sequence


class ScanHeader:
    """The cached or scanned values of one file, answering the few `pydicom.Dataset` calls the
    vendor readers make (`get` by keyword or tag, `in`, `[tag].value`, `.Keyword`), so one code
    path serves both; `extra` is a partial pydicom read for what strings cannot hold (sequences,
    CSA bytes), consulted for anything the scan did not give."""

    __slots__ = ("values", "extra")

    def __init__(self, values: dict[int, Any], extra: pydicom.Dataset | None = None):
        self.values = values
        self.extra = extra

    @classmethod
    def from_strings(cls, strings: dict[str, str]) -> "ScanHeader":
        """From "gggg,eeee" -> format_value strings; raises ValueError for numbers that do not parse.
        Multi-values become tuples (ImageType always); conversions are memoised, as most values
        repeat from file to file of a series."""
        values: dict[int, Any] = {}
        memo = _PARSED
        for tag, text in strings.items():
            if not text:
                continue
            key = (tag, text)
            parsed = memo.get(key)
            if parsed is None:
                parsed = _parse_scanned(tag, text)
                if parsed is None:
                    continue  # not a tag of the plan
                if len(memo) >= 100_000:
                    memo.clear()
                memo[key] = parsed
            values[parsed[0]] = parsed[1]
        return cls(values)

    def get(self, key: Any, default: Any = None) -> Any:
        tag = _tag_of(key)
        if tag in self.values:
            value = self.values[tag]
            return value if isinstance(key, str) else _Element(value)
        if self.extra is not None:
            return self.extra.get(key, default)
        return default

    def __contains__(self, key: Any) -> bool:
        return _tag_of(key) in self.values or (self.extra is not None and key in self.extra)

    def __getitem__(self, key: Any) -> Any:
        tag = _tag_of(key)
        if tag in self.values:
            return _Element(self.values[tag])
        if self.extra is not None:
            return self.extra[key]
        raise KeyError(key)

    def __getattr__(self, name: str) -> Any:
        if name[:1].isupper():
            tag = _tag_of(name)
            if tag is not None and tag in self.values:
                return self.values[tag]
            if self.extra is not None and name in self.extra:
                return getattr(self.extra, name)
        raise AttributeError(name)


def _more_tags(header: ScanHeader) -> tuple | None:
    """What the scanned strings may miss for this file: () nothing, a tag tuple for a partial
    read, or _FULL (None) for the whole header."""
    if "Rows" not in header:
        return ()  # not an image (presentation state, raw data): nothing to look for
    if str(header.get("SOPClassUID", "")) in _ENHANCED_SOP_CLASSES or _number(header, "NumberOfFrames", 1) > 1:
        return _FULL
    image_type = [str(v).upper() for v in (header.get("ImageType") or [])]
    if vendors.manufacturer(header) == "Siemens" or "MOSAIC" in image_type:
        return _SIEMENS_TAGS
    if "VFRAME" in image_type:
        return _UIH_GRID_TAGS
    has_b = any(tag in header.values for tag in (0x00189087, 0x00431039, 0x20011003))
    if not has_b:
        return _SEQUENCE_TAGS  # maybe inside an MR Diffusion Sequence (Canon, Hitachi) or not diffusion at all
    if vendors.manufacturer(header) not in ("GE", "Philips") and 0x00189089 not in header.values:
        return _SEQUENCE_TAGS  # the direction may sit in 0018,9076
    return ()


def _headers(files: list[str], database: Any = None) -> tuple[list[Any], dict[str, tuple]]:
    """Headers of all files and, without a database, where each file's pixel data is.

    Values come from the database's tag cache (no file opened when the plugin's tags were cached at
    import), else from one fast header scan; a partial pydicom read adds only what strings cannot
    hold (CSA bytes, diffusion sequences), and enhanced multi-frame files get a full parse.
    """
    locations: dict[str, tuple] = {}
    rows: list[tuple[str, bool, str | None, dict[str, str]]] = []
    if database is not None:
        cached = database.file_values(files, list(SCAN_TAGS))
        rows = [(path, True, None, cached.get(path, {})) for path in files]
    else:
        from ..headerscan import scan_files

        for path, result in zip(files, scan_files(files, list(SCAN_TAGS), workers=1)):
            rows.append((path, result.is_dicom, result.error, result.values))
            if result.is_dicom and result.error is None:
                locations[path] = (result.transfer_syntax, result.pixel_data_offset, result.pixel_data_length,
                                   result.values)
    headers: list[Any] = []
    partial = 0
    for path, is_dicom, error, strings in rows:
        if not is_dicom:
            headers.append(None)
            continue
        header = None
        if error is None:
            try:
                header = ScanHeader.from_strings(strings)
            except (ValueError, TypeError) as problem:
                logger.debug("%s: scanned values unusable (%s); parsing fully", path, problem)
        more = _more_tags(header) if header is not None else _FULL
        if more is _FULL:
            headers.append(_read_header(path))
            continue
        if more:
            header.extra = _read_header(path, more)
            partial += 1
        headers.append(header)
    if partial:
        logger.debug("%d of %d file(s) needed a partial header read", partial, len(files))
    return headers, locations


def _read_header(path: str, tags: Sequence[int] | None = None) -> pydicom.Dataset | None:
    """A full header parse, or only `tags`.

    Kept per file (path, size, modification time) and tag set: one examination plans a mosaic or
    multi-frame series in both plugins and again to load it, and these parses are most of that
    time. The datasets are shared: callers only read them."""
    import os

    from .. import multiframe

    if not tags:  # the whole header: the one cache the scalar plugin's multi-frame reading uses too
        try:
            return multiframe.read_header(str(path))
        except DICOMFileError as error:
            logger.warning("Skipping %s: %s", path, error)
            return None
    try:
        stat = os.stat(path)
    except OSError as error:
        logger.warning("Skipping %s: %s", path, error)
        return None
    return _cached_header(str(path), stat.st_size, stat.st_mtime_ns, tuple(tags), multiframe.fast_header_enabled())


@functools.lru_cache(maxsize=1024)
def _cached_header(path: str, size: int, mtime_ns: int, tags: tuple[int, ...], fast: bool) -> pydicom.Dataset | None:
    """`tags` of the file (and its SpecificCharacterSet), as `dcmread(specific_tags=tags)` gives
    them. With the fast header (the default): taken from the file's whole header, which
    multiframe.read_header parses once (fastheader) and keeps for the sidecar writer and the
    multi-frame readers too: a Siemens mosaic's partial pydicom read took 1-3 ms, as it walks
    every element up to the pixel data anyway. $DICOMBROWSER_FAST_HEADER=0: pydicom's partial
    read (Testing/test_diffusion_plugin.py compares the two on the corpus's Siemens files)."""
    if fast:
        from .. import multiframe

        try:
            whole = multiframe.read_header(path)
        except DICOMFileError as error:
            logger.warning("Skipping %s: %s", path, error)
            return None
        subset = pydicom.Dataset()
        for tag in sorted({0x00080005, *tags}):  # private creators before their elements
            if tag in whole:
                subset[tag] = whole.get_item(tag)
        return subset
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(tags))
    except (OSError, pydicom.errors.InvalidDicomError, ValueError, EOFError) as error:
        logger.warning("Skipping %s: %s", path, error)
        return None


def has_diffusion_sequence(path: str) -> bool:
    """Whether a file holds an MR Diffusion Sequence (top level or shared functional groups), from a
    partial read of those sequences only: how examine tells a Canon/Hitachi/UIH DWI series from
    their other MR series without parsing every header."""
    ds = _read_header(path, _SEQUENCE_TAGS)
    if ds is None:
        return False
    if ds.get("MRDiffusionSequence"):
        return True
    return any(item.get("MRDiffusionSequence") for item in (ds.get("SharedFunctionalGroupsSequence") or []))


def cached_tag_names() -> dict[str, str]:
    """name -> "gggg,eeee" of every tag the plan reads (Slicer's orientation of a plugin's `tags`)."""
    from pydicom.datadict import keyword_for_tag

    names = {}
    for tag in SCAN_TAGS:
        name = PRIVATE_TAG_NAMES.get(tag) or keyword_for_tag((int(tag[:4], 16) << 16) | int(tag[5:], 16)) or tag
        names[name] = tag
    return names


class _ScanIndex:
    """The two database calls `pixelreader.read_frames` makes (file_values, instances), answered
    from the header scan the plan already did, so pixels are read at the recorded offsets without
    scanning every file a second time."""

    def __init__(self, locations: dict[str, tuple]):
        self.locations = locations

    def file_values(self, paths: Sequence[str], tags: Sequence[str]) -> dict[str, dict[str, str]]:
        return {path: {tag: self.locations[path][3].get(tag, "") for tag in tags} for path in paths}

    def instances(self, series_uid: str) -> list[dict[str, Any]]:
        return [{"FilePath": path, "TransferSyntaxUID": syntax, "PixelDataOffset": offset, "PixelDataLength": length}
                for path, (syntax, offset, length, values) in self.locations.items()
                if values.get("0020,000e", "") == series_uid]


def _number(ds: pydicom.Dataset, keyword: str, default: float = 0.0) -> float:
    try:
        value = ds.get(keyword)
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _slice_spacing(ds: pydicom.Dataset) -> float:
    spacing = _number(ds, "SpacingBetweenSlices", 0.0)
    return spacing if spacing > 0 else _number(ds, "SliceThickness", 1.0) or 1.0


def _classic_records(ds: pydicom.Dataset, path: str, file_index: int) -> list[FrameRecord]:
    orientation = vendors.float_array(ds.get("ImageOrientationPatient"))
    position = vendors.float_array(ds.get("ImagePositionPatient"))
    spacing = vendors.float_array(ds.get("PixelSpacing"))
    layout = None
    if orientation is not None and len(orientation) == 6 and spacing is not None:
        if mosaic.is_mosaic(ds) and vendors.manufacturer(ds) == "Siemens":
            layout = mosaic.layout(ds, path)
        elif mosaic.is_uih_grid(ds):
            layout = mosaic.uih_layout(ds, path)  # each tile's position is in the file, none at the top level
        if layout is not None:
            position = layout.first_position_lps
    if orientation is None or len(orientation) != 6 or position is None or spacing is None:
        raise DICOMFileError(path, "no image plane geometry (ImageOrientation/PositionPatient, PixelSpacing)")
    diffusion = vendors.file_diffusion(ds, path)
    temporal = (diffusion.order_key, _number(ds, "InstanceNumber"))
    slope, intercept = _modality_scaling(ds, ds, _number(ds, "RescaleSlope", 1.0) or 1.0,
                                         _number(ds, "RescaleIntercept", 0.0))
    return [FrameRecord(file_index, 0, position, orientation[:3], orientation[3:], (spacing[0], spacing[1]),
                        _slice_spacing(ds), diffusion, temporal, slope, intercept, layout)]


def _modality_scaling(ds: Any, private_group: Any, slope: float, intercept: float) -> tuple[float, float]:
    """(slope, intercept) to apply to stored values: Philips' precise floating-point scaling when
    the private scale slope (2005,100E) is in `private_group` (the file, or an enhanced frame's
    private functional group 2005,140F), as dcm2niix does by default; else RescaleSlope/Intercept."""
    if private_group is None or vendors.manufacturer(ds) != "Philips":
        return slope, intercept
    element = private_group.get(0x2005100E)
    value = getattr(element, "value", None)
    if isinstance(value, bytes) and len(value) == 4:  # FL read as UN (implicit VR, no dictionary entry)
        value = struct.unpack("<f", value)[0]
    try:
        scale_slope = float(value[0] if isinstance(value, (list, tuple)) else value)
    except (TypeError, ValueError, IndexError):
        return slope, intercept
    return philips_precise_scaling(slope, intercept, scale_slope)


def _first_item(container: pydicom.Dataset, sequence: str) -> pydicom.Dataset | None:
    items = container.get(sequence)
    return items[0] if items else None


def _enhanced_records(ds: pydicom.Dataset, path: str, file_index: int) -> list[FrameRecord]:
    """One record per frame. Acquisition order (the temporal key): InstanceNumber of the file
    (Siemens XA writes one file per volume), then the frame's DimensionIndexValues read from the
    last index to the first, as dcm2niix orders enhanced frames (Philips puts the gradient
    number last: its b = 0 frames, numbered after every gradient, come last), then frame order."""
    shared = _first_item(ds, "SharedFunctionalGroupsSequence") or pydicom.Dataset()
    instance_number = _number(ds, "InstanceNumber")
    records = []
    for frame_index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        def group(sequence: str) -> pydicom.Dataset | None:
            return _first_item(item, sequence) or _first_item(shared, sequence)

        plane_position, plane_orientation = group("PlanePositionSequence"), group("PlaneOrientationSequence")
        measures = group("PixelMeasuresSequence")
        if plane_position is None or plane_orientation is None or measures is None:
            raise DICOMFileError(path, f"frame {frame_index + 1} has no plane position/orientation/pixel measures")
        orientation = vendors.float_array(plane_orientation.ImageOrientationPatient)
        spacing = vendors.float_array(measures.PixelSpacing)
        slice_spacing = _number(measures, "SpacingBetweenSlices", 0.0) or _number(measures, "SliceThickness", 1.0)
        transform = group("PixelValueTransformationSequence")
        slope = _number(transform, "RescaleSlope", 1.0) if transform is not None else 1.0
        intercept = _number(transform, "RescaleIntercept", 0.0) if transform is not None else 0.0
        private = item.get((0x2005, 0x140F))
        slope, intercept = _modality_scaling(ds, private.value[0] if private is not None and private.value else None,
                                             slope or 1.0, intercept)
        diffusion = vendors.frame_diffusion(ds, item)
        content = _first_item(item, "FrameContentSequence")
        index_values = vendors.float_array(content.get("DimensionIndexValues")) if content is not None else None
        dimensions = tuple(index_values[::-1]) if index_values is not None else ()
        records.append(FrameRecord(file_index, frame_index, vendors.float_array(plane_position.ImagePositionPatient),
                                   orientation[:3], orientation[3:], (spacing[0], spacing[1]), slice_spacing,
                                   diffusion, ((), instance_number, dimensions, float(frame_index)),
                                   slope or 1.0, intercept))
    return records


def plan_dwi(files: Sequence[str], require_diffusion: bool = True, database: Any = None) -> DWIPlan:
    """Group the frames of `files` into diffusion volumes (headers only). Raises LoadError when no
    diffusion volumes can be formed.

    Images without diffusion information count as b = 0, as dcm2niix reads them: Canon/Toshiba
    write the MR Diffusion Sequence on the weighted images only, so their b = 0 images carry
    no diffusion tag at all. In a series where some images have diffusion information, a
    warning counts the others; with require_diffusion=False a series without any is read as
    a 4D stack of b = 0 volumes (the scalar plugin's way to any mosaic or slice series). With a
    `database`, header values come from its tag cache.

    With a header scan's index (`scanindex.ScanIndex`: one `convert` or `load` of a folder, whose
    values do not change) the plan of the same files is made once: the scalar plugin's mosaic
    examine, the diffusion plugin's and the mosaic reader each asked for it (2-4 ms each time
    for a 6-file mosaic series, headers cached). Each caller gets its own copy of the lists."""
    files = [str(f) for f in files]
    key = _memo_key(files, database)
    entry = _PLANS.get(key) if key is not None else None
    built = entry[1] if entry is not None and entry[0]() is database else None  # an id can be reused
    if built is not None:
        no_diffusion = built.no_diffusion
    else:
        stage = _plan_records(files, database)
        no_diffusion = stage.no_diffusion
        if not (no_diffusion and require_diffusion):  # refused before the volumes, as always
            built = _plan_volumes(files, stage)
            if key is not None:
                _PLANS[key] = (weakref.ref(database), built)
                while len(_PLANS) > _PLANS_KEPT:
                    _PLANS.pop(next(iter(_PLANS)))
    if no_diffusion and require_diffusion:
        raise LoadError(f"no diffusion information in {len(files)} files (first: {files[0]})")
    return _finish_plan(built, files, require_diffusion)


@dataclass
class _Records:
    """plan_dwi's first stage: the frames of the images and what was found on the way."""

    records: list[FrameRecord]
    warnings: list[str]
    first_ds: Any
    derived: int
    instance_uids: dict[int, str]
    locations: dict[str, tuple]
    without: list[FrameRecord]  # records without diffusion information
    no_diffusion: bool  # no record has any: not a DWI (require_diffusion refuses it)


@dataclass
class _Built:
    """A plan as require_diffusion=False makes it, with what require_diffusion=True changes."""

    plan: DWIPlan
    no_diffusion: bool
    all_b0_at: int | None  # where the "all b = 0" warning goes for require_diffusion=True; None: not all b = 0


#: plans made from a header scan's index: (id(index), files) -> (weak reference to it, _Built)
_PLANS: dict[tuple[int, tuple[str, ...]], tuple[Any, _Built]] = {}
_PLANS_KEPT = 8


def _memo_key(files: list[str], database: Any) -> tuple[int, tuple[str, ...]] | None:
    from ..scanindex import ScanIndex

    return (id(database), tuple(files)) if isinstance(database, ScanIndex) else None


def _plan_records(files: list[str], database: Any) -> _Records:
    headers, locations = _headers(files, database)
    records: list[FrameRecord] = []
    warnings: list[str] = []
    first_ds: pydicom.Dataset | None = None
    derived = 0
    skipped: list[str] = []
    instance_uids: dict[int, str] = {}
    for file_index, (path, ds) in enumerate(zip(files, headers)):
        if ds is None or "Rows" not in ds:
            continue  # presentation states, raw data, DICOMDIR: not images
        instance_uids[file_index] = str(ds.get("SOPInstanceUID", "") or "")
        if first_ds is None:
            first_ds = ds
        try:
            if ds.get("PerFrameFunctionalGroupsSequence"):
                file_records = _enhanced_records(ds, path, file_index)
            else:
                file_records = _classic_records(ds, path, file_index)
        except DICOMFileError as error:
            skipped.append(str(error))  # e.g. Philips raw-data objects that carry Rows but no plane
            continue
        for record in file_records:
            if record.diffusion.derived:
                derived += 1
            else:
                records.append(record)
    if first_ds is None:
        raise LoadError(f"no image files among {len(files)} files (first: {files[0] if files else '-'})")
    if skipped:
        warnings.append(f"{len(skipped)} file(s) without image geometry skipped (first: {skipped[0]})")
    if not records and not derived:
        raise LoadError(f"no usable image among {len(files)} files (first: {files[0]})")
    if derived:
        warnings.append(f"{derived} derived image(s) (trace/ADC/isotropic) excluded")
    without = [r for r in records if r.diffusion.bvalue is None]
    return _Records(records, warnings, first_ds, derived, instance_uids, locations, without,
                    bool(without) and len(without) == len(records))


def _plan_volumes(files: list[str], stage: _Records) -> _Built:
    records, warnings, without, first_ds = stage.records, stage.warnings, stage.without, stage.first_ds
    if without and len(without) < len(records):
        warnings.append(f"{len(without)} image(s) without diffusion information read as b = 0 (as dcm2niix does)")
    for record in without:
        record.diffusion.bvalue = 0.0

    records = _one_orientation(records, warnings)
    if records[0].mosaic_layout is not None:
        volumes, ijk_to_lps, shape = _mosaic_volumes(records, warnings)
    else:
        volumes, ijk_to_lps, shape = _slice_volumes(records, files, warnings)
    bvalues, gradients = _volume_encodings(volumes, files, warnings, require_diffusion=False)
    all_b0_at = len(warnings) if volumes and not np.any(bvalues > 0) else None
    position = str(first_ds.get("PatientPosition", "") or "").upper()
    if vendors.manufacturer(first_ds) == "GE" and position and position != "HFS":
        warnings.append(f"GE gradient directions assume a head-first supine patient; PatientPosition is {position}")
    plan = DWIPlan(files=files, volumes=volumes, bvalues=bvalues, gradients_lps=gradients, ijk_to_lps=ijk_to_lps,
                   shape_kji=shape, warnings=warnings, vendor=vendors.manufacturer(first_ds),
                   series_uid=str(first_ds.get("SeriesInstanceUID", "")),
                   series_description=str(first_ds.get("SeriesDescription", "")),
                   series_number=str(first_ds.get("SeriesNumber", "") or ""), derived_excluded=stage.derived,
                   identity={k: str(first_ds.get(k, "") or "") for k in IDENTITY_KEYWORDS if first_ds.get(k, "")},
                   instance_uids=stage.instance_uids, pixel_locations=stage.locations)
    return _Built(plan, stage.no_diffusion, all_b0_at)


def _finish_plan(built: _Built, files: list[str], require_diffusion: bool) -> DWIPlan:
    """The caller's own copy of a built plan (lists and arrays copied, frame records shared: no
    caller changes them), with require_diffusion's warning, the warnings logged."""
    source = built.plan
    warnings = list(source.warnings)
    if require_diffusion and built.all_b0_at is not None:
        warnings.insert(built.all_b0_at, "no diffusion-weighted volume (all b = 0)")
    plan = dataclasses.replace(
        source, files=list(files), volumes=[list(volume) for volume in source.volumes],
        bvalues=source.bvalues.copy(), gradients_lps=source.gradients_lps.copy(),
        ijk_to_lps=source.ijk_to_lps.copy(), warnings=warnings, identity=dict(source.identity),
        instance_uids=dict(source.instance_uids), pixel_locations=dict(source.pixel_locations))
    # a series without diffusion weighting is not a DWI: what the plan found is not worth a warning
    level = logging.WARNING if np.any(plan.bvalues > 0) else logging.DEBUG
    for warning in warnings:
        logger.log(level, "%s: %s", plan.series_uid or files[0], warning)
    return plan


def _one_orientation(records: list[FrameRecord], warnings: list[str]) -> list[FrameRecord]:
    """Keep the most common slice orientation; warn about (and drop) the others."""
    keys = [tuple(np.round(np.concatenate([r.row_direction, r.column_direction]), 4)) for r in records]
    counts: dict[tuple, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    if len(counts) == 1:
        return records
    main = max(counts, key=counts.get)
    reference = np.array(main)
    kept = [r for r, key in zip(records, keys)
            if np.allclose(np.concatenate([r.row_direction, r.column_direction]), reference, atol=1e-3)]
    if len(kept) < len(records):
        warnings.append(f"mixed orientations: {len(records) - len(kept)} image(s) of another orientation excluded")
    return kept


def _mosaic_volumes(records: list[FrameRecord], warnings: list[str]):
    records = sorted(records, key=lambda r: r.temporal_key)
    layout = records[0].mosaic_layout
    for record in records[1:]:
        other = record.mosaic_layout
        if other.count != layout.count or not np.allclose(other.first_position_lps, layout.first_position_lps, atol=1e-2):
            warnings.append("mosaics of one series differ in slice count or position; using the first's geometry")
            break
    first = records[0]
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = first.row_direction * first.pixel_spacing[1]
    ijk_to_lps[:3, 1] = first.column_direction * first.pixel_spacing[0]
    ijk_to_lps[:3, 2] = layout.normal_lps * (layout.slice_spacing or first.slice_spacing)
    ijk_to_lps[:3, 3] = layout.first_position_lps
    return [[r] for r in records], ijk_to_lps, (layout.count, layout.rows, layout.columns)


def _slice_volumes(records: list[FrameRecord], files: list[str], warnings: list[str]):
    first = records[0]
    normal = np.cross(first.row_direction, first.column_direction)
    distances = np.array([float(np.dot(r.position_lps, normal)) for r in records])
    order = np.argsort(distances, kind="stable")
    locations: list[list[FrameRecord]] = []
    location_distances: list[float] = []
    tolerance = max(1e-3, 0.01 * first.slice_spacing)
    for index in order:
        if location_distances and abs(distances[index] - location_distances[-1]) <= tolerance:
            locations[-1].append(records[index])
        else:
            locations.append([records[index]])
            location_distances.append(distances[index])
    for location in locations:
        location.sort(key=lambda r: r.temporal_key)
    counts = [len(location) for location in locations]
    n_volumes = min(counts)
    if max(counts) != n_volumes:
        short = sum(1 for c in counts if c < max(counts))
        warnings.append(f"missing slices: {short} of {len(locations)} slice locations have fewer images "
                        f"({n_volumes}) than others ({max(counts)}); {max(counts) - n_volumes} incomplete volume(s) dropped")
    volumes = [[location[m] for location in locations] for m in range(n_volumes)]
    ijk_to_lps = _stack_geometry(volumes[0], files, warnings)
    return volumes, ijk_to_lps, (len(locations), None, None)


def _stack_geometry(volume: list[FrameRecord], files: list[str], warnings: list[str]) -> np.ndarray:
    """IJK-to-LPS of one volume's slices (sorted along the normal) and its geometry findings,
    through the project's geometry module (the same checks and matrix as the scalar plugin)."""
    from .. import geometry

    frames = [geometry.FrameGeometry(path=files[r.file_index], frame=r.frame_index,
                                     position=tuple(float(v) for v in r.position_lps),
                                     orientation=tuple(float(v) for v in np.concatenate([r.row_direction, r.column_direction])),
                                     pixel_spacing=(float(r.pixel_spacing[0]), float(r.pixel_spacing[1])),
                                     slice_thickness=r.slice_spacing)
              for r in volume]
    frames = geometry.sort_frames(frames)
    findings = [f for f in geometry.check_geometry(frames) if f.kind != "single_slice"]
    if findings:
        warnings.append(geometry.findings_text(findings))
    return geometry.ijk_to_lps(frames)


def _volume_encodings(volumes: list[list[FrameRecord]], files: list[str], warnings: list[str],
                      require_diffusion: bool = True):
    bvalues = np.zeros(len(volumes))
    gradients = np.zeros((len(volumes), 3))
    inconsistent = 0
    for index, volume in enumerate(volumes):
        head = volume[0].diffusion
        bvalues[index] = head.bvalue or 0.0
        if head.gradient_lps is not None:
            gradients[index] = head.gradient_lps
        for record in volume[1:]:
            other = record.diffusion
            same_b = abs((other.bvalue or 0.0) - bvalues[index]) <= 1e-3 * max(1.0, bvalues[index])
            same_g = (other.gradient_lps is None and head.gradient_lps is None) or (
                other.gradient_lps is not None and head.gradient_lps is not None
                and all(abs(float(a) - float(b)) <= 1e-3 + 1e-5 * abs(float(b))  # np.allclose, cheaper
                        for a, b in zip(other.gradient_lps, head.gradient_lps)))
            if not (same_b and (same_g or bvalues[index] == 0)):
                inconsistent += 1
                break
    if inconsistent:
        warnings.append(f"{inconsistent} volume(s) mix slices of different b-values or directions "
                        "(slices missing for some gradient?)")
    if volumes and not np.any(bvalues > 0) and require_diffusion:
        warnings.append("no diffusion-weighted volume (all b = 0)")
    return bvalues, gradients


def read_dwi(files: Sequence[str], database: Any = None, plan: DWIPlan | None = None,
             require_diffusion: bool = True, stored: bool = False) -> DWISeries:
    """Read a DWI series: the plan, then the pixels (one batched read at the recorded pixel data
    offsets, already in volume/slice order), unpacked and rescaled to float32 when needed.

    `stored=True` (writers with scale fields: NIfTI) keeps the stored integers when every frame
    has the same slope and intercept, and returns that scaling in `rescale`: no float32 copy, the
    file half the size, and the stored type as dcm2niix keeps it. Frames scaled differently are
    still rescaled to float32."""
    from ..pixelreader import read_frames

    plan = plan or plan_dwi(files, require_diffusion=require_diffusion, database=database)
    files = plan.files
    n_volumes = len(plan.volumes)
    records = [record for volume in plan.volumes for record in volume]
    used_files = sorted({r.file_index for r in records})
    file_position = {f: i for i, f in enumerate(used_files)}
    paths = [files[f] for f in used_files]
    index = database
    if index is None and plan.pixel_locations and all(path in plan.pixel_locations for path in paths):
        index = _ScanIndex({path: plan.pixel_locations[path] for path in paths})
    # every record is a distinct frame (a mosaic is one frame per volume): read in output order
    stack = read_frames(paths, database=index, frames=[(file_position[r.file_index], r.frame_index) for r in records])
    rescale = None
    scalings = {(r.slope, r.intercept) for r in records}
    if stored and len(scalings) == 1 and np.issubdtype(stack.dtype, np.integer):
        (slope, intercept), = scalings
        rescale = None if (slope, intercept) == (1.0, 0.0) else (float(slope), float(intercept))
    elif any(r.slope != 1.0 or r.intercept != 0.0 for r in records):
        stack = _rescaled(stack, np.array([r.slope for r in records], dtype=np.float32),
                          np.array([r.intercept for r in records], dtype=np.float32))
    if records[0].mosaic_layout is not None:
        layout = records[0].mosaic_layout
        voxels = np.empty((n_volumes, layout.count, layout.rows, layout.columns), dtype=stack.dtype)
        for index_volume, volume in enumerate(plan.volumes):
            voxels[index_volume] = mosaic.unpack(stack[index_volume], volume[0].mosaic_layout)
    else:
        voxels = stack.reshape(n_volumes, plan.shape_kji[0], *stack.shape[1:3])  # a view, no copy
    return DWISeries(voxels=voxels, ijk_to_ras=plan.ijk_to_ras, bvalues=plan.bvalues.copy(),
                     gradients_lps=plan.gradients_lps.copy(), warnings=list(plan.warnings), files=list(files),
                     name=plan.name, series_uid=plan.series_uid, vendor=plan.vendor, identity=dict(plan.identity),
                     instance_uids=[plan.instance_uids[f] for f in used_files if plan.instance_uids.get(f)],
                     rescale=rescale)


def _rescaled(stack: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """slope * stored + intercept per frame, in float32: one float32 copy of the stack, no float64."""
    out = stack.astype(np.float32)
    if np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]):
        out *= slopes[0]
        out += intercepts[0]
    else:
        for frame, slope, intercept in zip(out, slopes, intercepts):
            frame *= slope
            frame += intercept
    return out
