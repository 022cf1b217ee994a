"""The PET SUV plugin: a PET series as standardized uptake values (SUVbw by default).

The scalar volume plugin reads PET as activity concentration (Bq/ml); this plugin reuses that
reading (looked up in the registry when it examines, so geometry checks and 4D splitting are
the scalar plugin's) and multiplies it by the SUV factor of DICOMBrowser.DICOMBrowserLib.suv.
SUVbw is the default (0.7, above the scalar reading's 0.6); lean body mass (James,
Janmahasatian), body surface area and ideal body weight SUV are alternatives when the header
has height and sex. When no SUV can be computed the loadable stays offered, unselected, with
the missing attribute in its warning, and loading it refuses with the same message.

A Real World Value Mapping object in the database (modality RWV, same study) whose SUV mapping
covers every image of the series supplies the factor of its kind and the volume's units; the
tooltip, `extra["suv"]["sources"]` and the node's `DICOM.PET.SUVFactorSource` say where each
factor came from. The factors are worked out again when loading, so an object imported after
the series was examined (an examination the database kept) is still used. With DecayCorrection
NONE every image has its own factor (suv.frame_decayed_dose), applied slice by slice.
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
    version = "2"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "units": "0054,1001",
            "decayCorrection": "0054,1102", "acquisitionDate": "0008,0022", "acquisitionTime": "0008,0032",
            "seriesDate": "0008,0021", "seriesTime": "0008,0031", "patientWeight": "0010,1030",
            "patientSize": "0010,1020", "patientSex": "0010,0040", "actualFrameDuration": "0018,1242",
            "sopInstanceUID": "0008,0018", "seriesInstanceUID": "0020,000e", "studyInstanceUID": "0020,000d"}

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

    def _mapping_files(self, study_uid: str) -> list[str]:
        """Files of the RWV series of the study: from the database, or from the folder's scan index
        when a folder is loaded directly (nothing without either)."""
        from DICOMBrowser.DICOMBrowserLib.scanindex import ScanIndex

        if isinstance(self.database, ScanIndex):
            return [path for files in self.database.series().values() for path in files
                    if self.fileValue(path, "0008,0060") == "RWV" and self.fileValue(path, "0020,000d") == study_uid]
        return [path for row in self.database.series(study_uid, Modality="RWV")
                for path in self.database.files_for_series(row["SeriesInstanceUID"])]

    def _value_mappings(self, files: list[str]) -> list[suv.ValueMapping]:
        """SUV mappings of the Real World Value Mapping objects of the series' study (the same
        study: where a mapping object's writer puts it, and where the index finds it cheaply)."""
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        study = self.fileValue(files[0], "0020,000d") if self.database is not None else ""
        if not study:
            return []
        mappings: list[suv.ValueMapping] = []
        for path in self._mapping_files(study):
            if self.fileValue(path, "0008,0016") != suv.REAL_WORLD_VALUE_MAPPING_STORAGE:
                continue
            try:
                found, skipped = suv.read_value_mappings(read_dataset(path, stop_before_pixels=True), path)
            except DICOMBrowserError as error:
                logger.warning("PET SUV: %s", error)
                continue
            for reason in skipped:
                logger.debug("PET SUV: %s", reason)
            mappings.extend(found)
        return mappings

    def suv_factors(self, files: list[str]) -> suv.SUVFactors:
        """The SUV factors of a PET series (its files in load order): computed from the first
        header and every image's acquisition time, then replaced by the mappings of any Real World
        Value Mapping object that covers every image. Raises SUVError when no factor is available."""
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        path = files[0]
        frames: dict[str, tuple] = {}
        for f in files:
            time = self.fileValue(f, "0008,0032") or None
            moment = suv.parse_datetime(self.fileValue(f, "0008,0022") or self.fileValue(f, "0008,0021") or None,
                                        time) if time else None
            duration = self.fileValue(f, "0018,1242")
            try:
                seconds = float(duration) / 1000.0 if duration else None
            except ValueError:
                seconds = None
            frames[f] = (moment, seconds if seconds and seconds > 0 else None)
        acquisitions = [moment for moment, _ in frames.values() if moment is not None]
        header = read_dataset(path, stop_before_pixels=True)
        mappings = self._value_mappings(files)
        try:
            factors = suv.suv_factors(header, path, acquisitions, frames)
        except suv.SUVError as error:
            if not mappings:
                raise
            factors = suv.SUVFactors(units=str(header.get("Units", "") or "").upper(),
                                     refused={kind: str(error) for kind in suv.KINDS})
            refusal = error
        else:
            refusal = None
        suv.apply_value_mappings(factors, mappings, self.fileValue(path, "0020,000e"),
                                 [self.fileValue(f, "0008,0018") for f in files])
        if not factors.factors:
            assert refusal is not None
            raise refusal
        if refusal is not None:
            factors.notes.append(f"not computable from the header: {refusal}")
        return factors

    @staticmethod
    def _details(factors: suv.SUVFactors) -> dict[str, Any]:
        return {"factors": factors.factors, "refused": factors.refused, "units": factors.units,
                "decay_time_s": factors.decay_time_s, "decayed_dose_bq": factors.decayed_dose_bq,
                "scan_start": factors.scan_start, "injection": factors.injection, "notes": factors.notes,
                "sources": factors.sources, "units_codes": {k: list(v) for k, v in factors.units_codes.items()},
                "mapping_uids": factors.mapping_uids, "frame_decayed_dose_bq": factors.frame_decayed_dose_bq}

    def _suv_loadables(self, base: DICOMLoadable) -> list[DICOMLoadable]:
        scalar_part = {"name": base.name, "files": list(base.files), "extra": dict(base.extra)}
        try:
            factors = self.suv_factors(list(base.files))
        except DICOMBrowserError as error:
            return [DICOMLoadable(name=f"{base.name} [SUV]", files=list(base.files), confidence=0.0, selected=False,
                                  warning=f"SUV not available: {error}", tooltip="PET SUV (not computable)",
                                  extra={"kind": "suv", "refused": str(error), "scalar": scalar_part})]
        summary = ", ".join(f"{suv.LABELS[k]} {v:.6g}" for k, v in factors.factors.items())
        details = self._details(factors)
        loadables = []
        for kind in suv.KINDS:
            if kind not in factors.factors:
                continue
            default = kind == "bw"
            units = factors.units_codes.get(kind, (suv.UNITS[kind],))[0]
            loadables.append(DICOMLoadable(
                name=f"{base.name} [{suv.LABELS[kind]}]", files=list(base.files),
                confidence=SUV_CONFIDENCE if default else ALTERNATIVE_CONFIDENCE, selected=default,
                warning=base.warning,
                tooltip=f"{suv.LABELS[kind]} ({units}) = {factors.units} value x {factors.factors[kind]:.6g}, "
                        f"factor {factors.sources.get(kind, suv.SOURCE_COMPUTED)}. Factors: {summary}."
                        + (f" {'; '.join(factors.notes)}." if factors.notes else "")
                        + (f" Not available: {'; '.join(sorted(set(factors.refused.values())))}" if factors.refused else ""),
                extra={"kind": "suv", "suv_kind": kind, "suv": details, "scalar": scalar_part}))
        return loadables

    @staticmethod
    def _slice_scales(factors: suv.SUVFactors, kind: str, base: DICOMLoadable, shape: tuple[int, ...]) -> np.ndarray | None:
        """Per-slice multipliers of the factor (DecayCorrection NONE), shaped to broadcast over the
        voxels; None when every image shares the factor."""
        scales = {path: factors.frame_scale(kind, path) for path in base.files}
        if len(set(scales.values())) <= 1:
            return None
        volumes = base.extra.get("frames")
        if not volumes or base.extra.get("regularize"):
            raise LoadError(f"{base.name}: DecayCorrection NONE gives each image its own SUV factor, which needs the "
                            "images' slice order (a resampled, regularized reading has none)")
        per_slice = np.array([[scales[base.files[int(index)]] for index, _ in volume] for volume in volumes],
                             dtype=np.float64)
        return per_slice.reshape(*shape[:-2], 1, 1)

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """The scalar reading times the SUV factor, as a float32 volume (or 4D sequence) in SUV units."""
        from DICOMBrowser.DICOMBrowserLib import scene as scenes

        part = loadable.extra["scalar"]
        kind = loadable.extra.get("suv_kind", "bw")
        try:  # again: a mapping object imported since the examination (kept by the database) counts
            factors = self.suv_factors(list(part["files"]))
        except DICOMBrowserError as error:
            raise LoadError(f"{loadable.name}: {error}") from error
        if kind not in factors.factors:
            raise LoadError(f"{loadable.name}: {factors.refused.get(kind, suv.LABELS[kind] + ' not available')}")
        details = self._details(factors)
        factor = float(details["factors"][kind])
        source = factors.sources.get(kind, suv.SOURCE_COMPUTED)
        if loadable.extra.get("suv") and loadable.extra["suv"].get("factors", {}).get(kind) != factor:
            logger.info("%s: %s factor now %.6g, %s (examined with %s)", loadable.name, suv.LABELS[kind], factor,
                        source, loadable.extra["suv"]["factors"].get(kind))
        scalar = _scalar_plugin(self.database)
        base = DICOMLoadable(name=part["name"], files=list(part["files"]), plugin=SCALAR_PLUGIN, extra=dict(part["extra"]))
        volume = scalar.read_volume(base)
        voxels = np.asarray(volume.voxels, dtype=np.float32) * np.float32(factor)
        scales = self._slice_scales(factors, kind, base, voxels.shape)
        if scales is not None:
            voxels = (voxels * scales).astype(np.float32)
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
            item.SetAttribute("DICOM.PET.SUVFactorSource", source)
            if kind in factors.mapping_uids:  # as Slicer's RWVM plugin names the mapping object
                item.SetAttribute("DICOM.RWV.instanceUID", factors.mapping_uids[kind])
            if scales is not None:
                item.SetAttribute("DICOM.PET.SUVFactorPerSlice", " ".join(f"{v:.9g}" for v in (factor * scales).ravel()))
            if details.get("decay_time_s") is not None:
                item.SetAttribute("DICOM.PET.DecayTimeSeconds", repr(details["decay_time_s"]))
                item.SetAttribute("DICOM.PET.DecayedDoseBq", repr(details["decayed_dose_bq"]))
        if target.IsA("vtkMRMLScalarVolumeNode"):
            import slicer

            code = slicer.vtkCodedEntry()
            value, scheme, meaning = factors.units_codes.get(kind, (UNIT_CODES[kind][0], "UCUM", UNIT_CODES[kind][1]))
            code.SetValueSchemeMeaning(value, scheme, meaning)
            target.SetVoxelValueUnits(code)
            display = target.GetDisplayNode()
            if display is not None:
                display.SetAndObserveColorNodeID("vtkMRMLPETProceduralColorNodePET-Heat")
        return node
