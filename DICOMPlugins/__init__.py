"""The built-in DICOM plugins, and the plugin registry re-exported from the library.

The registry (`dicomPlugins`, `registerPlugin`, `allPlugins`, ...) and the base class live in
`DICOMBrowser.DICOMBrowserLib.plugins`; this package re-exports them, so every existing import
(`from DICOMPlugins import registerPlugin, DICOMPlugin, dicomPlugins`) keeps working and names
the same objects. Extensions add plugins in one of two ways:

1. In code, at import time::

       from DICOMPlugins import registerPlugin
       registerPlugin(MyPlugin)          # or: DICOMPlugins.dicomPlugins["MyPlugin"] = MyPlugin

2. Without code changes, through the entry point group ``dicombrowser.plugins`` in the
   extension's pyproject.toml::

       [project.entry-points."dicombrowser.plugins"]
       MyPlugin = "my_extension.plugin:MyPlugin"

   `allPlugins()` (called by the loading logic) imports them the first time in a process
   (`rescanPlugins()` searches again, for a package installed while the process runs); one that
   fails to import is recorded in `unavailablePlugins` with the reason, never fatal.

This package declares itself a plugin package (pyproject's ``dicombrowser.plugin_packages``
group, and `registerPluginPackage` on import): every `DICOM*Plugin.py` here is found by the
library without editing this file; `_BUILTIN_PLUGINS` come first (their order breaks
confidence ties).
"""
from __future__ import annotations

from pathlib import Path

from DICOMBrowser.DICOMBrowserLib.plugins import (
    ENTRY_POINT_GROUP,
    allPlugins,
    dicomPlugins,
    loadBuiltinPlugins,
    loadEntryPointPlugins,
    registerPlugin,
    registerPluginPackage,
    rescanPlugins,
    unavailablePlugins,
)

# Through the submodule, as before the move: importing `DICOMPlugins.DICOMPlugin` binds the
# package attribute `DICOMPlugin` to the submodule, and this line binds it back to the class.
from .DICOMPlugin import DICOMLoadable, DICOMPlugin  # noqa: E402

# Built-in plugins loaded first, in this order; the others in the folder follow by name.
_BUILTIN_PLUGINS: dict[str, str] = {
    "DICOMScalarVolumePlugin": "DICOMPlugins.DICOMScalarVolumePlugin",
    "DICOMDiffusionVolumePlugin": "DICOMPlugins.DICOMDiffusionVolumePlugin",
}
registerPluginPackage(__name__, str(Path(__file__).parent), list(_BUILTIN_PLUGINS))


def _builtin_modules() -> dict[str, str]:
    """Plugin name -> module of this package's plugins (the listed ones first)."""
    from DICOMBrowser.DICOMBrowserLib.plugins import _package_modules

    return _package_modules(__name__)


__all__ = [
    "DICOMLoadable",
    "DICOMPlugin",
    "ENTRY_POINT_GROUP",
    "dicomPlugins",
    "unavailablePlugins",
    "rescanPlugins",
    "registerPlugin",
    "registerPluginPackage",
    "allPlugins",
    "loadBuiltinPlugins",
    "loadEntryPointPlugins",
]
