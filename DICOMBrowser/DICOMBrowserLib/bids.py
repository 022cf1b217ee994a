"""BIDS sidecars: the JSON dcm2niix writes beside each image, from the series' own headers.

Why: analysis pipelines (fMRIPrep, QSIPrep, SPM's BIDS tools) read acquisition parameters from the
sidecar, not from DICOM; a converter without them is not a drop-in for dcm2niix. Keys and units
follow BIDS (times in seconds, angles in degrees) and dcm2niix's names, so the same tools work on
either output. Checked key by key against dcm2niix's own sidecars (Testing/test_convert_sidecars.py,
docs/convert.md lists the keys that differ and why).

Frames: PhaseEncodingDirection and SliceTiming refer to the voxel axes of the file they describe.
`rows_flipped` says whether that file's j axis runs against the DICOM column direction (dcm2niix's
and our DWI NIfTI layout) or along it (our scalar NIfTI/NRRD layout); the polarity of a phase
encoding along the columns is stated for the file's own j axis either way.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import pydicom

logger = logging.getLogger(__name__)

#: tags read per slice (first volume) for slice timing: TriggerTime, GE RTIA timer
SLICE_TIMING_TAGS = ("0018,1060", "0021,105e")
#: tags the index should hold for the sidecars besides the plugins' own (scanned once with them)
SIDECAR_TAGS = SLICE_TIMING_TAGS + ("0018,1030", "0008,0070", "0020,0012", "0008,0021", "0008,0031")

#: dcm2niix's short manufacturer names
_MANUFACTURERS = (("SIEMENS", "Siemens"), ("GE", "GE"), ("PHILIPS", "Philips"), ("TOSHIBA", "Canon"),
                  ("CANON", "Canon"), ("UIH", "UIH"), ("UNITED IMAGING", "UIH"), ("HITACHI", "Hitachi"),
                  ("FUJIFILM", "Hitachi"), ("BRUKER", "Bruker"),
                  ("MEDISO", "Mediso"))

#: (BIDS key, DICOM keyword, kind): kind "s" text, "i" integer, "f" number, "ms" milliseconds -> seconds,
#: "v" multi-valued text joined by a backslash (as dcm2niix writes it), "t" time HH:MM:SS.ffffff
_SIMPLE: tuple[tuple[str, str, str], ...] = (
    ("Modality", "Modality", "s"),
    ("MagneticFieldStrength", "MagneticFieldStrength", "f"),
    ("ImagingFrequency", "ImagingFrequency", "f"),
    ("Manufacturer", "Manufacturer", "manufacturer"),
    ("ManufacturersModelName", "ManufacturerModelName", "s"),
    ("InstitutionName", "InstitutionName", "s"),
    ("InstitutionalDepartmentName", "InstitutionalDepartmentName", "s"),
    ("InstitutionAddress", "InstitutionAddress", "s"),
    ("DeviceSerialNumber", "DeviceSerialNumber", "s"),
    ("StationName", "StationName", "s"),
    ("BodyPart", "BodyPartExamined", "s"),
    ("PatientPosition", "PatientPosition", "s"),
    ("ProcedureStepDescription", "PerformedProcedureStepDescription", "s"),
    ("SoftwareVersions", "SoftwareVersions", "v"),
    ("MRAcquisitionType", "MRAcquisitionType", "s"),
    ("StudyDescription", "StudyDescription", "s"),
    ("SeriesDescription", "SeriesDescription", "s"),
    ("ProtocolName", "ProtocolName", "s"),
    ("ScanningSequence", "ScanningSequence", "v"),
    ("SequenceVariant", "SequenceVariant", "v"),
    ("ScanOptions", "ScanOptions", "v"),
    ("SequenceName", "SequenceName", "s"),
    ("PulseSequenceName", "PulseSequenceName", "s"),
    ("SeriesNumber", "SeriesNumber", "i"),
    ("AcquisitionTime", "AcquisitionTime", "t"),
    ("AcquisitionNumber", "AcquisitionNumber", "i"),
    ("SliceThickness", "SliceThickness", "f"),
    ("SpacingBetweenSlices", "SpacingBetweenSlices", "f"),
    ("SAR", "SAR", "f"),
    ("EchoNumber", "EchoNumbers", "i"),
    ("EchoTime", "EchoTime", "ms"),
    ("RepetitionTime", "RepetitionTime", "ms"),
    ("InversionTime", "InversionTime", "ms"),
    ("FlipAngle", "FlipAngle", "f"),
    ("ReceiveCoilName", "ReceiveCoilName", "s"),
    ("PercentPhaseFOV", "PercentPhaseFieldOfView", "f"),
    ("PercentSampling", "PercentSampling", "f"),
    ("EchoTrainLength", "EchoTrainLength", "i"),
    ("PhaseEncodingSteps", "NumberOfPhaseEncodingSteps", "i"),
    ("PixelBandwidth", "PixelBandwidth", "f"),
    # CT / PET
    ("XRayExposure", "Exposure", "f"),
    ("XRayTubeCurrent", "XRayTubeCurrent", "f"),
    ("ExposureTime", "ExposureTime", "ms"),
    ("KVP", "KVP", "f"),
    ("ReconstructionDiameter", "ReconstructionDiameter", "f"),
    ("ConvolutionKernel", "ConvolutionKernel", "v"),
    ("Radiopharmaceutical", "Radiopharmaceutical", "s"),
    ("Units", "Units", "s"),
    ("DecayCorrection", "DecayCorrection", "s"),
    ("ReconMethod", "ReconstructionMethod", "s"),
)
#: keys dcm2niix writes before/after the scalar ones, in its order (others are appended)
KEY_ORDER = [key for key, _, _ in _SIMPLE]


def manufacturer_name(text: str) -> str:
    upper = (text or "").upper()
    for prefix, name in _MANUFACTURERS:
        if upper.startswith(prefix):
            return name
    return (text or "").strip()


def _number(value: Any) -> float | int | None:
    """A JSON number as dcm2niix prints it: integers without a decimal point, else a float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if number == int(number) and abs(number) < 1e15:
        return int(number)
    return float(f"{number:.6g}")


def _group_items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """The first item of every functional group of the shared and the first per-frame item, in
    that order ([] for a classic object): where _find looks beyond the top level. Made once per
    sidecar: walking a Siemens XA shared item (~160 elements) for each of ~50 keys cost more
    than the rest of the sidecar."""
    items = []
    for container in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(container)
        if not groups:
            continue
        for group in groups[0]:
            if group.VR == "SQ" and group.value:
                items.append(group.value[0])
    return items


def _find(ds: pydicom.Dataset, keyword: str, items: Sequence[pydicom.Dataset] | None = None) -> Any:
    """A top-level value, else the first one inside the shared or the first per-frame functional
    group (enhanced multi-frame objects keep EchoTime, FlipAngle, ... there); `items`:
    _group_items(ds), when the caller has it."""
    value = ds.get(keyword)
    if value not in (None, ""):
        return value
    for item in _group_items(ds) if items is None else items:
        if keyword in item and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    return None


def _convert(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    if kind == "manufacturer":
        return manufacturer_name(str(value))
    if kind == "s":
        text = str(value).strip()
        return text or None
    if kind == "v":
        values = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
        text = "\\".join(str(v).strip() for v in values)
        return text or None
    if kind == "t":
        text = str(value).strip()
        if len(text) < 6:
            return None
        whole, _, fraction = text.partition(".")
        return f"{whole[0:2]}:{whole[2:4]}:{whole[4:6]}.{(fraction + '000000')[:6]}"
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if len(value) else None
    number = _number(value)
    if number is None:
        return None
    if kind == "i":
        return int(number)
    if kind == "ms":
        return _number(float(number) / 1000.0)
    return number


def _image_type(ds: pydicom.Dataset, suffix: str) -> list[str] | None:
    """ImageType values, each split at '_' (Philips' M_SE), then the image component dcm2niix appends
    (MAGNITUDE, PHASE, REAL, IMAGINARY) when the values name one."""
    enhanced = "PerFrameFunctionalGroupsSequence" in ds
    value = (_find(ds, "FrameType") if enhanced else None) or ds.get("ImageType")
    if not value:
        return None
    values = [str(v) for v in (value if isinstance(value, pydicom.multival.MultiValue) else [value])]
    parts = [part for v in values for part in v.split("_") if part] if manufacturer_name(
        str(ds.get("Manufacturer", ""))) == "Philips" else values
    upper = {p.upper() for p in parts}
    ge_component = ds.get((0x0043, 0x102F))
    ge = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}.get(
        int(ge_component.value) if ge_component is not None and str(ge_component.value).strip().lstrip("-").isdigit()
        else -1)
    component = None
    if suffix.endswith("_fieldmaphz"):
        component = "FIELDMAPHZ"  # dcm2niix's word for a field map in Hz
    elif upper & {"P", "PHASE"} or suffix.endswith("_ph"):
        component = "PHASE"
    elif upper & {"R", "REAL"} or suffix.endswith("_real"):
        component = "REAL"
    elif upper & {"I", "IMAGINARY"} or suffix.endswith("_imaginary"):
        component = "IMAGINARY"
    elif upper & {"M", "MAGNITUDE"}:
        component = "MAGNITUDE"
    elif ge:
        component = ge
    if component and component not in upper:
        parts.append(component)
    return parts


def _siemens(ds: pydicom.Dataset, sidecar: dict[str, Any], rows_flipped: bool, recon_pe: int | None) -> None:
    """Keys from the CSA headers: slice timing, phase encoding polarity, readout times."""
    from .diffusion import csa

    try:
        image = csa.image_header(ds)
        protocol = csa.ascconv(ds)
    except Exception as error:  # a damaged private header must not cost the other keys
        logger.debug("No CSA header values from %s: %s", getattr(ds, "filename", "?"), error)
        return
    times = image.get("MosaicRefAcqTimes")
    if times and len(times) > 1:
        sidecar["SliceTiming"] = [_number(float(t) / 1000.0) for t in times]
    positive = csa.first(image, "PhaseEncodingDirectionPositive")
    direction = str(ds.get("InPlanePhaseEncodingDirection", "")).strip().upper()
    bandwidth = csa.first(image, "BandwidthPerPixelPhaseEncode")
    if bandwidth and recon_pe:
        sidecar["BandwidthPerPixelPhaseEncode"] = _number(bandwidth)
        spacing = 1.0 / (float(bandwidth) * recon_pe)
        sidecar["EffectiveEchoSpacing"] = _number(spacing)
        acceleration = _number(protocol.get("sPat.lAccelFactPE"))
        if acceleration:
            sidecar["ParallelReductionFactorInPlane"] = acceleration
            sidecar["DerivedVendorReportedEchoSpacing"] = _number(spacing * acceleration)
        sidecar["TotalReadoutTime"] = _number(spacing * (recon_pe - 1))
    if positive in (0, 1) and direction in ("ROW", "COL"):
        axis = "i" if direction == "ROW" else "j"
        # Siemens' "positive" is along the DICOM row/column direction; a flipped j axis runs against it
        along_axis = bool(positive) != (axis == "j" and rows_flipped)
        sidecar["PhaseEncodingDirection"] = axis + ("" if along_axis else "-")


def _ge(ds: pydicom.Dataset, sidecar: dict[str, Any], recon_pe: int | None) -> None:
    spacing_us = ds.get((0x0043, 0x102C))
    factors = ds.get((0x0043, 0x1083))
    try:
        spacing = float(spacing_us.value) * 1e-6 if spacing_us is not None else None
        acceleration = float(factors.value[0]) if factors is not None and len(factors.value) else 1.0
    except (TypeError, ValueError, IndexError):
        return
    if spacing and recon_pe:
        # GE's spacing is per acquired line: times the ASSET factor (written as 1/R, <= 1), then
        # scaled from the acquired to the reconstructed phase-encoding matrix
        factor = acceleration if 0 < acceleration <= 1 else 1.0 / acceleration if acceleration > 1 else 1.0
        acquired = sidecar.get("AcquisitionMatrixPE") or recon_pe
        effective = spacing * factor * acquired / recon_pe
        sidecar["EffectiveEchoSpacing"] = _number(effective)
        sidecar["TotalReadoutTime"] = _number(effective * (recon_pe - 1))
    name = ds.get((0x0019, 0x109C))
    if name is not None and "PulseSequenceName" not in sidecar:
        sidecar["PulseSequenceName"] = str(name.value).strip()
    internal = ds.get((0x0019, 0x109E))
    if internal is not None:
        sidecar["InternalPulseSequenceName"] = str(internal.value).strip()


def slice_timing_from_values(trigger_ms: Sequence[str], repetition_time: float | None) -> list[float] | None:
    """SliceTiming (s) from per-slice TriggerTime (ms) in slice order, when they differ and lie within TR."""
    try:
        times = [float(t) / 1000.0 for t in trigger_ms]
    except ValueError:
        return None
    if len(times) < 2 or len(set(times)) < 2:
        return None
    start = min(times)
    times = [t - start for t in times]
    if repetition_time and max(times) >= repetition_time:
        return None
    return [_number(t) for t in times]


def sidecar(ds: pydicom.Dataset, *, suffix: str = "", rows_flipped: bool = False, slice_values:
            Sequence[dict[str, str]] = (), shape_kji: Sequence[int] | None = None,
            conversion_software: str = "dicombrowser", version: str = "") -> dict[str, Any]:
    """The BIDS sidecar of one output, from the first image's header `ds` (full parse) and, for
    slice timing, the `slice_values` (SLICE_TIMING_TAGS) of the first volume's slices in k order."""
    out: dict[str, Any] = {}
    items = _group_items(ds)
    for key, keyword, kind in _SIMPLE:
        value = _convert(_find(ds, keyword, items), kind)
        if value is not None:
            out[key] = value
    if "EchoNumber" in out and out["EchoNumber"] == 1 and not suffix.startswith("_e"):
        del out["EchoNumber"]  # dcm2niix writes it for multi-echo parts only
    image_type = _image_type(ds, suffix)
    if image_type:
        out["ImageType"] = image_type
    direction = str(ds.get("InPlanePhaseEncodingDirection", "")).strip().upper()
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    recon_pe = None
    matrix = ds.get("AcquisitionMatrix")
    if direction in ("ROW", "COL"):
        recon_pe = columns if direction == "ROW" else rows
        if shape_kji is not None and len(shape_kji) >= 3:  # mosaics: the tile, not the whole mosaic
            recon_pe = int(shape_kji[-1] if direction == "ROW" else shape_kji[-2])
        if matrix is not None and len(matrix) == 4:
            acquired = int(matrix[2] or matrix[3])  # (frequency rows, frequency columns, phase rows, phase columns)
            if acquired:
                out["AcquisitionMatrixPE"] = acquired
        out["ReconMatrixPE"] = recon_pe
    vendor = manufacturer_name(str(ds.get("Manufacturer", "")))
    if vendor == "Siemens":
        upper_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
        out["NonlinearGradientCorrection"] = bool(upper_type & {"DIS2D", "DIS3D"})
        _siemens(ds, out, rows_flipped, recon_pe)
    elif vendor == "GE":
        _ge(ds, out, recon_pe)
    if "PhaseEncodingDirection" not in out and direction in ("ROW", "COL"):
        out["PhaseEncodingAxis"] = "i" if direction == "ROW" else "j"  # polarity unknown: axis only (BIDS)
    if "SliceTiming" not in out and slice_values and out.get("Modality") == "MR":
        timing = slice_timing_from_values([v.get("0018,1060", "") or "0" for v in slice_values],
                                          out.get("RepetitionTime"))
        if timing:
            out["SliceTiming"] = timing
    orientation = _find(ds, "ImageOrientationPatient", items)
    if orientation is not None and len(orientation) == 6:
        out["ImageOrientationPatientDICOM"] = [_number(v) for v in orientation]
    if direction in ("ROW", "COL"):
        out["InPlanePhaseEncodingDirectionDICOM"] = direction
    out["ConversionSoftware"] = conversion_software
    if version:
        out["ConversionSoftwareVersion"] = version
    return out


def read_header(path: str) -> pydicom.Dataset:
    """The full header (no pixel data) of the file a sidecar describes: what
    `pydicom.dcmread(path, stop_before_pixels=True, force=True)` gives, read by `fastheader` and
    kept per file (`multiframe.read_header`): an enhanced file that examine parsed is not parsed
    again (a Siemens XA file: 8.5 ms with pydicom), and a classic one reads 1-5x faster."""
    from .multiframe import read_header as cached_header

    return cached_header(path)
