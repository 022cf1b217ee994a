"""The RT Structure Set plugin: RTSTRUCT contours -> a segmentation (labelmap + closed surface).

One loadable per structure set file (0.95: the file can only be this), naming its ROIs and the
image series it was drawn on. Loading rasterises every ROI onto the referenced image grid
(DICOMBrowser.DICOMBrowserLib.structureset): the referenced series' headers come from the
database, or, without one, from the structure set's own folder; the series itself is loaded too
when the referenced-series setting says so.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from DICOMBrowser.DICOMBrowserLib import referenced, rt, structureset
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95


class DICOMRTStructureSetPlugin(DICOMPlugin):
    """RT Structure Sets as segmentation nodes, ROI names and colours kept, points as markups."""

    loadType = "RT Structure Set"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "seriesNumber": "0020,0011",
            "seriesDescription": "0008,103e", "structureSetLabel": "3006,0002"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """One loadable per RTSTRUCT file, with its ROI names and referenced series."""
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        loadables = []
        found = [f for f in files if self.fileValue(f, "0008,0016") == rt.RT_STRUCTURE_SET_STORAGE
                 or self.fileValue(f, "0008,0060") == "RTSTRUCT"]
        for path in found:
            structures = structureset.read_structure_set(read_dataset(path), path)
            label = self.fileValue(path, "3006,0002") or structures.label
            description = self.fileValue(path, "0008,103e")
            series = self.seriesName(path, "RTSTRUCT")
            name = f"{series} [{label}]" if label and label != description else series
            if len(found) > 1:
                name = f"{name} #{found.index(path) + 1}"
            rois = [f"{roi.name} ({'points' if not roi.polygons else len(roi.polygons)})" for roi in structures.rois]
            loadables.append(DICOMLoadable(
                name=name, files=[path], confidence=CONFIDENCE, selected=True,
                tooltip=f"RT Structure Set, {len(structures.rois)} ROIs (contours): {', '.join(rois)}; "
                        f"references series {', '.join(structures.referenced_series_uids) or 'none'}",
                referencedSeriesUIDs=structures.referenced_series_uids, extra={"kind": "rtstruct"}))
        return loadables

    def _image_planes(self, series_uids: list[str], near: str) -> list[structureset.ImagePlane]:
        """Planes of the referenced images at hand: from the database, else the structure set's folder."""
        from DICOMBrowser.DICOMBrowserLib import loading
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        files: list[str] = []
        if self.database is not None:
            for uid in series_uids:
                files.extend(self.database.files_for_series(uid))
        else:
            groups = loading.group_files_by_series([os.path.dirname(near)])
            for uid in series_uids:
                files.extend(groups.get(uid, []))
        planes = []
        for path in files:
            try:
                plane = structureset.image_plane(read_dataset(path, stop_before_pixels=True))
            except DICOMBrowserError as error:
                logger.warning("RT Structure Set plugin: %s", error)
                continue
            if plane is not None:
                planes.append(plane)
        return planes

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """The segmentation node of the ROIs (returned); POINT ROIs as a markups node beside it."""
        from DICOMBrowser.DICOMBrowserLib.identity import identity_of, read_dataset

        path = loadable.files[0]
        try:
            dataset = read_dataset(path)
            structures = structureset.read_structure_set(dataset, path)
        except DICOMBrowserError:
            raise
        except (ValueError, AttributeError, KeyError) as error:
            raise LoadError(f"{loadable.name}: cannot read the structure set {path}: {error}") from error
        volumes = referenced.load_referenced_series(self.database, structures.referenced_series_uids, scene, loadable)
        planes = self._image_planes(structures.referenced_series_uids, path)
        if not planes:
            logger.warning("%s: no referenced image at hand; ROIs rasterised on a 1 mm grid over the contours",
                           loadable.name)
        grid = structureset.reference_grid(structures, planes)
        identity = identity_of(dataset)
        node, problems = structureset.add_structure_set(
            scene, structures, grid, loadable.name, series_uid=identity.get("SeriesInstanceUID", ""),
            instance_uids=[str(dataset.get("SOPInstanceUID", ""))], dicom_identity=identity)
        if volumes:
            node.SetNodeReferenceID("referenceImageGeometryRef", volumes[0].GetID())
        return node
