"""Writing DICOM back: volumes as image series of an existing study, segmentations as DICOM SEG,
scenes as an encapsulated data bundle; de-identification lives in `deidentify`.

Every exporter builds all its data sets in memory and checks them before anything is written
(`ExportError` names the study, series or file), then writes to a folder; `destinations` puts
the written files into the database (all or nothing), a folder, or a configured node.
"""
from __future__ import annotations

from .volume import (ExportResult, VolumeExportOptions, VolumeSource, build_volume_series, export_volume,
                     read_volume_source, volume_from_node)

__all__ = ["ExportResult", "VolumeExportOptions", "VolumeSource", "build_volume_series", "export_volume",
           "read_volume_source", "volume_from_node"]
