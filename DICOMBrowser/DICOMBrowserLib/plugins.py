"""The plugin contract and the plugin registry: the library's side of DICOM plugins.

As Slicer's DICOMLib holds DICOMPlugin, the library holds the base class, the loadable and the
registry, so nothing in the library needs the plugins package to work; `DICOMPlugins`
re-exports all of it (every existing `from DICOMPlugins import ...` keeps working) and holds the
built-in plugins.

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

The registry (`dicomPlugins`, name -> class) is filled three ways: `registerPlugin` in code;
installed packages' entry points in the group `dicombrowser.plugins` (one class each); and
plugin packages, whose `DICOM*Plugin.py` modules each define a class of the module's name,
declared in the group `dicombrowser.plugin_packages` (this project declares `DICOMPlugins`
there) or by the package itself calling `registerPluginPackage` when imported. A plugin that
cannot be imported is recorded in `unavailablePlugins` with the reason, never fatal.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .database import DICOMDatabase

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
            # dcm2niix's file name suffix of this part of the series ("_e2", "_ph", "_fieldmaphz"; '' if none)
            "suffix": str(self.extra.get("suffix", "") or ""),
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
    @classmethod
    def declaredTags(cls) -> list[str]:
        """The "gggg,eeee" tags of `tags` (Slicer's name -> tag; tag -> name is accepted too)."""
        found = []
        for key, value in cls.tags.items():
            for candidate in (value, key):
                text = str(candidate).strip("()")
                if len(text) == 9 and text[4] == "," and all(c in "0123456789abcdefABCDEF" for c in text[:4] + text[5:]):
                    found.append(text.lower())
                    break
        return found

    def seriesName(self, path: str, default: str) -> str:
        """How a loadable names the series of `path` (see `series_label`)."""
        return series_label(self.fileValue(path, "0020,0011"), self.fileValue(path, "0008,103e"), default)

    def fileValue(self, path: str, tag: str) -> str:
        """The value of `tag` ("gggg,eeee") in `path` as CTK gives it ('' if absent).

        Goes through the database tag cache when there is a database, so a file is parsed at
        most once; without a database (loading a folder directly) through a per-process cache
        filled by the fast header scanner (`prefetch` fills it for many files at once).
        """
        if self.database is not None:
            return self.database.file_value(path, tag)
        from .tagreader import tag_string

        key = tag_string(tag)
        values = _header_values(str(path))
        if values is None or key not in values:
            self.prefetch([str(path)], [key])
            values = _header_values(str(path)) or {}
        return values.get(key, "")

    def prefetch(self, paths: Sequence[str], extra_tags: Sequence[str] = ()) -> None:
        """Read this plugin's `tags`, the common identity tags and `extra_tags` of many files in one
        header scan, so `fileValue` on them needs no further parsing (no-database loading only)."""
        if self.database is not None or not paths:
            return
        from .tagreader import tag_string

        tags = sorted({tag_string(t) for t in (*COMMON_TAGS, *self.declaredTags(), *extra_tags)})
        _scan_into_cache([str(p) for p in paths], tags)


def series_label(number: str, description: str, default: str) -> str:
    """'7: T1 axial' from SeriesNumber and SeriesDescription, else whichever there is, else
    `default`: the one way every plugin names a series in its loadables."""
    return (f"{number}: {description}" if number and description else (description or number or default)).strip()


#: tags every plugin needs when loading (identity, UIDs), fetched with any other
COMMON_TAGS = ("0008,0016", "0008,0018", "0008,0060", "0010,0010", "0010,0020", "0010,0030", "0010,0040",
               "0020,000d", "0020,000e", "0020,0011", "0020,0052", "0008,0020", "0008,0030", "0008,1030",
               "0008,103e", "0020,0010")
#: path -> (size, mtime_ns, values): header values of files read without a database
_HEADER_CACHE: dict[str, tuple[int, int, dict[str, str]]] = {}
_HEADER_CACHE_LIMIT = 200_000


def _header_values(path: str) -> dict[str, str] | None:
    """Cached values of a file, or None when absent or the file changed since it was scanned."""
    import os

    entry = _HEADER_CACHE.get(path)
    if entry is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if (stat.st_size, stat.st_mtime_ns) != entry[:2]:
        del _HEADER_CACHE[path]
        return None
    return entry[2]


def _scan_into_cache(paths: list[str], tags: list[str]) -> None:
    import os

    from .headerscan import scan_files
    from .tagreader import file_value

    if len(_HEADER_CACHE) + len(paths) > _HEADER_CACHE_LIMIT:
        _HEADER_CACHE.clear()  # a crude bound: a long session browsing many folders starts over
    # in-process (workers=1): a plugin must not fork a process that may hold VTK or Qt
    for result in scan_files(paths, tags, workers=1):
        values = dict(result.values) if result.is_dicom and not result.error else {}
        if result.is_dicom and result.error:  # e.g. truncated pixel data: pydicom may still read the header
            for tag in tags:
                try:
                    values[tag] = file_value(result.path, tag)
                except (OSError, ValueError, EOFError) as error:
                    logger.debug("No header values from %s: %s", result.path, error)
                    break
        for tag in tags:
            values.setdefault(tag, "")
        previous = _header_values(result.path)
        if previous is not None:
            previous.update(values)
            continue
        try:
            stat = os.stat(result.path)
        except OSError:
            continue
        _HEADER_CACHE[result.path] = (stat.st_size, stat.st_mtime_ns, values)


# --- the registry ---------------------------------------------------------------------------------
ENTRY_POINT_GROUP = "dicombrowser.plugins"
PACKAGE_ENTRY_POINT_GROUP = "dicombrowser.plugin_packages"

#: name -> plugin class. Any package may add to this dictionary.
dicomPlugins: dict[str, type[DICOMPlugin]] = {}
#: name -> why it could not be registered (missing dependency, import error)
unavailablePlugins: dict[str, str] = {}
#: plugin package (module name) -> (its folder, the plugin modules to load first, in order)
pluginPackages: dict[str, tuple[str, list[str]]] = {}


def registerPlugin(plugin_class: type[DICOMPlugin], name: str | None = None) -> None:
    """Add a plugin class to the registry (under its class name unless `name` is given)."""
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, DICOMPlugin)):
        raise TypeError(f"{plugin_class!r} is not a DICOMPlugin subclass; cannot register it as a DICOM plugin")
    dicomPlugins[name or plugin_class.__name__] = plugin_class


def registerPluginPackage(package: str, folder: str, first: Sequence[str] = ()) -> None:
    """Declare a package whose `DICOM*Plugin.py` modules are plugins (`first`: module names loaded
    before the others, in this order; the registry's order breaks confidence ties)."""
    pluginPackages[package] = (str(folder), list(first))


def _package_modules(package: str) -> dict[str, str]:
    """Plugin name -> module name for one plugin package: the listed ones first, then any other
    `DICOM*Plugin.py` in its folder whose class has the module's name (no edit to add one)."""
    from pathlib import Path

    folder, first = pluginPackages[package]
    modules = {name: f"{package}.{name}" for name in first}
    for path in sorted(Path(folder).glob("DICOM*Plugin.py")):
        if path.stem != "DICOMPlugin" and path.stem not in modules:
            modules[path.stem] = f"{package}.{path.stem}"
    return modules


def _declared_packages() -> None:
    """Import the plugin packages installed packages declare (they register themselves on import)."""
    from importlib import import_module
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=PACKAGE_ENTRY_POINT_GROUP):
        if entry_point.value in pluginPackages:
            continue
        try:
            module = import_module(entry_point.value)
        except Exception as error:  # a broken package must not stop the module
            unavailablePlugins[entry_point.value] = f"{type(error).__name__}: {error}"
            logger.warning("Plugin package %s unavailable: %s", entry_point.value, error)
            continue
        if entry_point.value not in pluginPackages and getattr(module, "__file__", None):
            import os

            registerPluginPackage(entry_point.value, os.path.dirname(module.__file__))


def loadBuiltinPlugins() -> None:
    """Import the plugins of every plugin package; one whose dependency is missing is recorded, not fatal."""
    from importlib import import_module

    _declared_packages()
    for package in list(pluginPackages):
        for name, module_name in _package_modules(package).items():
            if name in dicomPlugins:
                continue
            try:
                module = import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name == module_name:
                    continue  # listed but not written (yet)
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


#: the plugin packages (and their folders) already searched, and whether the installed entry points
#: were read: `allPlugins` runs for every examined series, and reading the installed packages'
#: entry points costs about 8 ms each time (a batch conversion paid it per series and per write)
_discovered: dict[str, Any] = {"packages": None, "entry_points": False}


def allPlugins() -> dict[str, type[DICOMPlugin]]:
    """Plugin-package, entry-point and code-registered plugins, by name.

    Installed packages are searched once per process (and again when a plugin package was
    registered since); plugins registered in code are always included. `rescanPlugins()` reads
    the installed packages again (a package installed while the process runs)."""
    if not _discovered["entry_points"] or _discovered["packages"] != dict(pluginPackages):
        loadBuiltinPlugins()
        loadEntryPointPlugins()
        _discovered["entry_points"] = True
        _discovered["packages"] = dict(pluginPackages)
    return dict(dicomPlugins)


def rescanPlugins() -> dict[str, type[DICOMPlugin]]:
    """Search the installed packages and plugin folders again, then return `allPlugins()`."""
    _discovered["entry_points"] = False
    return allPlugins()
