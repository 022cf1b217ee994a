"""The PET SUV plugin: a PET series as standardized uptake values (SUVbw by default).

The scalar volume plugin reads PET as activity concentration (Bq/ml); this plugin reuses that
reading (looked up in the registry when it examines, so geometry checks and 4D splitting are
the scalar plugin's) and multiplies it by the SUV factor of DICOMBrowser.DICOMBrowserLib.suv.
SUVbw is the default (0.7, above the scalar reading's 0.6); lean body mass (James,
Janmahasatian), body surface area and ideal body weight SUV are alternatives when the header
has height and sex. When no SUV can be computed the loadable stays offered, unselected, with
the missing attribute in its warning, and loading it refuses with the same message.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from DICOMBrowser.DICOMBrowserLib import suv
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

PET_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1"}
SUV_CONFIDENCE = 0.7
ALTERNATIVE_CONFIDENCE = 0.55
SCALAR_PLUGIN = "DICOMScalarVolumePlugin"
#: UCUM-style units DICOM uses for SUV (CID 85 "SUV" codes, e.g. {SUVbw}g/ml)
UNIT_CODES = {"bw": ("{SUVbw}g/ml", "Standardized Uptake Value body weight"),
              "lbm": ("{SUVlbm}g/ml", "Standardized Uptake Value lean body mass (James)"),
              "lbmJanma": ("{SUVlbm(Janma)}g/ml", "Standardized Uptake Value lean body mass (Janmahasatian)"),
              "bsa": ("{SUVbsa}cm2/ml", "Standardized Uptake Value body surface area"),
              "ibw": ("{SUVibw}g/ml", "Standardized Uptake Value ideal body weight")}


def _scalar_plugin(database: Any) -> Any:
    """The registry's scalar volume plugin (looked up now, not at import: the registry may change)."""
    from DICOMPlugins import allPlugins

    plugin_class = allPlugins().get(SCALAR_PLUGIN)
    if plugin_class is None:
        raise LoadError(f"PET SUV needs the {SCALAR_PLUGIN}, which is not registered")
    return plugin_class(database)


class DICOMPETSUVPlugin(DICOMPlugin):
    """PET image series as SUV volumes, with the factors on the loadable and the node."""

    loadType = "PET SUV"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "units": "0054,1001",
            "decayCorrection": "0054,1102", "acquisitionDate": "0008,0022", "acquisitionTime": "0008,0032",
            "seriesDate": "0008,0021", "seriesTime": "0008,0031", "patientWeight": "0010,1030",
            "patientSize": "0010,1020", "patientSex": "0010,0040"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """SUV loadables for each default reading of a PET series by the scalar plugin."""
        pet = [f for f in files if self.fileValue(f, "0008,0060") == "PT"
               or self.fileValue(f, "0008,0016") in PET_SOP_CLASSES]
        if not pet:
            return []
        scalar = _scalar_plugin(self.database)
        loadables = []
        for base in scalar.examineFiles(pet):
            if not base.selected or base.extra.get("color"):
                continue
            loadables.extend(self._suv_loadables(base))
        return loadables

    def _suv_loadables(self, base: DICOMLoadable) -> list[DICOMLoadable]:
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        path = base.files[0]
        acquisitions = []
        for f in base.files:
            moment = suv.parse_datetime(self.fileValue(f, "0008,0022") or self.fileValue(f, "0008,0021") or None,
                                        self.fileValue(f, "0008,0032") or None)
            if moment is not None and self.fileValue(f, "0008,0032"):
                acquisitions.append(moment)
        scalar_part = {"name": base.name, "files": list(base.files), "extra": dict(base.extra)}
        try:
            factors = suv.suv_factors(read_dataset(path, stop_before_pixels=True), path, acquisitions)
        except DICOMBrowserError as error:
            return [DICOMLoadable(name=f"{base.name} [SUV]", files=list(base.files), confidence=0.0, selected=False,
                                  warning=f"SUV not available: {error}", tooltip="PET SUV (not computable)",
                                  extra={"kind": "suv", "refused": str(error), "scalar": scalar_part})]
        summary = ", ".join(f"{suv.LABELS[k]} {v:.6g}" for k, v in factors.factors.items())
        details = {"factors": factors.factors, "refused": factors.refused, "units": factors.units,
                   "decay_time_s": factors.decay_time_s, "decayed_dose_bq": factors.decayed_dose_bq,
                   "scan_start": factors.scan_start, "injection": factors.injection, "notes": factors.notes}
        loadables = []
        for kind in suv.KINDS:
            if kind not in factors.factors:
                continue
            default = kind == "bw"
            loadables.append(DICOMLoadable(
                name=f"{base.name} [{suv.LABELS[kind]}]", files=list(base.files),
                confidence=SUV_CONFIDENCE if default else ALTERNATIVE_CONFIDENCE, selected=default,
                warning=base.warning,
                tooltip=f"{suv.LABELS[kind]} ({suv.UNITS[kind]}) = {factors.units} value x {factors.factors[kind]:.6g}. "
                        f"Factors: {summary}." + (f" {'; '.join(factors.notes)}." if factors.notes else "")
                        + (f" Not available: {'; '.join(sorted(set(factors.refused.values())))}" if factors.refused else ""),
                extra={"kind": "suv", "suv_kind": kind, "suv": details, "scalar": scalar_part}))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """The scalar reading times the SUV factor, as a float32 volume (or 4D sequence) in SUV units."""
        from DICOMBrowser.DICOMBrowserLib import scene as scenes

        if loadable.extra.get("refused"):
            raise LoadError(f"{loadable.name}: {loadable.extra['refused']}")
        kind = loadable.extra["suv_kind"]
        details = loadable.extra["suv"]
        factor = float(details["factors"][kind])
        part = loadable.extra["scalar"]
        scalar = _scalar_plugin(self.database)
        base = DICOMLoadable(name=part["name"], files=list(part["files"]), plugin=SCALAR_PLUGIN, extra=dict(part["extra"]))
        volume = scalar.read_volume(base)
        voxels = np.asarray(volume.voxels, dtype=np.float32) * np.float32(factor)
        identity = scalar._identity(base.files[0])
        series_uid = identity.get("SeriesInstanceUID", "")
        instance_uids = [volume.file_values.get(f, {}).get("0008,0018", "") for f in base.files]
        if voxels.ndim == 4:
            node = scenes.add_volume_sequence(scene, voxels, volume.ijk_to_ras, loadable.name, series_uid=series_uid,
                                              instance_uids=instance_uids, index_values=base.extra.get("index_values"),
                                              index_name=base.extra.get("index_name", "time"), index_unit="",
                                              dicom_identity=identity)
            target = scenes.sequence_proxy(scene, node) or node
        else:
            node = scenes.add_scalar_volume(scene, voxels, volume.ijk_to_ras, loadable.name, series_uid=series_uid,
                                            instance_uids=instance_uids, dicom_identity=identity)
            target = node
        for item in {node, target}:
            item.SetAttribute("DICOM.PET.SUVType", suv.LABELS[kind])
            item.SetAttribute("DICOM.PET.SUVFactor", repr(factor))
            item.SetAttribute("DICOM.PET.SUVFactors", " ".join(f"{k}={v!r}" for k, v in details["factors"].items()))
            item.SetAttribute("DICOM.PET.Units", details["units"])
            if details.get("decay_time_s") is not None:
                item.SetAttribute("DICOM.PET.DecayTimeSeconds", repr(details["decay_time_s"]))
                item.SetAttribute("DICOM.PET.DecayedDoseBq", repr(details["decayed_dose_bq"]))
        if target.IsA("vtkMRMLScalarVolumeNode"):
            import slicer

            code = slicer.vtkCodedEntry()
            code.SetValueSchemeMeaning(UNIT_CODES[kind][0], "UCUM", UNIT_CODES[kind][1])
            target.SetVoxelValueUnits(code)
            display = target.GetDisplayNode()
            if display is not None:
                display.SetAndObserveColorNodeID("vtkMRMLPETProceduralColorNodePET-Heat")
        return node
