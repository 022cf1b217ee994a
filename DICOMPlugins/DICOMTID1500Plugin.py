"""The TID 1500 plugin: DICOM SR measurement reports (dcmqi, QIICR) -> a table of measurements.

One loadable per report whose root is TID 1500's "Imaging Measurement Report" (0.95); other
structured reports are not claimed. Loading gives a vtkMRMLTableNode, one row per measurement:
finding, finding site, quantity, derivation, value, units and the segment it was made on
(DICOMBrowser.DICOMBrowserLib.measurements). The referenced segmentation is listed by UID.
"""
from __future__ import annotations

from typing import Any

from DICOMBrowser.DICOMBrowserLib import measurements
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

CONFIDENCE = 0.95


class DICOMTID1500Plugin(DICOMPlugin):
    """TID 1500 structured reports as measurement tables."""

    loadType = "Measurement report"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "seriesNumber": "0020,0011",
            "seriesDescription": "0008,103e"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """One loadable per TID 1500 report (the root concept read from the header)."""
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        reports = [f for f in files if self.fileValue(f, "0008,0016") in measurements.COMPREHENSIVE_SR_CLASSES
                   or self.fileValue(f, "0008,0060") == "SR"]
        loadables = []
        for path in reports:
            dataset = read_dataset(path)
            if not measurements.is_measurement_report(dataset):
                continue
            series = []  # the evidence: the images, segmentations and mappings the measurements come from
            for study in dataset.get("CurrentRequestedProcedureEvidenceSequence", []) or []:
                series.extend(str(item.SeriesInstanceUID) for item in study.get("ReferencedSeriesSequence", []) or [])
            name = self.seriesName(path, "Measurements")
            loadables.append(DICOMLoadable(
                name=name, files=[path], confidence=CONFIDENCE, selected=True,
                tooltip="TID 1500 measurement report: a table of measurements", referencedSeriesUIDs=series,
                extra={"kind": "tid1500"}))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """A table node of the report's measurements."""
        from DICOMBrowser.DICOMBrowserLib import tables
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        path = loadable.files[0]
        try:
            rows = measurements.read_measurements(path)
            header = read_dataset(path, stop_before_pixels=True)
        except DICOMBrowserError:
            raise
        except (ValueError, OSError) as error:
            raise LoadError(f"{loadable.name}: cannot read the report {path}: {error}") from error
        return tables.add_table(scene, loadable.name, rows, attributes={
            "DICOM.seriesInstanceUID": str(header.get("SeriesInstanceUID", "")),
            "DICOM.instanceUIDs": str(header.get("SOPInstanceUID", "")),
            "DICOM.referencedSeriesUIDs": " ".join(loadable.referencedSeriesUIDs)})
