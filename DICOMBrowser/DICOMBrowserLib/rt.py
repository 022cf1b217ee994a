"""Radiotherapy objects: RT Dose grids in Gy, RT Plan summaries, RT Structure Set contours.

Coordinates: DICOM positions are LPS mm; matrices handed to the scene are IJK-to-RAS (mm).

Dose (PS3.3 C.8.8.3, RT Dose module): dose = stored value x DoseGridScaling, in DoseUnits
(GY, or RELATIVE to an unspecified reference). Frame k lies at ImagePositionPatient +
normal x (GridFrameOffsetVector[k] - GridFrameOffsetVector[0]): the vector's relative form
starts at 0 and is measured from ImagePositionPatient; its absolute form (allowed only for axial
grids) holds each plane's z and starts at ImagePositionPatient's z. Both reduce to the same
difference, so one formula reads either.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DICOMFileError, LoadError
from .geometry import slice_normal
from .identity import ijk_to_ras_of_plane, read_dataset, required

logger = logging.getLogger(__name__)

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: relative difference between frame spacings (unitless) still read as one regular grid
SPACING_TOLERANCE = 1e-3
#: the dose colour table's name in a scene (one per scene, made on first use)
DOSE_COLOR_TABLE = "Dose"


@dataclass
class DoseGrid:
    """An RT Dose grid: `dose` (k, j, i) float32 in `units` (Gy unless RELATIVE), where it lies (RAS mm)."""

    dose: np.ndarray
    ijk_to_ras: np.ndarray
    units: str
    dose_type: str  # PHYSICAL, EFFECTIVE, ERROR
    summation_type: str  # PLAN, MULTI_PLAN, FRACTION, BEAM, BRACHY, CONTROL_POINT, ...
    scaling: float
    offsets_form: str  # "relative" or "absolute" (GridFrameOffsetVector)
    referenced_plan_uids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def dose_description(dataset: Any) -> str:
    """'PHYSICAL dose, PLAN sum, GY': what the name of a dose loadable says about the grid."""
    parts = [f"{str(dataset.get('DoseType', '') or '?')} dose",
             f"{str(dataset.get('DoseSummationType', '') or '?')} sum",
             str(dataset.get("DoseUnits", "") or "?")]
    return ", ".join(parts)


def frame_positions(offsets: list[float], position_lps: np.ndarray, normal: np.ndarray,
                    path: str) -> tuple[np.ndarray, str]:
    """Per-frame offsets along `normal` from the first frame (mm) and which form the vector has.

    Relative form: offsets[0] == 0. Absolute form: offsets[0] is the first plane's coordinate
    along the normal (z for axial grids), i.e. the normal component of ImagePositionPatient.
    """
    values = np.asarray(offsets, dtype=float)
    if values.size == 0:
        raise DICOMFileError(path, "GridFrameOffsetVector is empty")
    if abs(values[0]) < 1e-6:
        form = "relative"
    else:
        form = "absolute"
        along = float(np.dot(position_lps, normal))
        if abs(values[0] - along) > 1e-2:
            logger.warning("%s: GridFrameOffsetVector starts at %g, neither 0 (relative) nor the position of the "
                           "first plane along the normal (%g, absolute); read as absolute", path, values[0], along)
    return values - values[0], form


def read_dose(path: str) -> DoseGrid:
    """The dose grid of an RT Dose file, in Gy (DoseGridScaling applied). Raises DICOMFileError / LoadError."""
    from . import pixelreader

    dataset = read_dataset(path)
    if "PixelData" not in dataset:
        raise DICOMFileError(path, "RT Dose without Pixel Data (a DVH-only object) has no dose grid to load")
    scaling = float(required(dataset, "DoseGridScaling", path, "stored values cannot be turned into dose"))
    position = np.asarray([float(v) for v in required(dataset, "ImagePositionPatient", path)])
    orientation = [float(v) for v in required(dataset, "ImageOrientationPatient", path)]
    spacing = [float(v) for v in required(dataset, "PixelSpacing", path)]
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    normal = slice_normal(orientation)
    warnings: list[str] = []
    if frames > 1:
        offsets = [float(v) for v in required(dataset, "GridFrameOffsetVector", path,
                                              "a multi-frame dose grid needs its plane positions")]
        if len(offsets) != frames:
            raise DICOMFileError(path, f"GridFrameOffsetVector has {len(offsets)} values for {frames} frames")
        relative, form = frame_positions(offsets, position, normal, path)
        steps = np.diff(relative)
        step = float(steps.mean())
        if abs(step) < 1e-6 or np.max(np.abs(steps - step)) > SPACING_TOLERANCE * abs(step):
            raise LoadError(f"{path}: dose planes are not evenly spaced (GridFrameOffsetVector steps "
                            f"{sorted(set(np.round(steps, 3).tolist()))} mm); not loaded as a regular grid")
    else:
        form, step = "relative", float(dataset.get("SliceThickness", 0) or 1.0)
    stored = pixelreader.read_frames([str(path)])
    dose = stored.astype(np.float32) * np.float32(scaling)
    if dose.ndim != 3:
        raise LoadError(f"{path}: dose pixel frames of shape {stored.shape[1:]} are not grey-scale")
    matrix = ijk_to_ras_of_plane(position, orientation, spacing, normal * step)
    plans = [str(item.get("ReferencedSOPInstanceUID", "")) for item in dataset.get("ReferencedRTPlanSequence", [])]
    return DoseGrid(dose=dose, ijk_to_ras=matrix, units=str(dataset.get("DoseUnits", "") or ""),
                    dose_type=str(dataset.get("DoseType", "") or ""),
                    summation_type=str(dataset.get("DoseSummationType", "") or ""), scaling=scaling,
                    offsets_form=form, referenced_plan_uids=[p for p in plans if p], warnings=warnings)


def dose_color_table(scene: Any) -> Any:
    """The scene's dose colour table (made once): 256 colours from blue (low dose) through green and
    yellow to red (high dose), the usual dose wash of planning systems."""
    import slicer

    existing = scene.GetFirstNodeByName(DOSE_COLOR_TABLE)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(DOSE_COLOR_TABLE)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    anchors = np.array([[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0.5, 0], [1, 0, 0]])
    positions = np.linspace(0, 1, len(anchors))
    for index in range(256):
        t = index / 255
        rgb = [float(np.interp(t, positions, anchors[:, c])) for c in range(3)]
        table.SetColor(index, f"{index}", *rgb, 1.0)
    scene.AddNode(table)
    return table


@dataclass
class PlanSummary:
    """What an RT Plan says, for showing: plan fields, one row per beam, prescriptions, isocentres (LPS mm)."""

    fields: dict[str, str]
    beams: list[dict[str, Any]]
    prescriptions: list[dict[str, Any]]
    isocenters: list[tuple[str, np.ndarray]]  # (beam names, LPS position), one per distinct position


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return " ".join(str(v) for v in value)
    return str(value)


def read_plan(dataset: Any, path: str) -> PlanSummary:
    """Beams (name, type, radiation, machine, energy, angles, isocentre, meterset), prescriptions
    (dose references) and fractions of an RT Plan or RT Ion Plan."""
    fields = {key: _text(dataset.get(key)) for key in ("RTPlanLabel", "RTPlanName", "RTPlanDate", "PlanIntent",
                                                       "RTPlanGeometry", "ApprovalStatus")}
    fractions, meterset = {}, {}
    for group in dataset.get("FractionGroupSequence", []) or []:
        fields.setdefault("NumberOfFractionsPlanned", _text(group.get("NumberOfFractionsPlanned")))
        for item in group.get("ReferencedBeamSequence", []) or []:
            number = _text(item.get("ReferencedBeamNumber"))
            meterset[number] = _text(item.get("BeamMeterset"))
            fractions[number] = _text(item.get("BeamDose"))
    beams, positions = [], []
    for beam in list(dataset.get("BeamSequence", []) or []) + list(dataset.get("IonBeamSequence", []) or []):
        points = beam.get("ControlPointSequence", None) or beam.get("IonControlPointSequence", None) or []
        first = points[0] if points else {}
        number = _text(beam.get("BeamNumber"))
        isocenter = first.get("IsocenterPosition") if points else None
        row = {"BeamNumber": number, "BeamName": _text(beam.get("BeamName")), "BeamType": _text(beam.get("BeamType")),
               "RadiationType": _text(beam.get("RadiationType")),
               "TreatmentMachineName": _text(beam.get("TreatmentMachineName")),
               "NominalBeamEnergy": _text(first.get("NominalBeamEnergy")) if points else "",
               "GantryAngle": _text(first.get("GantryAngle")) if points else "",
               "BeamLimitingDeviceAngle": _text(first.get("BeamLimitingDeviceAngle")) if points else "",
               "PatientSupportAngle": _text(first.get("PatientSupportAngle")) if points else "",
               "IsocenterPosition_LPS": _text(isocenter), "BeamMeterset": meterset.get(number, ""),
               "BeamDose_Gy": fractions.get(number, ""),
               "NumberOfControlPoints": _text(beam.get("NumberOfControlPoints"))}
        beams.append(row)
        if isocenter is not None:
            position = np.asarray([float(v) for v in isocenter])
            for index, (names, known) in enumerate(positions):
                if np.allclose(known, position, atol=1e-3):
                    positions[index] = (f"{names}, {row['BeamName'] or number}", known)
                    break
            else:
                positions.append((row["BeamName"] or number, position))
    prescriptions = []
    for reference in dataset.get("DoseReferenceSequence", []) or []:
        prescriptions.append({key: _text(reference.get(key)) for key in (
            "DoseReferenceNumber", "DoseReferenceDescription", "DoseReferenceType", "DoseReferenceStructureType",
            "TargetPrescriptionDose", "DeliveryMaximumDose", "OrganAtRiskMaximumDose", "DoseReferencePointCoordinates")
            if reference.get(key) is not None})
    if not beams and "ApplicationSetupSequence" not in dataset:
        logger.info("%s: RT Plan without beams", path)
    return PlanSummary(fields=fields, beams=beams, prescriptions=prescriptions, isocenters=positions)
