"""A scene stored in DICOM (3D Slicer's "data bundle"): the .mrb carried in private (CADB,xxxx)
elements of a Secondary Capture object, restored as the scene it was. Slicer's objects and
ours (`dicombrowser export-scene`) use the same elements, so each loads the other's; what
Slicer writes and reads is in DICOMBrowserLib/export/bundle.py."""
from __future__ import annotations

from typing import Any

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

#: the slice views' models, which are not data (Slicer's plugin skips them too)
_SLICE_MODELS = ("Red Volume Slice", "Yellow Volume Slice", "Green Volume Slice")


class DICOMSlicerDataBundlePlugin(DICOMPlugin):
    """Offers each file that carries a scene bundle as a loadable that restores the scene."""

    loadType = "Slicer Data Bundle"
    version = "1"
    # Slicer's names; the zip itself (cadb,1010) is not declared, so no tag cache holds it
    tags = {"seriesDescription": "0008,103e", "candygram": "cadb,0010", "zipSize": "cadb,1008"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        loadables = []
        for path in files:
            creator = self.fileValue(path, self.tags["candygram"])
            if not creator:  # nearly every file: the export module is imported only for the others
                continue
            from DICOMBrowser.DICOMBrowserLib.export.bundle import CREATOR_PREFIX, bundle_size

            if not creator.startswith(CREATOR_PREFIX):
                continue
            description = self.fileValue(path, self.tags["seriesDescription"]) or "Slicer Data Bundle"
            size = bundle_size(creator, self.fileValue(path, self.tags["zipSize"]))
            loadables.append(DICOMLoadable(
                name=description, files=[path], tooltip=f"a saved 3D Slicer scene ({size} bytes)",
                confidence=0.95, selected=True, plugin="DICOMSlicerDataBundlePlugin"))
        return loadables

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """Add the bundled scene's nodes to `scene`; returns the node that stands for the series,
        chosen as Slicer's plugin does (a scalar volume, else a model, else markups, else the
        first data node), placed in the subject hierarchy under the object's patient and study."""
        from DICOMBrowser.DICOMBrowserLib.errors import LoadError
        from DICOMBrowser.DICOMBrowserLib.export.bundle import bundle_from_file, import_bundle
        from DICOMBrowser.DICOMBrowserLib.identity import identity_of, read_dataset
        from DICOMBrowser.DICOMBrowserLib.scene import add_to_subject_hierarchy

        path = loadable.files[0]
        data = bundle_from_file(path)
        if data is None:
            raise LoadError(f"{path}: carries no 3D Slicer scene bundle (CADB,1010)")
        nodes = import_bundle(scene, data, path)
        if not nodes:
            raise LoadError(f"{path}: the bundled scene holds no data nodes")
        candidates = ([n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode")]
                      + [n for n in nodes if n.IsA("vtkMRMLModelNode") and n.GetName() not in _SLICE_MODELS]
                      + [n for n in nodes if n.IsA("vtkMRMLMarkupsNode")]
                      + [n for n in nodes if n.IsA("vtkMRMLVolumeNode") or n.IsA("vtkMRMLSequenceNode")])
        main = (candidates or nodes)[0]
        identity = identity_of(read_dataset(path, stop_before_pixels=True))
        if identity.get("SeriesInstanceUID"):
            add_to_subject_hierarchy(scene, main, identity["SeriesInstanceUID"], identity)
        return main
