"""A volume (or a 4D sequence of volumes) as a new image series of an existing study.

One CT Image, MR Image or Secondary Capture (OT) object per slice, as Slicer's scalar volume
exporter writes them: patient and study modules copied from the study, new Series and SOP
Instance UIDs, the Frame of Reference kept when the volume is in the study's frame. Geometry:
the node's IJK-to-RAS matrix (RAS mm) turned into LPS for Image Position / Orientation
(Patient); slice k of the volume is object k of each time point, whatever direction k points.
Pixel values are stored in 16 bits; the rescale slope and intercept are chosen per series so
that integer volumes are stored exactly and floating point volumes keep as many digits as 16
bits allow (exactly, when their values are multiples of a decimal step that fits).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..errors import ExportError
from .study import StudyContext, now_date_time

logger = logging.getLogger(__name__)

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}
#: what our objects say made them (General Equipment; Manufacturer is type 2)
MANUFACTURER = "DICOMBrowser"
#: attributes an export computes itself: `--set` may not change them (the object would lie about its pixels)
PROTECTED_KEYWORDS = {
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PixelData", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
    "RescaleSlope", "RescaleIntercept", "InstanceNumber", "Modality", "NumberOfFrames",
}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UINT16_MAX = 65535


@dataclass
class VolumeSource:
    """What gets exported: voxels (t, k, j, i) (t = 1 for a 3D volume) and where they are."""

    voxels: np.ndarray
    ijk_to_ras: np.ndarray  # 4x4, RAS mm, (i, j, k) = (column, row, slice)
    name: str = "volume"
    frame_of_reference_uid: str = ""  # the DICOM frame the node was loaded in, when known
    temporal_values: list[float] | None = None  # index values of a 4D sequence (one per volume)
    temporal_unit: str = ""

    @property
    def is_4d(self) -> bool:
        return self.voxels.shape[0] > 1


@dataclass
class VolumeExportOptions:
    """The choices of `dicombrowser export` (see docs/export.md)."""

    modality: str = "CT"
    series_description: str = ""
    series_number: int | None = None
    #: "auto" (keep the node's frame when the study has it, else new), "study" (the study's only
    #: frame: the volume was made in the study's patient coordinates), "new", or an explicit UID
    frame_of_reference: str = "auto"
    overrides: dict[str, str] = field(default_factory=dict)  # `--set Keyword=Value`
    #: one Legacy Converted Enhanced CT/MR multi-frame object instead of one object per slice
    #: (`--enhanced`; see export/enhanced.py)
    enhanced: bool = False


@dataclass
class ExportResult:
    """What an export made; `files` are the written paths (empty until written)."""

    study_uid: str
    series_uid: str
    sop_class_uid: str
    frame_of_reference_uid: str
    frame_of_reference_kept: bool
    datasets: list[Dataset] = field(repr=False, default_factory=list)
    files: list[Path] = field(default_factory=list)
    rescale: tuple[float, float] = (1.0, 0.0)  # (slope, intercept)
    max_quantization_error: float = 0.0  # in the volume's units
    notes: list[str] = field(default_factory=list)
    imported: bool = False
    sent: Any = None  # SendSummary when sent

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study_uid, "series": self.series_uid, "sop_class": self.sop_class_uid,
                "frame_of_reference": self.frame_of_reference_uid, "frame_of_reference_kept": self.frame_of_reference_kept,
                "instances": len(self.datasets), "files": [str(f) for f in self.files],
                "rescale_slope": self.rescale[0], "rescale_intercept": self.rescale[1],
                "max_quantization_error": self.max_quantization_error, "notes": self.notes,
                "imported": self.imported,
                "sent": None if self.sent is None else {"sent": self.sent.sent, "failed": len(self.sent.failed)}}


# --- sources --------------------------------------------------------------------------------
def volume_from_node(node: Any) -> VolumeSource:
    """A scalar volume node or a sequence of scalar volumes (4D) as a VolumeSource."""
    from .. import scene as scenes

    if node.IsA("vtkMRMLSequenceNode"):
        voxels, ijk_to_ras = scenes.sequence_array(node)
        values = []
        for index in range(node.GetNumberOfDataNodes()):
            try:
                values.append(float(node.GetNthIndexValue(index)))
            except ValueError:
                values.append(float(index))
        frame = node.GetAttribute("DICOM.FrameOfReferenceUID") or ""
        if not frame and node.GetScene() is not None:
            proxy = scenes.sequence_proxy(node.GetScene(), node)
            frame = (proxy.GetAttribute("DICOM.FrameOfReferenceUID") or "") if proxy is not None else ""
        return VolumeSource(np.asarray(voxels), ijk_to_ras, node.GetName(), frame, values, node.GetIndexUnit() or "")
    if node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        raise ExportError(f"node {node.GetName()}: only scalar volumes export as image series "
                          f"({node.GetClassName()} is not one)")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise ExportError(f"node {node.GetName()}: a {node.GetClassName()} is not a volume")
    voxels = scenes.array_from_volume(node)
    return VolumeSource(voxels[np.newaxis], scenes.ijk_to_ras_of(node), node.GetName(),
                        node.GetAttribute("DICOM.FrameOfReferenceUID") or "")


def read_volume_source(path: str | os.PathLike, node_name: str | None = None) -> VolumeSource:
    """A volume file (.nrrd, .nhdr, .nii, .nii.gz; .seq.nrrd for 4D) read by Slicer's storage
    nodes, or one volume of a scene (.mrml, .mrb; `node_name` picks it when there are several)."""
    from .. import scene as scenes

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ExportError(f"{path}: no such volume file")
    lower = path.name.lower()
    slicer = scenes._slicer()
    scene = scenes.new_scene()
    if lower.endswith((".mrb", ".mrml")):
        scene = scenes.load_scene(path)
        return volume_from_node(_pick_scene_volume(scene, path, node_name))
    if lower.endswith(".seq.nrrd"):
        node = scene.AddNewNodeByClass("vtkMRMLSequenceNode", path.name.split(".")[0])
        storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    elif lower.endswith((".nrrd", ".nhdr", ".nii", ".nii.gz")):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", path.name.split(".")[0])
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetSingleFile(True)
    else:
        raise ExportError(f"{path}: not a volume file (.nrrd, .nhdr, .nii, .nii.gz, .seq.nrrd, .mrml, .mrb)")
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise ExportError(f"{path}: Slicer's storage node could not read the volume")
    if node.IsA("vtkMRMLScalarVolumeNode") and node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise ExportError(f"{path}: {node.GetImageData().GetNumberOfScalarComponents()} components per voxel; "
                          "only scalar volumes export as image series (a 4D file: save it as .seq.nrrd)")
    return volume_from_node(node)


def _pick_scene_volume(scene: Any, path: Path, node_name: str | None) -> Any:
    candidates = []
    sequences = scene.GetNodesByClass("vtkMRMLSequenceNode")
    proxies = set()
    for index in range(sequences.GetNumberOfItems()):
        sequence = sequences.GetItemAsObject(index)
        data = sequence.GetNthDataNode(0) if sequence.GetNumberOfDataNodes() else None
        if data is not None and data.IsA("vtkMRMLScalarVolumeNode"):
            candidates.append(sequence)
            from .. import scene as scenes

            proxy = scenes.sequence_proxy(scene, sequence)
            if proxy is not None:
                proxies.add(proxy.GetID())
    volumes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(volumes.GetNumberOfItems()):
        volume = volumes.GetItemAsObject(index)
        if volume.GetID() not in proxies and not volume.IsA("vtkMRMLLabelMapVolumeNode"):
            candidates.append(volume)
    if node_name is not None:
        chosen = [n for n in candidates if n.GetName() == node_name]
        if not chosen:
            raise ExportError(f"{path}: no volume node named {node_name!r} (has: {[n.GetName() for n in candidates]})")
        return chosen[0]
    if len(candidates) != 1:
        raise ExportError(f"{path}: {len(candidates)} volume nodes ({[n.GetName() for n in candidates]}); "
                          "name one with --node")
    return candidates[0]


# --- geometry and pixel encoding ----------------------------------------------------------------
@dataclass
class _SliceGeometry:
    orientation: list[float]  # ImageOrientationPatient (row direction = i axis, column direction = j axis), LPS
    pixel_spacing: list[float]  # [between rows (j), between columns (i)] mm
    positions: list[list[float]]  # ImagePositionPatient of each slice k, LPS mm
    slice_thickness: float
    slice_locations: list[float]  # position along the normal
    patient_orientation: list[str]  # PatientOrientation letters of the row and column directions (e.g. L, P)


def slice_geometry(ijk_to_ras: np.ndarray, slices: int, label: str) -> _SliceGeometry:
    """Per-slice LPS geometry from an IJK-to-RAS matrix; the in-plane axes must be orthogonal."""
    ijk_to_lps = _RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=float)
    axes = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(axes)):
        raise ExportError(f"{label}: IJK-to-RAS has a zero or invalid axis: {ijk_to_ras[:3, :3].tolist()}")
    row_direction, column_direction = axes[:, 0] / spacing[0], axes[:, 1] / spacing[1]
    if abs(float(np.dot(row_direction, column_direction))) > 1e-4:
        raise ExportError(f"{label}: the volume's row and column axes are not orthogonal "
                          f"(cosine {np.dot(row_direction, column_direction):.5f}); DICOM images cannot hold that")
    normal = np.cross(row_direction, column_direction)
    positions = [ijk_to_lps[:3, 3] + k * axes[:, 2] for k in range(slices)]
    return _SliceGeometry(
        orientation=[_clean(v) for v in (*row_direction, *column_direction)],
        pixel_spacing=[_clean(spacing[1]), _clean(spacing[0])],
        positions=[[_clean(v) for v in p] for p in positions],
        slice_thickness=_clean(abs(float(np.dot(axes[:, 2], normal)))),
        slice_locations=[_clean(float(np.dot(p, normal))) for p in positions],
        patient_orientation=[_orientation_letters(row_direction), _orientation_letters(column_direction)])


def _orientation_letters(direction: np.ndarray) -> str:
    """PS3.3 C.7.6.1.1.1: the patient directions a vector (LPS) points to, largest component first."""
    letters = []
    for axis in np.argsort(-np.abs(direction)):
        if abs(direction[axis]) > 0.1:
            letters.append(("L", "P", "H")[axis] if direction[axis] > 0 else ("R", "A", "F")[axis])
    return "".join(letters[:3])


def _clean(value: float) -> float:
    """A float that DS encodes in 16 characters without losing more than 1e-6 mm."""
    value = float(value)
    return 0.0 if abs(value) < 1e-12 else float(f"{value:.10g}")


@dataclass
class PixelEncoding:
    stored: np.ndarray  # int16 or uint16, same shape as the voxels
    slope: float
    intercept: float
    max_error: float

    @property
    def signed(self) -> bool:
        return self.stored.dtype == np.int16


def encode_pixels(voxels: np.ndarray, label: str) -> PixelEncoding:
    """16-bit stored values and a rescale (value = stored * slope + intercept).

    Integer voxels within 16 bits are stored as they are (slope 1). Floating point voxels that
    are multiples of 10^-d (d <= 6) spanning at most 65535 steps are stored exactly; others
    over the full 16-bit range (error at most half a step, reported)."""
    values = np.asarray(voxels)
    if values.size == 0:
        raise ExportError(f"{label}: the volume is empty")
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
        raise ExportError(f"{label}: the volume has NaN or infinite voxels; DICOM images cannot hold them")
    low, high = float(values.min()), float(values.max())
    integral = np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.bool_)
    if not integral and np.all(values == np.round(values)):
        integral = True
    if integral:
        if low >= -32768 and high <= 32767:
            return PixelEncoding(values.astype(np.int16), 1.0, 0.0, 0.0)
        if low >= 0 and high <= _UINT16_MAX:
            return PixelEncoding(values.astype(np.uint16), 1.0, 0.0, 0.0)
    if not integral:
        for digits in range(1, 7):
            scaled = values.astype(np.float64) * 10.0 ** digits
            rounded = np.round(scaled)
            if np.max(np.abs(scaled - rounded)) > 1e-3:
                continue
            if rounded.max() - rounded.min() > _UINT16_MAX:
                break
            slope = float(f"1e-{digits}")
            intercept = float(rounded.min()) * slope if (rounded.min() < -32768 or rounded.max() > 32767) else 0.0
            offset = round(intercept / slope)
            stored = (rounded - offset)
            dtype = np.int16 if stored.min() >= -32768 and stored.max() <= 32767 else np.uint16
            encoding = PixelEncoding(stored.astype(dtype), slope, _ds(intercept), 0.0)
            encoding.max_error = _max_error(values, encoding)
            return encoding
    span = high - low
    slope = float(_ds(span / _UINT16_MAX)) if span > 0 else 1.0
    while span / slope > _UINT16_MAX:  # DS rounding may make the slope a hair too small
        slope = float(_ds(slope * (1 + 1e-9)))
    intercept = float(_ds(low))
    stored = np.clip(np.round((values.astype(np.float64) - intercept) / slope), 0, _UINT16_MAX).astype(np.uint16)
    encoding = PixelEncoding(stored, slope, intercept, 0.0)
    encoding.max_error = _max_error(values, encoding)
    return encoding


def _ds(value: float) -> float:
    """`value` as it survives a Decimal String (16 characters)."""
    return float(pydicom.valuerep.format_number_as_ds(float(value)))


def _max_error(values: np.ndarray, encoding: PixelEncoding) -> float:
    decoded = encoding.stored.astype(np.float64) * encoding.slope + encoding.intercept
    return float(np.max(np.abs(decoded - values.astype(np.float64))))


# --- building -------------------------------------------------------------------------------------
def build_volume_series(source: VolumeSource, study: StudyContext, options: VolumeExportOptions) -> ExportResult:
    """All data sets of the new series, checked, in memory (nothing written)."""
    modality = options.modality.upper()
    if modality not in SOP_CLASSES:
        raise ExportError(f"modality {options.modality!r}: export writes CT, MR or OT")
    if options.enhanced and modality not in ("CT", "MR"):
        raise ExportError(f"volume {source.name}: --enhanced writes CT or MR (Legacy Converted Enhanced CT/MR "
                          f"Image); {modality} has no enhanced multi-frame form here")
    voxels = np.asarray(source.voxels)
    if voxels.ndim != 4:
        raise ExportError(f"{source.name}: voxels must be (t, k, j, i), got shape {voxels.shape}")
    times, slices, rows, columns = voxels.shape
    label = f"volume {source.name} for study {study.study_uid}"
    geometry = slice_geometry(source.ijk_to_ras, slices, label)
    encoding = encode_pixels(voxels, label)
    frame_uid, kept, notes = _frame_of_reference(source, study, options)
    overrides = _parse_overrides(options.overrides)
    series_uid = generate_uid()
    sop_class = SOP_CLASSES[modality]
    date, time = now_date_time()
    series_number = options.series_number if options.series_number is not None else study.next_series_number()
    description = options.series_description or source.name
    window = _window(voxels)
    result = ExportResult(study.study_uid, series_uid, sop_class, frame_uid, kept,
                          rescale=(encoding.slope, encoding.intercept), max_quantization_error=encoding.max_error,
                          notes=notes)
    if encoding.max_error > 0:
        result.notes.append(f"float voxels stored in 16 bits: slope {encoding.slope:g}, "
                            f"largest difference {encoding.max_error:.3g}")
    instance = 0
    for t in range(times):
        for k in range(slices):
            instance += 1
            ds = Dataset()
            ds.update(study.header)
            if "SpecificCharacterSet" not in ds:
                ds.SpecificCharacterSet = "ISO_IR 192"  # any text an override brings stays encodable
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
            # General Series
            ds.Modality = modality
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description[:64]
            ds.SeriesDate, ds.SeriesTime = date, time
            reference = study.reference if study.reference is not None else Dataset()
            # type 2C: empty means "unknown", which a derived volume is unless its study says
            ds.Laterality = reference.get("Laterality", "")
            if modality in ("CT", "MR"):  # type 2C for CT and MR: the study's position, if it states one
                ds.PatientPosition = reference.get("PatientPosition", "")
            # Frame of Reference, General Equipment
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            ds.Manufacturer = MANUFACTURER
            ds.SoftwareVersions = _version()
            if modality == "OT":
                ds.ConversionType = "WSD"  # SC Equipment: workstation
            # General Image, Image Plane
            ds.InstanceNumber = instance
            ds.ContentDate, ds.ContentTime = date, time
            ds.ImageType = ["DERIVED", "SECONDARY"] + {"CT": ["AXIAL"], "MR": ["OTHER"]}.get(modality, [])
            if modality == "OT":  # Secondary Capture has no Image Plane module: the letters are required
                ds.PatientOrientation = geometry.patient_orientation
            ds.ImageOrientationPatient = geometry.orientation
            ds.ImagePositionPatient = geometry.positions[k]
            ds.PixelSpacing = geometry.pixel_spacing
            ds.SliceThickness = geometry.slice_thickness
            ds.SliceLocation = geometry.slice_locations[k]
            # Image Pixel
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, columns
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 1 if encoding.signed else 0
            ds.PixelData = np.ascontiguousarray(encoding.stored[t, k]).astype(encoding.stored.dtype.newbyteorder("<")).tobytes()
            if modality == "CT" or (encoding.slope, encoding.intercept) != (1.0, 0.0):
                ds.RescaleIntercept = pydicom.valuerep.format_number_as_ds(encoding.intercept)
                ds.RescaleSlope = pydicom.valuerep.format_number_as_ds(encoding.slope)
                if modality != "CT":
                    ds.RescaleType = "US"  # unspecified units (Modality LUT module)
            if window is not None:
                ds.WindowCenter, ds.WindowWidth = window
            if modality == "CT":
                ds.KVP = ""
                ds.AcquisitionNumber = t + 1 if source.is_4d else ""
            elif modality == "MR":
                ds.ScanningSequence = "RM"  # research mode: a derived image states no sequence
                ds.SequenceVariant = "NONE"
                ds.ScanOptions = ""
                ds.MRAcquisitionType = ""
                ds.EchoTime = ""
                ds.EchoTrainLength = ""
                ds.RepetitionTime = ""
                ds.SpacingBetweenSlices = geometry.slice_thickness
            if source.is_4d:
                ds.TemporalPositionIdentifier = t + 1
                ds.NumberOfTemporalPositions = times
                # (TriggerTime would carry the index values, but PS3.3 allows it only for gated acquisitions)
            for keyword, value in overrides.items():
                setattr(ds, keyword, value)
            _settle_laterality(ds)
            result.datasets.append(ds)
    if options.enhanced:
        from .enhanced import convert_to_enhanced

        return convert_to_enhanced(result, modality, description, label)
    return result


def _settle_laterality(ds: Dataset) -> None:
    """Laterality (type 2C) is absent for an unpaired body part and present (empty: unknown) for
    a paired or unstated one; pairedness from PS3.16's anatomic regions as highdicom ships them."""
    from highdicom._standard_utils import get_anatomic_region_map

    if ds.get("Laterality"):
        return
    body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    region = get_anatomic_region_map().get(body_part) if body_part else None
    if region is not None and not region[1]:
        del ds.Laterality


def _window(voxels: np.ndarray) -> tuple[str, str] | None:
    low, high = float(voxels.min()), float(voxels.max())
    if high <= low:
        return None
    fmt = pydicom.valuerep.format_number_as_ds
    return fmt((low + high) / 2), fmt(high - low)


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"dicombrowser {version('dicombrowser')}"
    except Exception:  # not installed as a distribution (run from the source tree)
        return "dicombrowser"


def _frame_of_reference(source: VolumeSource, study: StudyContext,
                        options: VolumeExportOptions) -> tuple[str, bool, list[str]]:
    choice = options.frame_of_reference or "auto"
    if "FrameOfReferenceUID" in options.overrides:
        choice = options.overrides["FrameOfReferenceUID"]
    if choice == "new":
        return generate_uid(), False, ["new Frame of Reference (asked for)"]
    if choice == "study":
        if len(study.frames_of_reference) != 1:
            raise ExportError(f"study {study.study_uid} has {len(study.frames_of_reference)} frames of reference "
                              f"({', '.join(study.frames_of_reference) or 'none'}); name one with "
                              "--frame-of-reference UID")
        return study.frames_of_reference[0], True, []
    if choice == "auto":
        if source.frame_of_reference_uid and source.frame_of_reference_uid in study.frames_of_reference:
            return source.frame_of_reference_uid, True, []
        why = ("the volume's frame is not one of the study's" if source.frame_of_reference_uid
               else "the volume does not say which frame it is in")
        return generate_uid(), False, [f"new Frame of Reference ({why}; --frame-of-reference study keeps the study's)"]
    if not pydicom.uid.UID(choice).is_valid:
        raise ExportError(f"--frame-of-reference {choice!r}: not 'auto', 'study', 'new' or a valid UID")
    kept = choice in study.frames_of_reference
    return choice, kept, [] if kept else [f"Frame of Reference {choice} is not used by study {study.study_uid}"]


def parse_assignments(assignments: Sequence[str]) -> dict[str, str]:
    """`Keyword=Value` strings (the CLI's --set) as a dict; the keyword is checked later."""
    parsed = {}
    for text in assignments:
        keyword, sep, value = text.partition("=")
        if not sep or not keyword.strip():
            raise ExportError(f"--set {text!r}: expected Keyword=Value (e.g. SeriesDescription=Liver)")
        parsed[keyword.strip()] = value
    return parsed


def _parse_overrides(overrides: dict[str, str]) -> dict[str, Any]:
    """Keyword=value pairs checked against the data dictionary and their VR (ExportError names the keyword)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.valuerep import validate_value

    parsed: dict[str, Any] = {}
    for keyword, text in overrides.items():
        if tag_for_keyword(keyword) is None:
            raise ExportError(f"--set {keyword}=...: {keyword!r} is not a DICOM keyword")
        if keyword in PROTECTED_KEYWORDS:
            raise ExportError(f"--set {keyword}=...: the export computes {keyword} itself")
        if keyword == "FrameOfReferenceUID":
            continue  # chosen with the frame of reference
        vr = dictionary_VR(keyword)
        if vr == "SQ":
            raise ExportError(f"--set {keyword}=...: sequences cannot be set from the command line")
        parts = text.split("\\") if text else []
        try:
            if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
                values: list[Any] = [int(p) for p in parts]
            elif vr in ("FL", "FD"):
                values = [float(p) for p in parts]
            else:
                values = parts
            for value in values:
                validate_value(vr, value, pydicom.config.RAISE)
        except ValueError as error:
            raise ExportError(f"--set {keyword}={text!r}: not a valid {vr} value ({error})") from error
        parsed[keyword] = values[0] if len(values) == 1 else values
    return parsed


# --- writing ------------------------------------------------------------------------------------
def write_datasets(datasets: Sequence[Dataset], folder: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Each data set as a Part 10 file (explicit VR little endian) named by its SOP Instance UID;
    never overwrites (ExportError names the file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{prefix}{ds.SOPInstanceUID}.dcm"
        if path.exists():
            raise ExportError(f"{path}: already exists; an export never overwrites a file")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def export_volume(database: Any, source: VolumeSource, study_uid: str, options: VolumeExportOptions,
                  output_dir: str | os.PathLike | None = None, to_database: bool = False,
                  send: Any = None, deidentify: Any = None) -> ExportResult:
    """Build the series, then write it to `output_dir`, import it (all or nothing) and/or send it.

    `send` is a callable taking the written paths and returning a SendSummary (the logic binds
    the node); `deidentify` a callable that turns the data sets into de-identified ones.
    """
    from .destinations import deliver
    from .study import study_context

    study = study_context(database, study_uid)
    result = build_volume_series(source, study, options)
    return deliver(database, result, output_dir=output_dir, to_database=to_database, send=send,
                   deidentify=deidentify, prefix=f"{options.modality.upper()}_")
