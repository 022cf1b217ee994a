"""The segmentation plugin: DICOM SEG (binary, fractional, label map) -> a vtkMRMLSegmentationNode.

Each SEG file is one loadable (confidence 0.95: the file can only be a segmentation), listing
the image series it was drawn on (`referencedSeriesUIDs`, shown by `examine --json`). Loading
reads the object with highdicom (DICOMBrowser.DICOMBrowserLib.segmentation) and, per the
referenced-series setting (DICOMBrowser.DICOMBrowserLib.referenced), also loads those series
from the database, so the segmentation is seen over its image.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from DICOMBrowser.DICOMBrowserLib import referenced, segmentation
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95


class DICOMSegmentationPlugin(DICOMPlugin):
    """DICOM Segmentation objects as segmentation nodes (names, colours, terminology, overlaps kept)."""

    loadType = "Segmentation"
    version = "1"
    tags = {"sopClassUID": "0008,0016", "modality": "0008,0060", "seriesNumber": "0020,0011",
            "seriesDescription": "0008,103e", "numberOfFrames": "0028,0008", "segmentationType": "0062,0001"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """One loadable per SEG file, with the series it references (read from its header)."""
        from DICOMBrowser.DICOMBrowserLib.identity import read_dataset

        loadables = []
        segs = [f for f in files if self.fileValue(f, "0008,0016") in segmentation.SEG_SOP_CLASSES
                or self.fileValue(f, "0008,0060") == "SEG"]
        for path in segs:
            header = read_dataset(path, stop_before_pixels=True)
            series_uids, instance_uids = segmentation.referenced_series(header)
            labels = [str(item.get("SegmentLabel", "")) for item in header.get("SegmentSequence", []) or []
                      if int(item.get("SegmentNumber", 1)) != 0]
            name = self.seriesName(path, "Segmentation")
            if len(segs) > 1:  # several SEG objects in one series: named by file, which tells them apart
                name = f"{name} [{os.path.basename(path)}]"
            present = self._series_present(series_uids)
            tooltip = (f"DICOM SEG ({self.fileValue(path, '0062,0001') or '?'}), {len(labels)} segments: "
                       f"{', '.join(labels)}; references series {', '.join(series_uids) or 'none'}")
            if present is not None:
                tooltip += f" ({'in' if present else 'not in'} the database)"
            loadables.append(DICOMLoadable(
                name=name, files=[path], confidence=CONFIDENCE, selected=True, tooltip=tooltip,
                referencedSeriesUIDs=series_uids, referencedInstanceUIDs=instance_uids,
                extra={"kind": "segmentation", "segments": labels}))
        return loadables

    def _series_present(self, series_uids: list[str]) -> bool | None:
        """Whether every referenced series is in the database (None without a database)."""
        if self.database is None or not series_uids:
            return None
        return all(self.database.files_for_series(uid) for uid in series_uids)

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """The segmentation node (returned), and the referenced image series per the setting."""
        from DICOMBrowser.DICOMBrowserLib.identity import identity_of, read_dataset

        path = loadable.files[0]
        try:
            data = segmentation.read_seg(path)
            header = read_dataset(path, stop_before_pixels=True)
        except DICOMBrowserError:
            raise
        except (ValueError, OSError, KeyError, AttributeError) as error:
            raise LoadError(f"{loadable.name}: cannot read the segmentation {path}: {error}") from error
        identity = identity_of(header)
        volumes = referenced.load_referenced_series(self.database, data.referenced_series_uids, scene, loadable)
        node = segmentation.add_segmentation(scene, data, loadable.name,
                                             series_uid=identity.get("SeriesInstanceUID", ""),
                                             instance_uids=[str(header.get("SOPInstanceUID", ""))],
                                             dicom_identity=identity)
        if volumes:
            node.SetReferenceImageGeometryParameterFromVolumeNode(volumes[0])
            node.SetNodeReferenceID("referenceImageGeometryRef", volumes[0].GetID())
        return node
