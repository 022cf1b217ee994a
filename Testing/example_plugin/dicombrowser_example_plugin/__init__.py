"""An example DICOMBrowser extension: a deliberately naive "image stack" plugin.

It offers every series with pixel data as a stack of frames in file order, with unit spacing
and no patient geometry, at a low confidence (0.1) so the real scalar volume plugin stays the
default. It shows both ways an extension registers a plugin:

- through the entry point group ``dicombrowser.plugins`` (see this folder's pyproject.toml):
  installed, it is found with no code change;
- in code: importing this module calls ``registerPlugin`` (``register()`` does it again).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from DICOMPlugins import DICOMLoadable, DICOMPlugin, registerPlugin

logger = logging.getLogger(__name__)


class ExampleImageStackPlugin(DICOMPlugin):
    """Frames in file order, unit spacing: a fallback reading that is rarely what a user wants."""

    loadType = "Image stack (example)"
    version = "1"
    tags = {"rows": "0028,0010", "columns": "0028,0011", "seriesDescription": "0008,103e"}

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        images = [path for path in files if self.fileValue(path, self.tags["rows"])]
        if not images:
            return []
        sizes = {(self.fileValue(p, self.tags["rows"]), self.fileValue(p, self.tags["columns"])) for p in images}
        if len(sizes) != 1:
            return []  # frames of different sizes do not stack
        description = self.fileValue(images[0], self.tags["seriesDescription"]) or "series"
        return [DICOMLoadable(name=f"{description} (image stack)", files=images, confidence=0.1,
                              selected=True, tooltip="Frames in file order, unit spacing, no geometry",
                              warning="No patient geometry: voxels are 1 mm cubes in file order")]

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        from DICOMBrowser.DICOMBrowserLib import pixelreader
        from DICOMBrowser.DICOMBrowserLib import scene as scenes

        voxels = pixelreader.read_frames(loadable.files, self.database)
        if voxels.ndim != 3:
            voxels = voxels[..., 0]  # first sample of colour images: this is only an example
        uids = [self.fileValue(p, "0008,0018") for p in loadable.files]
        series_uid = self.fileValue(loadable.files[0], "0020,000e")
        return scenes.add_scalar_volume(scene, np.asarray(voxels), np.diag([-1.0, -1.0, 1.0, 1.0]), loadable.name,
                                        series_uid=series_uid, instance_uids=uids,
                                        dicom_identity={"PatientID": self.fileValue(loadable.files[0], "0010,0020")})


def register() -> None:
    """The in-code route: add the plugin to DICOMBrowser's registry."""
    registerPlugin(ExampleImageStackPlugin)


register()
