"""The plugin contract, re-exported: the base class and the loadable live in the library
(`DICOMBrowser.DICOMBrowserLib.plugins`, as Slicer's DICOMLib holds DICOMPlugin), so the library
never needs this package; `from DICOMPlugins.DICOMPlugin import DICOMPlugin` keeps working."""
from __future__ import annotations

from DICOMBrowser.DICOMBrowserLib.plugins import (  # noqa: F401  (re-exported)
    _HEADER_CACHE,
    _HEADER_CACHE_LIMIT,
    COMMON_TAGS,
    DICOMLoadable,
    DICOMPlugin,
    _header_values,
    _scan_into_cache,
)

__all__ = ["DICOMLoadable", "DICOMPlugin", "COMMON_TAGS"]
