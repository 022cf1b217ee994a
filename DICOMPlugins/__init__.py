"""The plugin registry: a module-level dictionary of plugin classes by name.

Extensions add to it in one of two ways:

1. In code, at import time::

       from DICOMPlugins import registerPlugin
       registerPlugin(MyPlugin)          # or: DICOMPlugins.dicomPlugins["MyPlugin"] = MyPlugin

2. Without code changes, through the entry point group ``dicombrowser.plugins`` in the
   extension's pyproject.toml::

       [project.entry-points."dicombrowser.plugins"]
       MyPlugin = "my_extension.plugin:MyPlugin"

   `loadEntryPointPlugins()` (called by the loading logic) imports them; one that fails to import
   is recorded in `unavailablePlugins` with the reason, never fatal.
"""
from __future__ import annotations

import logging
from importlib import import_module

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dicombrowser.plugins"

#: name -> plugin class. Any package may add to this dictionary.
dicomPlugins: dict[str, type[DICOMPlugin]] = {}
#: name -> why it could not be registered (missing dependency, import error)
unavailablePlugins: dict[str, str] = {}

# Built-in plugins, imported lazily so a missing optional dependency of one never hides the others.
_BUILTIN_PLUGINS: dict[str, str] = {
    "DICOMScalarVolumePlugin": "DICOMPlugins.DICOMScalarVolumePlugin",
    "DICOMDiffusionVolumePlugin": "DICOMPlugins.DICOMDiffusionVolumePlugin",
}


def registerPlugin(plugin_class: type[DICOMPlugin], name: str | None = None) -> None:
    """Add a plugin class to the registry (under its class name unless `name` is given)."""
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, DICOMPlugin)):
        raise TypeError(f"{plugin_class!r} is not a DICOMPlugin subclass; cannot register it as a DICOM plugin")
    dicomPlugins[name or plugin_class.__name__] = plugin_class


def _builtin_modules() -> dict[str, str]:
    """The listed built-ins first (their order breaks confidence ties), then any other
    `DICOMPlugins/DICOM*Plugin.py` whose class has the module's name, so a new built-in plugin
    needs no edit here."""
    from pathlib import Path

    modules = dict(_BUILTIN_PLUGINS)
    for path in sorted(Path(__file__).parent.glob("DICOM*Plugin.py")):
        if path.stem != "DICOMPlugin" and path.stem not in modules:
            modules[path.stem] = f"{__name__}.{path.stem}"
    return modules


def loadBuiltinPlugins() -> None:
    """Import the built-in plugins; one whose dependency is missing is recorded, not fatal."""
    for name, module_name in _builtin_modules().items():
        if name in dicomPlugins:
            continue
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # not written yet
            unavailablePlugins[name] = f"missing dependency: {error.name}"
            logger.warning("Plugin %s unavailable: %s", name, unavailablePlugins[name])
            continue
        except Exception as error:  # a broken plugin module must not hide the others
            unavailablePlugins[name] = f"{type(error).__name__}: {error}"
            logger.exception("Plugin %s could not be imported", name)
            continue
        plugin_class = getattr(module, name, None)
        if plugin_class is None:
            unavailablePlugins[name] = f"module {module_name} defines no class {name}"
            logger.warning("Plugin %s unavailable: %s", name, unavailablePlugins[name])
            continue
        unavailablePlugins.pop(name, None)
        dicomPlugins[name] = plugin_class


def loadEntryPointPlugins() -> None:
    """Import the plugins that installed packages declare in the `dicombrowser.plugins` group."""
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in dicomPlugins:
            continue
        try:
            dicomPlugins[entry_point.name] = entry_point.load()
        except Exception as error:  # an extension's bug must not stop the module
            unavailablePlugins[entry_point.name] = f"{type(error).__name__}: {error}"
            logger.warning("Plugin %s from entry point unavailable: %s", entry_point.name, error)


def allPlugins() -> dict[str, type[DICOMPlugin]]:
    """Built-in, entry-point and code-registered plugins, by name."""
    loadBuiltinPlugins()
    loadEntryPointPlugins()
    return dict(dicomPlugins)


__all__ = [
    "DICOMLoadable",
    "DICOMPlugin",
    "dicomPlugins",
    "unavailablePlugins",
    "registerPlugin",
    "allPlugins",
    "loadBuiltinPlugins",
    "loadEntryPointPlugins",
]
