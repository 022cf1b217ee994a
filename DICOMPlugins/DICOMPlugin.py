"""The plugin contract, as small as 3D Slicer's (DICOMLib/DICOMPlugin.py), in our own code.

A plugin `examine`s lists of files (one list per series) and returns `DICOMLoadable`s: plain data
saying "these files, read this way, give this object, with this confidence". `load` turns one
loadable into MRML nodes. Export hooks (`examineForExport`, `export`) are filled in by plugins
that can write DICOM.

Confidence (0..1), as a convention shared by all plugins:
  0.0       cannot read these files
  0.1-0.4   can read them, but another interpretation is probably what the user wants
  0.5       a generic reading (e.g. a plain image stack)
  0.6-0.9   a specific reading this plugin is made for
  0.95-1.0  the files can only be this (e.g. a SEG object for the SEG plugin)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

logger = logging.getLogger(__name__)


@dataclass
class DICOMLoadable:
    """One way to interpret a set of files. Plain data; plugins may add fields via `extra`."""

    name: str = "Unknown"
    files: list[str] = field(default_factory=list)  # in load order
    tooltip: str = ""
    confidence: float = 0.5
    selected: bool = False
    warning: str = ""
    referencedInstanceUIDs: list[str] = field(default_factory=list)
    referencedSeriesUIDs: list[str] = field(default_factory=list)
    plugin: str = ""  # registry name of the plugin that produced it
    extra: dict[str, Any] = field(default_factory=dict)  # plugin-private data for load()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DICOMLoadable":
        """Rebuild a loadable from `to_json` output plus `extra` (the examine cache uses this)."""
        return cls(name=data.get("name", "Unknown"), files=list(data.get("files", [])),
                   tooltip=data.get("tooltip", ""), confidence=float(data.get("confidence", 0.5)),
                   selected=bool(data.get("selected", False)), warning=data.get("warning", ""),
                   referencedInstanceUIDs=list(data.get("referencedInstanceUIDs", [])),
                   referencedSeriesUIDs=list(data.get("referencedSeriesUIDs", [])),
                   plugin=data.get("plugin", ""), extra=dict(data.get("extra", {})))

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `dicombrowser examine --json` prints (a contract: keep the keys)."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "confidence": round(float(self.confidence), 4),
            "selected": bool(self.selected),
            "warning": self.warning,
            "tooltip": self.tooltip,
            "files": list(self.files),
            "referencedSeriesUIDs": list(self.referencedSeriesUIDs),
        }


class DICOMPlugin:
    """Base class. Subclasses set `loadType` and implement `examineFiles` and `load`."""

    loadType = "Generic"
    #: bump when examine() output changes, so cached examinations of older versions are not reused
    version = "1"
    #: DICOM tags ("gggg,eeee", lower case) this plugin reads at examine time; the indexer caches
    #: these at import so examining never re-parses a file.
    tags: dict[str, str] = {}

    def __init__(self, database: "DICOMDatabase | None" = None):
        self.database = database

    # --- examine -------------------------------------------------------------------------
    def examine(self, fileLists: Sequence[Sequence[str]]) -> list[DICOMLoadable]:
        """Loadables for each list of files (each list is usually one series)."""
        loadables: list[DICOMLoadable] = []
        for files in fileLists:
            loadables.extend(self.examineFiles(list(files)))
        return loadables

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        raise NotImplementedError

    # --- load ----------------------------------------------------------------------------
    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """Create node(s) for `loadable` in the MRML `scene`; return the main node."""
        raise NotImplementedError

    # --- export (filled in by plugins that write DICOM) ----------------------------------
    def examineForExport(self, node: Any) -> list[Any]:
        return []

    def export(self, exportables: list[Any]) -> str:
        return "Export not implemented by this plugin"

    # --- tag access ----------------------------------------------------------------------
    def fileValue(self, path: str, tag: str) -> str:
        """The value of `tag` ("gggg,eeee") in `path` as CTK gives it ('' if absent).

        Goes through the database tag cache when there is a database, so a file is parsed at
        most once; without a database (loading a folder directly) through a per-process cache.
        """
        if self.database is not None:
            return self.database.file_value(path, tag)
        from DICOMBrowser.DICOMBrowserLib.tagreader import file_value

        return file_value(path, tag)
