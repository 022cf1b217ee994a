"""A scene stored in DICOM (3D Slicer's "data bundle"): the .mrb carried in private (CADB,xxxx)
elements of a Secondary Capture object, restored as the scene it was. Slicer's objects and
ours (`dicombrowser export-scene`) use the same elements, so each loads the other's."""
from __future__ import annotations

from typing import Any

from .DICOMPlugin import DICOMLoadable, DICOMPlugin


class DICOMSlicerDataBundlePlugin(DICOMPlugin):
    """Offers each file that carries a scene bundle as a loadable that restores the scene."""

    loadType = "Slicer Data Bundle"
    version = "1"
    tags = {"seriesDescription": "0008,103e", "candygram": "cadb,0010", "zipSize": "cadb,1008"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        loadables = []
        for path in files:
            creator = self.fileValue(path, self.tags["candygram"])
            if not creator.startswith("3D Slicer"):
                continue
            description = self.fileValue(path, self.tags["seriesDescription"]) or "Slicer Data Bundle"
            size = self.fileValue(path, self.tags["zipSize"])
            loadables.append(DICOMLoadable(
                name=description, files=[path], tooltip=f"a saved 3D Slicer scene ({size} bytes)",
                confidence=0.95, selected=True, plugin="DICOMSlicerDataBundlePlugin"))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """Add the bundled scene's nodes to `scene`; returns the first volume (else the first node)."""
        from DICOMBrowser.DICOMBrowserLib.errors import LoadError
        from DICOMBrowser.DICOMBrowserLib.export.bundle import bundle_from_file, import_bundle

        path = loadable.files[0]
        data = bundle_from_file(path)
        if data is None:
            raise LoadError(f"{path}: carries no 3D Slicer scene bundle (CADB,1010)")
        nodes = import_bundle(scene, data, path)
        if not nodes:
            raise LoadError(f"{path}: the bundled scene holds no data nodes")
        volumes = [n for n in nodes if n.IsA("vtkMRMLVolumeNode") or n.IsA("vtkMRMLSequenceNode")]
        return (volumes or nodes)[0]
