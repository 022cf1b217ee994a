"""The parametric map plugin: Parametric Map objects -> scalar volumes in their real-world units.

The scalar volume plugin skips these objects (their values mean nothing without the Real World
Value Mapping); this plugin (0.95: the file can only be this) reads them with highdicom through
DICOMBrowser.DICOMBrowserLib.parametricmap and labels the node with the mapping's units.
"""
from __future__ import annotations

from typing import Any

from DICOMBrowser.DICOMBrowserLib import parametricmap
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

CONFIDENCE = 0.95


class DICOMParametricMapPlugin(DICOMPlugin):
    """Parametric maps (ADC, Ktrans, T1 maps, ...) as scalar volumes in their units."""

    loadType = "Parametric Map"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "seriesNumber": "0020,0011", "seriesDescription": "0008,103e",
            "numberOfFrames": "0028,0008", "contentLabel": "0070,0080"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """One loadable per Parametric Map file."""
        maps = [f for f in files if self.fileValue(f, "0008,0016") == parametricmap.PARAMETRIC_MAP_STORAGE]
        loadables = []
        for path in maps:
            number, description = self.fileValue(path, "0020,0011"), self.fileValue(path, "0008,103e")
            name = f"{number}: {description}" if number and description else (
                description or self.fileValue(path, "0070,0080") or number or "Parametric map")
            if len(maps) > 1:
                name = f"{name} #{maps.index(path) + 1}"
            loadables.append(DICOMLoadable(
                name=name, files=[path], confidence=CONFIDENCE, selected=True,
                tooltip=f"Parametric map, {self.fileValue(path, '0028,0008') or 1} frames, values in the units of "
                        "its Real World Value Mapping", extra={"kind": "parametric_map"}))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """A float32 scalar volume whose voxel value units are the mapping's."""
        import slicer

        from DICOMBrowser.DICOMBrowserLib import scene as scenes
        from DICOMBrowser.DICOMBrowserLib.identity import identity_of, read_dataset

        path = loadable.files[0]
        try:
            quantity = parametricmap.read_parametric_map(path)
            header = read_dataset(path, stop_before_pixels=True)
        except DICOMBrowserError:
            raise
        except (ValueError, OSError) as error:
            raise LoadError(f"{loadable.name}: cannot read {path}: {error}") from error
        identity = identity_of(header)
        node = scenes.add_scalar_volume(scene, quantity.values, quantity.ijk_to_ras, loadable.name,
                                        series_uid=identity.get("SeriesInstanceUID", ""),
                                        instance_uids=[str(header.get("SOPInstanceUID", ""))], dicom_identity=identity)
        code = slicer.vtkCodedEntry()
        code.SetValueSchemeMeaning(quantity.units_code, "UCUM", quantity.units_meaning)
        node.SetVoxelValueUnits(code)
        node.SetAttribute("DICOM.units", quantity.units_code)
        node.SetAttribute("DICOM.quantity", quantity.quantity)
        return node
