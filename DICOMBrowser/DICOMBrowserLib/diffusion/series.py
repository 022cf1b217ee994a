"""A DWI series from its files: frames found, derived images dropped, volumes grouped by gradient
and ordered, geometry computed, pixels read. Nothing here imports Qt or VTK.

Grouping rule: frames are bucketed by slice location (distance along the slice normal); within a
location they are put in acquisition order (Philips 2005,1596 or 2005,1412/1413, else the frame
order of an enhanced file, else InstanceNumber), and the m-th frame of every location forms
volume m. Each volume must then have one b-value and one direction; when not, or when locations
have different frame counts (missing slices), a warning says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pydicom

from ..errors import DICOMFileError, LoadError
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


def _floats(values: Any) -> np.ndarray | None:
    if values is None:
        return None
    try:
        return np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None


#: tags (and their VRs) the fast header scan reads; enough for GE, Philips and standard-tag
#: classic images. Siemens (CSA), multi-frame and sequence-only encodings get a full parse.
_SCAN_TAGS: dict[str, str] = {
    "0008,0008": "CS", "0008,0016": "UI", "0008,0060": "CS", "0008,0070": "LO", "0008,103e": "LO",
    "0018,0050": "DS", "0018,0088": "DS", "0018,1312": "CS", "0018,9075": "CS", "0018,9087": "FD",
    "0018,9089": "FD", "0020,000e": "UI", "0020,0011": "IS", "0020,0013": "IS", "0020,0032": "DS",
    "0020,0037": "DS", "0028,0008": "IS", "0028,0010": "US", "0028,0011": "US", "0028,0030": "DS",
    "0028,1052": "DS", "0028,1053": "DS",
    "0043,1039": "IS", "0019,10bb": "DS", "0019,10bc": "DS", "0019,10bd": "DS",
    "2001,1003": "FL", "2001,1004": "CS", "2005,10b0": "FL", "2005,10b1": "FL", "2005,10b2": "FL",
    "2005,1412": "IS", "2005,1413": "IS", "2005,1596": "IS",
    # identity, for node attributes and the subject hierarchy
    "0008,0018": "UI", "0010,0010": "PN", "0010,0020": "LO", "0010,0030": "DA", "0010,0040": "CS",
    "0020,000d": "UI", "0008,1030": "LO", "0008,0020": "DA", "0008,0030": "TM", "0020,0010": "SH",
    "0020,0052": "UI", "0018,5100": "CS",
}
#: DICOM keywords copied into `DWIPlan.identity` (scene.IDENTITY_KEYS without PatientComments)
IDENTITY_KEYWORDS = ("PatientName", "PatientID", "PatientSex", "PatientBirthDate", "StudyInstanceUID",
                     "StudyDescription", "StudyDate", "StudyTime", "StudyID", "SeriesInstanceUID",
                     "SeriesNumber", "SeriesDescription", "Modality", "FrameOfReferenceUID")
_ENHANCED_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"}


def _dataset_from_scan(values: dict[str, str]) -> pydicom.Dataset:
    """A small pydicom Dataset of the scanned string values, so the vendor readers serve both paths."""
    ds = pydicom.Dataset()
    for tag, vr in _SCAN_TAGS.items():
        text = values.get(tag, "")
        if not text:
            continue
        parts = text.split("\\")
        if vr in ("FL", "FD"):
            value: Any = [float(p) for p in parts]
        elif vr == "US":
            value = [int(p) for p in parts]
        else:
            value = parts
        group, element = (int(x, 16) for x in tag.split(","))
        ds.add_new((group << 16) | element, vr, value if len(value) > 1 else value[0])
    return ds


def _needs_full_header(ds: pydicom.Dataset) -> bool:
    """Whether the scanned strings could miss what this file holds (binary CSA, sequences, frames)."""
    if vendors.manufacturer(ds) == "Siemens" or "MOSAIC" in [str(v).upper() for v in (ds.get("ImageType") or [])]:
        return True
    if str(ds.get("SOPClassUID", "")) in _ENHANCED_SOP_CLASSES or _number(ds, "NumberOfFrames", 1) > 1:
        return True
    has_b = any(tag in ds for tag in ((0x0018, 0x9087), (0x0043, 0x1039), (0x2001, 0x1003)))
    if not has_b:
        return True  # maybe inside an MR Diffusion Sequence (Canon, Hitachi) or not diffusion at all
    if vendors.manufacturer(ds) not in ("GE", "Philips") and (0x0018, 0x9089) not in ds:
        return True  # the direction may sit in 0018,9076
    return False


def _headers(files: list[str]) -> list[pydicom.Dataset | None]:
    """Headers of all files: a fast string scan, and a full pydicom parse only where needed."""
    from ..headerscan import scan_files

    headers: list[pydicom.Dataset | None] = []
    for path, result in zip(files, scan_files(files, list(_SCAN_TAGS), workers=1)):
        if not result.is_dicom:
            headers.append(None)
            continue
        ds = None
        if result.error is None:
            try:
                ds = _dataset_from_scan(result.values)
            except (ValueError, TypeError) as error:
                logger.debug("%s: scanned values unusable (%s); parsing fully", path, error)
        if ds is None or _needs_full_header(ds):
            ds = _read_header(path)
        headers.append(ds)
    return headers


def _read_header(path: str) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (OSError, pydicom.errors.InvalidDicomError, ValueError, EOFError) as error:
        logger.warning("Skipping %s: %s", path, error)
        return None


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
    orientation = _floats(ds.get("ImageOrientationPatient"))
    position = _floats(ds.get("ImagePositionPatient"))
    spacing = _floats(ds.get("PixelSpacing"))
    if orientation is None or len(orientation) != 6 or position is None or spacing is None:
        raise DICOMFileError(path, "no image plane geometry (ImageOrientation/PositionPatient, PixelSpacing)")
    diffusion = vendors.file_diffusion(ds, path)
    temporal = (diffusion.order_key, _number(ds, "InstanceNumber"))
    layout = None
    if mosaic.is_mosaic(ds) and vendors.manufacturer(ds) == "Siemens":
        layout = mosaic.layout(ds, path)
        position = layout.first_position_lps
    return [FrameRecord(file_index, 0, position, orientation[:3], orientation[3:], (spacing[0], spacing[1]),
                        _slice_spacing(ds), diffusion, temporal,
                        _number(ds, "RescaleSlope", 1.0) or 1.0, _number(ds, "RescaleIntercept", 0.0), layout)]


def _first_item(container: pydicom.Dataset, sequence: str) -> pydicom.Dataset | None:
    items = container.get(sequence)
    return items[0] if items else None


def _enhanced_records(ds: pydicom.Dataset, path: str, file_index: int) -> list[FrameRecord]:
    shared = _first_item(ds, "SharedFunctionalGroupsSequence") or pydicom.Dataset()
    records = []
    for frame_index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        def group(sequence: str) -> pydicom.Dataset | None:
            return _first_item(item, sequence) or _first_item(shared, sequence)

        plane_position, plane_orientation = group("PlanePositionSequence"), group("PlaneOrientationSequence")
        measures = group("PixelMeasuresSequence")
        if plane_position is None or plane_orientation is None or measures is None:
            raise DICOMFileError(path, f"frame {frame_index + 1} has no plane position/orientation/pixel measures")
        orientation = _floats(plane_orientation.ImageOrientationPatient)
        spacing = _floats(measures.PixelSpacing)
        slice_spacing = _number(measures, "SpacingBetweenSlices", 0.0) or _number(measures, "SliceThickness", 1.0)
        transform = group("PixelValueTransformationSequence")
        slope = _number(transform, "RescaleSlope", 1.0) if transform is not None else 1.0
        intercept = _number(transform, "RescaleIntercept", 0.0) if transform is not None else 0.0
        diffusion = vendors.frame_diffusion(ds, item)
        records.append(FrameRecord(file_index, frame_index, _floats(plane_position.ImagePositionPatient),
                                   orientation[:3], orientation[3:], (spacing[0], spacing[1]), slice_spacing,
                                   diffusion, ((), float(frame_index)), slope or 1.0, intercept))
    return records


def plan_dwi(files: Sequence[str], require_diffusion: bool = True) -> DWIPlan:
    """Group the frames of `files` into diffusion volumes (headers only). Raises LoadError when no
    diffusion volumes can be formed. With require_diffusion=False, frames without diffusion
    information count as b = 0 (to read any mosaic or slice series as a 4D stack)."""
    files = [str(f) for f in files]
    records: list[FrameRecord] = []
    warnings: list[str] = []
    first_ds: pydicom.Dataset | None = None
    derived = 0
    skipped: list[str] = []
    instance_uids: dict[int, str] = {}
    for file_index, (path, ds) in enumerate(zip(files, _headers(files))):
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
    if without and not require_diffusion:
        for record in without:
            record.diffusion.bvalue = 0.0
        without = []
    if without:
        if len(without) == len(records):
            raise LoadError(f"no diffusion information in {len(files)} files (first: {files[0]})")
        warnings.append(f"{len(without)} image(s) without diffusion information excluded")
        records = [r for r in records if r.diffusion.bvalue is not None]

    records = _one_orientation(records, warnings)
    if records[0].mosaic_layout is not None:
        volumes, ijk_to_lps, shape = _mosaic_volumes(records, warnings)
    else:
        volumes, ijk_to_lps, shape = _slice_volumes(records, files, warnings)
    bvalues, gradients = _volume_encodings(volumes, files, warnings)
    position = str(first_ds.get("PatientPosition", "") or "").upper()
    if vendors.manufacturer(first_ds) == "GE" and position and position != "HFS":
        warnings.append(f"GE gradient directions assume a head-first supine patient; PatientPosition is {position}")
    plan = DWIPlan(files=files, volumes=volumes, bvalues=bvalues, gradients_lps=gradients, ijk_to_lps=ijk_to_lps,
                   shape_kji=shape, warnings=warnings, vendor=vendors.manufacturer(first_ds),
                   series_uid=str(first_ds.get("SeriesInstanceUID", "")),
                   series_description=str(first_ds.get("SeriesDescription", "")),
                   series_number=str(first_ds.get("SeriesNumber", "") or ""), derived_excluded=derived,
                   identity={k: str(first_ds.get(k, "") or "") for k in IDENTITY_KEYWORDS if first_ds.get(k, "")},
                   instance_uids=instance_uids)
    for warning in warnings:
        logger.warning("%s: %s", plan.series_uid or files[0], warning)
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
    ijk_to_lps[:3, 2] = layout.normal_lps * first.slice_spacing
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


def _volume_encodings(volumes: list[list[FrameRecord]], files: list[str], warnings: list[str]):
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
                and np.allclose(other.gradient_lps, head.gradient_lps, atol=1e-3))
            if not (same_b and (same_g or bvalues[index] == 0)):
                inconsistent += 1
                break
    if inconsistent:
        warnings.append(f"{inconsistent} volume(s) mix slices of different b-values or directions "
                        "(slices missing for some gradient?)")
    if volumes and not np.any(bvalues > 0):
        warnings.append("no diffusion-weighted volume (all b = 0)")
    return bvalues, gradients


def read_dwi(files: Sequence[str], database: Any = None, plan: DWIPlan | None = None,
             require_diffusion: bool = True) -> DWISeries:
    """Read a DWI series: the plan, then the pixels, unpacked and rescaled."""
    from ..pixelreader import read_frames

    plan = plan or plan_dwi(files, require_diffusion=require_diffusion)
    files = plan.files
    n_volumes = len(plan.volumes)
    records = [record for volume in plan.volumes for record in volume]
    frame_list = [(r.file_index, r.frame_index) for r in records]
    # read each distinct frame once (a mosaic file is one frame for all its slices)
    unique = sorted(set(frame_list))
    used_files = sorted({f for f, _ in unique})
    file_position = {f: i for i, f in enumerate(used_files)}
    stack = read_frames([files[f] for f in used_files], database=database,
                        frames=[(file_position[f], k) for f, k in unique])
    where = {key: i for i, key in enumerate(unique)}
    rescale = any(r.slope != 1.0 or r.intercept != 0.0 for r in records)
    if records[0].mosaic_layout is not None:
        layout = records[0].mosaic_layout
        dtype = np.float32 if rescale else stack.dtype
        voxels = np.empty((n_volumes, layout.count, layout.rows, layout.columns), dtype=dtype)
        for index, volume in enumerate(plan.volumes):
            record = volume[0]
            slices = mosaic.unpack(stack[where[(record.file_index, record.frame_index)]], record.mosaic_layout)
            voxels[index] = slices * record.slope + record.intercept if rescale else slices
    else:
        rows, columns = stack.shape[1:3]
        dtype = np.float32 if rescale else stack.dtype
        voxels = np.empty((n_volumes, plan.shape_kji[0], rows, columns), dtype=dtype)
        for index, volume in enumerate(plan.volumes):
            for k, record in enumerate(volume):
                frame = stack[where[(record.file_index, record.frame_index)]]
                voxels[index, k] = frame * np.float32(record.slope) + np.float32(record.intercept) if rescale else frame
    return DWISeries(voxels=voxels, ijk_to_ras=plan.ijk_to_ras, bvalues=plan.bvalues.copy(),
                     gradients_lps=plan.gradients_lps.copy(), warnings=list(plan.warnings), files=list(files),
                     name=plan.name, series_uid=plan.series_uid, vendor=plan.vendor, identity=dict(plan.identity),
                     instance_uids=[plan.instance_uids[f] for f in used_files if plan.instance_uids.get(f)])
