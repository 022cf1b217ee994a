"""Examining a selection of series with every plugin, choosing defaults, and loading.

As in Slicer's DICOMUtils (getLoadablesFromFileLists / selectHighestConfidenceLoadables), but
GUI-free: each plugin examines each series in isolation (one that raises is logged, reported
in `ExamineReport.errors` and skipped), results are cached per plugin version and series
fingerprint in the database's value cache, and selection is a separate step: when loadables of
different plugins share files, only the highest-confidence default stays selected.

"Load without the database": `group_files_by_series` expands folders and groups files by
SeriesInstanceUID with the header scanner, so the same plugins run on a folder or file list.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .errors import LoadError, NotFoundError
from .plugins import DICOMLoadable, DICOMPlugin, allPlugins

logger = logging.getLogger(__name__)

#: progress(done, total, message) -> truthy to cancel
Progress = Callable[[int, int, str], Any]
CACHE_PREFIX = "examine"
SERIES_TAG = "0020,000e"


@dataclass
class ExamineReport:
    """Loadables of an examination and the plugins that failed on it."""

    loadables: list[DICOMLoadable] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (plugin name, reason)
    cached: int = 0  # (plugin, series) examinations served from the cache
    cancelled: bool = False
    #: the plugin objects that examined, by name: loading through them reuses what they read
    plugins: dict[str, DICOMPlugin] = field(default_factory=dict, repr=False)
    #: for each loadable (by position in `loadables`), the index of the file list (series) it came from
    series_index: list[int] = field(default_factory=list, repr=False)


def resolve_plugins(plugins: Iterable[str | type[DICOMPlugin]] | None = None) -> dict[str, type[DICOMPlugin]]:
    """Plugin classes by name: all registered ones, or those named/given."""
    registry = allPlugins()
    if plugins is None:
        return registry
    chosen: dict[str, type[DICOMPlugin]] = {}
    for plugin in plugins:
        if isinstance(plugin, str):
            if plugin not in registry:
                raise NotFoundError(f"no DICOM plugin named {plugin!r} (known: {', '.join(sorted(registry))})")
            chosen[plugin] = registry[plugin]
        else:
            name = next((n for n, c in registry.items() if c is plugin), plugin.__name__)
            chosen[name] = plugin
    return chosen


def files_fingerprint(files: Sequence[str]) -> str:
    """A digest of the paths, sizes and modification times of a series' files.

    Any file added, removed, replaced or touched changes it, so a stale examination is never reused.
    """
    digest = hashlib.sha1()
    for path in files:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{path}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def cache_key(plugin_name: str, plugin_class: type[DICOMPlugin], files: Sequence[str]) -> str:
    version = getattr(plugin_class, "version", "1")
    return f"{CACHE_PREFIX}:{plugin_name}:{version}:{files_fingerprint(files)}"


def _to_cache(loadables: list[DICOMLoadable]) -> str | None:
    try:
        return json.dumps([dataclasses.asdict(loadable) for loadable in loadables])
    except (TypeError, ValueError):
        return None  # plugin-private data that is not JSON: examine again next time


def _from_cache(text: str) -> list[DICOMLoadable] | None:
    try:
        return [DICOMLoadable(**item) for item in json.loads(text)]
    except (TypeError, ValueError) as error:
        logger.debug("Ignoring unreadable examine cache entry: %s", error)
        return None


def examine(database: Any, file_lists: Sequence[Sequence[str]],
            plugins: Iterable[str | type[DICOMPlugin]] | None = None,
            progress: Progress | None = None, use_cache: bool = True) -> ExamineReport:
    """Every plugin examines every file list; loadables collected, defaults selected."""
    report = ExamineReport()
    chosen = resolve_plugins(plugins)
    file_lists = [[str(f) for f in files] for files in file_lists if files]
    total = len(chosen) * len(file_lists)
    done = 0
    for plugin_name, plugin_class in chosen.items():
        try:
            plugin = plugin_class(database)
        except Exception as error:  # an extension's bug must not stop the others
            logger.exception("DICOM plugin %s could not be created", plugin_name)
            report.errors.append((plugin_name, f"{type(error).__name__}: {error}"))
            done += len(file_lists)
            continue
        report.plugins[plugin_name] = plugin
        for list_index, files in enumerate(file_lists):
            if progress is not None and progress(done, total, f"{plugin_name}: {Path(files[0]).parent}"):
                report.cancelled = True
                return _finish(report)
            done += 1
            key = cache_key(plugin_name, plugin_class, files) if (database is not None and use_cache) else None
            if key is not None:
                text = database.cached_value(key)
                cached = _from_cache(text) if text else None
                if cached is not None:
                    report.loadables.extend(cached)
                    report.series_index.extend([list_index] * len(cached))
                    report.cached += 1
                    continue
            try:
                found = plugin.examine([files])
            except Exception as error:  # reported and skipped, as in Slicer: one plugin must not hide the others
                logger.exception("DICOM plugin %s failed to examine %d files in %s", plugin_name, len(files),
                                 Path(files[0]).parent)
                report.errors.append((plugin_name, f"{type(error).__name__}: {error} (files in {Path(files[0]).parent})"))
                continue
            for loadable in found:
                loadable.plugin = plugin_name  # the registry name loads it, whatever the class calls itself
            if key is not None:
                text = _to_cache(found)
                if text is not None:
                    database.store_cached_value(key, text)
            report.loadables.extend(found)
            report.series_index.extend([list_index] * len(found))
    if progress is not None:
        progress(total, total, "done")
    return _finish(report)


def _finish(report: ExamineReport) -> ExamineReport:
    select_highest_confidence(report.loadables)
    select_one_per_series(report.loadables, report.series_index)
    return report


def select_one_per_series(loadables: list[DICOMLoadable], series_index: Sequence[int]) -> None:
    """Every series with something to load gets a default: where no loadable of a series is
    selected (every reading scored low, e.g. a series of localizers only), its most confident
    loadable above 0 is (the first on a tie). Series that have a default are left alone, so a
    localizer never joins the main volume of its series."""
    best: dict[int, DICOMLoadable] = {}
    chosen: set[int] = set()
    for loadable, index in zip(loadables, series_index):
        if loadable.selected:
            chosen.add(index)
        elif loadable.confidence > 0 and (index not in best or loadable.confidence > best[index].confidence):
            best[index] = loadable
    for index, loadable in best.items():
        if index not in chosen:
            loadable.selected = True
            logger.debug("%s (%s, %.2f) selected: the best reading of its series", loadable.name, loadable.plugin,
                         loadable.confidence)


def examine_series(database: Any, file_lists: Sequence[Sequence[str]],
                   plugins: Iterable[str | type[DICOMPlugin]] | None = None,
                   progress: Progress | None = None) -> list[DICOMLoadable]:
    """Loadables of every plugin for the file lists, default choices selected (see CONTRACTS.md)."""
    return examine(database, file_lists, plugins, progress).loadables


def select_highest_confidence(loadables: list[DICOMLoadable]) -> None:
    """Where plugins claim the same files, keep only the highest-confidence default selected.

    Each plugin chooses its own defaults (`selected`); across plugins a selected loadable is
    deselected when a selected loadable of another plugin shares a file and has a higher
    confidence (ties go to the plugin examined first). The others stay available.
    """
    selected = [loadable for loadable in loadables if loadable.selected]
    by_file: dict[str, list[DICOMLoadable]] = {}
    for loadable in selected:
        for path in loadable.files:
            by_file.setdefault(path, []).append(loadable)
    order = {id(loadable): index for index, loadable in enumerate(loadables)}
    for loadable in selected:
        rivals = {id(other): other for path in loadable.files for other in by_file.get(path, ())
                  if other.plugin != loadable.plugin}
        for other in rivals.values():
            if other.confidence > loadable.confidence or (
                    other.confidence == loadable.confidence and order[id(other)] < order[id(loadable)]):
                loadable.selected = False
                logger.debug("%s (%s, %.2f) deselected in favour of %s (%s, %.2f)", loadable.name, loadable.plugin,
                             loadable.confidence, other.name, other.plugin, other.confidence)
                break


def load_loadables(loadables: Sequence[DICOMLoadable], scene: Any, database: Any = None,
                   report: ExamineReport | None = None) -> list[Any]:
    """Each loadable through its plugin's `load`; returns the nodes in order. Raises LoadError.

    With the `report` of the examination, the plugin objects that examined load too, so headers
    they read without a database are not read again (load soon after examining).
    """
    registry = allPlugins()
    nodes = []
    for loadable in loadables:
        plugin = report.plugins.get(loadable.plugin) if report is not None else None
        if plugin is None or plugin.database is not database:
            plugin_class = registry.get(loadable.plugin) or (type(plugin) if plugin is not None else None)
            if plugin_class is None:
                raise LoadError(f"loadable {loadable.name!r}: plugin {loadable.plugin!r} is not registered")
            plugin = plugin_class(database)
        plugin.prefetch(loadable.files)  # without a database: one header scan, not one parse per file
        try:
            node = plugin.load(loadable, scene)
        except LoadError:
            raise
        except Exception as error:
            logger.exception("Plugin %s failed to load %s", loadable.plugin, loadable.name)
            raise LoadError(f"plugin {loadable.plugin} could not load {loadable.name!r} "
                            f"({len(loadable.files)} files in {Path(loadable.files[0]).parent if loadable.files else '?'}): "
                            f"{type(error).__name__}: {error}") from error
        if node is None:
            raise LoadError(f"plugin {loadable.plugin} returned no node for {loadable.name!r}")
        nodes.append(node)
    return nodes


# --- load without the database ----------------------------------------------------------------
def expand_paths(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Files under the given files/folders (recursively), sorted, hidden files skipped."""
    found: list[str] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, name) for name in sorted(names) if not name.startswith("."))
        elif path.is_file():
            found.append(str(path))
        else:
            raise NotFoundError(f"{path}: no such file or folder")
    return found


def group_files_by_series(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """SeriesInstanceUID -> files, for files and folders given directly (non-DICOM files skipped)."""
    from .headerscan import scan_files
    from .scanindex import SOP_INSTANCE_TAG, group_by_series

    files = expand_paths(paths)
    # a process pool forks this process: not once Qt (threads, a display connection) is loaded
    workers = 1 if "PySide6" in sys.modules else None
    usable = []
    for result in scan_files(files, [SERIES_TAG, SOP_INSTANCE_TAG], workers=workers):
        if not result.is_dicom or result.error:
            if result.error:
                logger.warning("Skipping %s: %s", result.path, result.error)
            continue
        usable.append((str(result.path), result.values.get(SERIES_TAG, ""), result.values.get(SOP_INSTANCE_TAG, "")))
    groups, skipped = group_by_series(usable)
    for path, why in skipped:
        if why == "no SeriesInstanceUID":
            logger.warning("Skipping %s: no SeriesInstanceUID", path)
    return groups


def file_lists_for(database: Any, targets: Sequence[str]) -> list[list[str]]:
    """File lists (one per series) for UIDs in the database or paths on disk, in the order given.

    A target that exists on disk is read without the database; otherwise it is a UID of any
    level (patient key, study, series, instance) looked up in the database.
    """
    lists: list[list[str]] = []
    paths = [t for t in targets if os.path.exists(t)]
    uids = [t for t in targets if not os.path.exists(t)]
    if paths:
        lists.extend(group_files_by_series(paths).values())
    if uids:
        if database is None:
            raise NotFoundError(f"{uids[0]}: not a file or folder, and no database to look a UID up in")
        for uid in uids:
            series_uids = database.series_for_uid(uid)
            if not series_uids:
                raise NotFoundError(f"{uid}: no such UID in the database {database.folder}")
            lists.extend(database.files_for_series(series_uid) for series_uid in series_uids)
    return [files for files in lists if files]
