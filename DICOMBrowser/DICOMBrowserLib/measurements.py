"""TID 1500 measurement reports (DICOM SR, e.g. dcmqi's) as rows of a measurement table.

highdicom parses the report (`hd.sr.srread`, `MeasurementReport`); each numeric measurement of
each measurement group (image, planar ROI and volumetric ROI groups: TID 1501, 1410, 1411)
becomes one row with its group's tracking identifier and UID, finding, finding sites, the
measurement's name, derivation, value and units, and the segment or region it was made on
(referenced SEG instance and segment number, source series).
"""
from __future__ import annotations

from typing import Any

from .errors import DICOMFileError

COMPREHENSIVE_SR_CLASSES = {"1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22",
                            "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34",
                            "1.2.840.10008.5.1.4.1.1.88.35"}
#: the document title of TID 1500, "Imaging Measurement Report" (DCM 126000)
MEASUREMENT_REPORT_CODE = "126000"


def _meaning(code: Any) -> str:
    return str(getattr(code, "meaning", "") or "") if code is not None else ""


def _group_rows(kind: str, group: Any) -> list[dict[str, str]]:
    sites = "; ".join(_meaning(getattr(site, "value", None)) or _meaning(site) for site in (group.finding_sites or []))
    segment_number, segmentation_uid, source_series = "", "", ""
    referenced = getattr(group, "referenced_segment", None)
    if referenced is not None:
        for item in referenced:
            for sop in item.get("ReferencedSOPSequence", []) or []:
                segmentation_uid = str(sop.get("ReferencedSOPInstanceUID", ""))
                segment_number = str(sop.get("ReferencedSegmentNumber", ""))
            if item.get("UID"):
                source_series = str(item.UID)
    common = {"Group": kind, "TrackingIdentifier": str(group.tracking_identifier or ""),
              "TrackingUID": str(group.tracking_uid or ""), "Finding": _meaning(group.finding_type),
              "FindingSite": sites, "ReferencedSegmentationUID": segmentation_uid,
              "ReferencedSegmentNumber": segment_number, "SourceSeriesUID": source_series}
    rows = []
    for measurement in group.get_measurements():
        derivation = getattr(measurement, "derivation", None)
        method = getattr(measurement, "method", None)
        rows.append({**common, "Quantity": _meaning(measurement.name),
                     "Derivation": _meaning(derivation), "Method": _meaning(method),
                     "Value": repr(float(measurement.value)) if measurement.value is not None else "",
                     "Units": str(getattr(measurement.unit, "value", "") or ""),
                     "UnitsMeaning": _meaning(measurement.unit)})
    return rows


def read_measurements(path: str) -> list[dict[str, str]]:
    """One row per numeric measurement of a TID 1500 report. Raises DICOMFileError for other SRs."""
    import highdicom as hd

    try:
        document = hd.sr.srread(str(path))
        report = document.content
    except (ValueError, AttributeError, KeyError, TypeError) as error:
        raise DICOMFileError(str(path), f"not a TID 1500 measurement report highdicom can read: {error}") from error
    if not isinstance(report, hd.sr.MeasurementReport):
        raise DICOMFileError(str(path), "not a TID 1500 Imaging Measurement Report")
    rows: list[dict[str, str]] = []
    for kind, getter in (("image", "get_image_measurement_groups"), ("planar ROI", "get_planar_roi_measurement_groups"),
                         ("volumetric ROI", "get_volumetric_roi_measurement_groups")):
        for group in getattr(report, getter)():
            rows.extend(_group_rows(kind, group))
    return rows


def is_measurement_report(dataset: Any) -> bool:
    """A TID 1500 report: an SR whose root concept is 'Imaging Measurement Report' (DCM 126000)."""
    names = dataset.get("ConceptNameCodeSequence") or []
    return bool(names) and str(names[0].get("CodeValue", "")) == MEASUREMENT_REPORT_CODE
