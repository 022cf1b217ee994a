"""The RT Dose plugin: an RT Dose grid -> a scalar volume in Gy with a dose colour table.

The scalar volume plugin also offers RT Dose files, but as raw stored values (0.4); this plugin
applies DoseGridScaling and places every plane by GridFrameOffsetVector (relative or absolute
form), so its reading (0.95) is the default. The work is in DICOMBrowser.DICOMBrowserLib.rt.
"""
from __future__ import annotations

import logging
from typing import Any

from DICOMBrowser.DICOMBrowserLib import rt
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95


class DICOMRTDosePlugin(DICOMPlugin):
    """RT Dose grids as dose volumes (Gy), one loadable per dose file (plan sum, beam, fraction ...)."""

    loadType = "RT Dose"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "seriesNumber": "0020,0011",
            "seriesDescription": "0008,103e", "doseUnits": "3004,0002", "doseType": "3004,0004",
            "doseSummationType": "3004,000a", "doseGridScaling": "3004,000e", "rows": "0028,0010",
            "numberOfFrames": "0028,0008", "instanceNumber": "0020,0013"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """One loadable per RT Dose file that has a grid (DVH-only objects have no Rows)."""
        loadables = []
        doses = [f for f in files if self.fileValue(f, "0008,0016") == rt.RT_DOSE_STORAGE
                 or self.fileValue(f, "0008,0060") == "RTDOSE"]
        for path in doses:
            if not self.fileValue(path, "0028,0010"):
                logger.info("RT Dose plugin skips %s: no dose grid (Rows absent)", path)
                continue
            series = self.seriesName(path, "RT Dose")
            kind = ", ".join(self.fileValue(path, tag) or "?" for tag in ("3004,0004", "3004,000a"))
            units = self.fileValue(path, "3004,0002") or "?"
            name = f"{series} [dose {kind}]" if len(doses) == 1 else \
                f"{series} [dose {kind} #{self.fileValue(path, '0020,0013') or doses.index(path) + 1}]"
            warning = "" if units.upper() == "GY" else f"DoseUnits {units}: values are not absolute dose in Gy."
            if not self.fileValue(path, "3004,000e"):
                warning = (warning + " DoseGridScaling is missing: this dose cannot be loaded.").strip()
            loadables.append(DICOMLoadable(
                name=name, files=[path], confidence=CONFIDENCE if not warning.startswith("DoseGridScaling") else 0.0,
                selected=True, warning=warning, tooltip=f"RT Dose grid ({units}, DoseGridScaling applied), "
                f"{self.fileValue(path, '0028,0008') or 1} planes", extra={"kind": "rtdose"}))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """A scalar volume of dose (float32, Gy) with the dose colour table and RT attributes."""
        from DICOMBrowser.DICOMBrowserLib import scene as scenes
        from DICOMBrowser.DICOMBrowserLib.identity import identity_of, read_dataset

        path = loadable.files[0]
        try:
            grid = rt.read_dose(path)
            header = read_dataset(path, stop_before_pixels=True)
        except DICOMBrowserError:
            raise
        except (ValueError, OSError) as error:
            raise LoadError(f"{loadable.name}: cannot read the dose grid of {path}: {error}") from error
        identity = identity_of(header)
        units_text = "Gy" if grid.units.upper() == "GY" else grid.units
        high = float(grid.dose.max()) if grid.dose.size else 1.0
        node = scenes.add_scalar_volume(scene, grid.dose, grid.ijk_to_ras, loadable.name,
                                        series_uid=identity.get("SeriesInstanceUID", ""),
                                        instance_uids=[str(header.get("SOPInstanceUID", ""))],
                                        window_level=(max(high, 1e-6), high / 2), dicom_identity=identity)
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(rt.dose_color_table(scene).GetID())
        for key, value in (("DICOM.RTDose.Units", units_text), ("DICOM.RTDose.DoseType", grid.dose_type),
                           ("DICOM.RTDose.SummationType", grid.summation_type),
                           ("DICOM.RTDose.DoseGridScaling", repr(grid.scaling)),
                           ("DICOM.RTDose.GridFrameOffsetVectorForm", grid.offsets_form),
                           ("DICOM.RTDose.ReferencedRTPlanUIDs", " ".join(grid.referenced_plan_uids))):
            node.SetAttribute(key, value)
        node.SetVoxelValueUnits(_units_code(units_text))
        return node


def _units_code(units: str) -> Any:
    """A vtkCodedEntry for the voxel value units (UCUM 'Gy', or the DICOM text for others)."""
    import slicer

    entry = slicer.vtkCodedEntry()
    if units == "Gy":
        entry.SetValueSchemeMeaning("Gy", "UCUM", "Gray")
    else:
        entry.SetValueSchemeMeaning(units or "1", "UCUM", units or "no units")
    return entry
