"""The RT Plan plugin: an RT (Ion) Plan recognised and shown as what it says.

A plan has no image: loading gives a table node of its beams (type, radiation, machine, energy,
angles, isocentre, meterset), the plan's label, fractions and prescriptions (dose references)
as node attributes, and its isocentres as markups points. Confidence 0.95: the file can only be this.
"""
from __future__ import annotations

import json
from typing import Any

from DICOMBrowser.DICOMBrowserLib import rt
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

CONFIDENCE = 0.95


class DICOMRTPlanPlugin(DICOMPlugin):
    """RT Plans as a beam table, prescription metadata and isocentre points."""

    loadType = "RT Plan"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "seriesNumber": "0020,0011",
            "seriesDescription": "0008,103e", "planLabel": "300a,0002", "planName": "300a,0003"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """One loadable per RT Plan file."""
        plans = [f for f in files if self.fileValue(f, "0008,0016") in (rt.RT_PLAN_STORAGE, rt.RT_ION_PLAN_STORAGE)
                 or self.fileValue(f, "0008,0060") == "RTPLAN"]
        loadables = []
        for path in plans:
            label = self.fileValue(path, "300a,0002") or self.fileValue(path, "300a,0003")
            series = self.seriesName(path, "RT Plan")
            name = f"{series} [plan {label}]" if label else f"{series} [plan]"
            if len(plans) > 1:
                name = f"{name} #{plans.index(path) + 1}"
            loadables.append(DICOMLoadable(name=name, files=[path], confidence=CONFIDENCE, selected=True,
                                           tooltip="RT Plan: beams, isocentres and prescription (no image)",
                                           extra={"kind": "rtplan"}))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """The beam table (returned) with the plan as attributes; isocentres as a markups node."""
        from DICOMBrowser.DICOMBrowserLib import tables
        from DICOMBrowser.DICOMBrowserLib.geometry import LPS_TO_RAS
        from DICOMBrowser.DICOMBrowserLib.identity import identity_of, read_dataset

        path = loadable.files[0]
        try:
            dataset = read_dataset(path)
            plan = rt.read_plan(dataset, path)
        except DICOMBrowserError:
            raise
        except (ValueError, AttributeError, KeyError, TypeError) as error:
            raise LoadError(f"{loadable.name}: cannot read the plan {path}: {error}") from error
        identity = identity_of(dataset)
        attributes = {f"DICOM.RTPlan.{key}": value for key, value in plan.fields.items() if value}
        attributes["DICOM.RTPlan.Prescriptions"] = json.dumps(plan.prescriptions)
        attributes["DICOM.seriesInstanceUID"] = identity.get("SeriesInstanceUID", "")
        attributes["DICOM.instanceUIDs"] = str(dataset.get("SOPInstanceUID", ""))
        node = tables.add_table(scene, loadable.name, plan.beams, attributes=attributes)
        if plan.isocenters:
            markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode",
                                              scene.GenerateUniqueName(f"{loadable.name} isocenters"))
            for names, position in plan.isocenters:
                ras = LPS_TO_RAS[:3, :3] @ position
                index = markups.AddControlPoint(float(ras[0]), float(ras[1]), float(ras[2]))
                markups.SetNthControlPointLabel(index, f"Isocenter ({names})")
            markups.SetAttribute("DICOM.seriesInstanceUID", identity.get("SeriesInstanceUID", ""))
            node.SetNodeReferenceID("isocenters", markups.GetID())
        return node
