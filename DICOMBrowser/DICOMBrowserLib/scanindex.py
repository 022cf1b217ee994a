"""An in-memory index of one header scan, answering the calls plugins make on a database.

Why: converting a folder without a database (as dcm2niix does) used to scan each file once per
plugin (grouping, the scalar plugin, the diffusion plan, every `fileValue` of other plugins), which
cost more than reading the pixels. `ScanIndex.build` scans every file once, in parallel, for the
union of the tags every registered plugin declares (plus the pixel module and the sidecar tags),
and then serves `file_values`, `file_value`, `instances` (pixel data offsets) and the series
grouping from memory, so examine and load read no header twice. A tag nobody declared is scanned
on demand for the files asked about, then kept.

It is not a database: nothing is written, the examine cache is off (`cached_value` is None).
"""
from __future__ import annotations

import logging
import operator
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .headerscan import ScanRow, scan_files, scan_rows
from .tagreader import tag_string

logger = logging.getLogger(__name__)

SERIES_TAG = "0020,000e"
SOP_INSTANCE_TAG = "0008,0018"


@dataclass
class _Entry:
    values: list[str]  # the build's scan, in the index's column order (a dict per file cost more than its scan)
    transfer_syntax: str
    offset: int | None
    length: int | None
    later: dict[str, str] | None = None  # tags scanned after the build, for a file_values that asked for them


def plugin_tags(extra: Iterable[str] = ()) -> list[str]:
    """Every tag the registered plugins declare, the common identity tags, the pixel module, the
    diffusion plan's scan tags and `extra`, as "gggg,eeee"."""
    from .plugins import COMMON_TAGS, allPlugins
    from .diffusion.series import SCAN_TAGS
    from .pixelreader import PIXEL_TAGS

    tags: set[str] = set(COMMON_TAGS) | set(SCAN_TAGS) | set(PIXEL_TAGS) | {SERIES_TAG, SOP_INSTANCE_TAG}
    for plugin_class in allPlugins().values():
        try:
            tags.update(plugin_class.declaredTags())
        except Exception as error:  # an extension's odd `tags` must not stop a conversion
            logger.warning("Ignoring the tags of plugin %s: %s", plugin_class.__name__, error)
    tags.update(tag_string(t) for t in extra)
    return sorted(tags)


def group_by_series(files: Iterable[tuple[str, str, str]]) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """(series UID -> paths in the order given, skipped (path, why)) from (path, SeriesInstanceUID,
    SOPInstanceUID) triples.

    A file without a SeriesInstanceUID is skipped. So is a second file of an instance already
    seen in its series (same SOPInstanceUID): folders copied into one another, or a DICOMDIR
    export beside its source, hold the same instance twice, and reading both would add a volume
    or slice the scanner never acquired. The first file in the order given is kept, as a
    database keeps the first copy it indexed; dcm2niix also reads such duplicates once."""
    groups: dict[str, list[str]] = {}
    seen: dict[tuple[str, str], str] = {}
    skipped: list[tuple[str, str]] = []
    for path, series_uid, instance_uid in files:
        if not series_uid:
            skipped.append((path, "no SeriesInstanceUID"))
            continue
        if instance_uid:
            first = seen.get((series_uid, instance_uid))
            if first == path:  # the same file given twice (a folder and a file in it)
                continue
            if first is not None:
                skipped.append((path, f"the same instance (SOPInstanceUID {instance_uid}) as {first}"))
                continue
            seen[(series_uid, instance_uid)] = path
        groups.setdefault(series_uid, []).append(path)
    if skipped:
        duplicates = sum(1 for _, why in skipped if why.startswith("the same instance"))
        if duplicates:
            logger.warning("%d file(s) skipped: second copies of instances already read (first: %s)",
                           duplicates, next(p for p, why in skipped if why.startswith("the same instance")))
    return groups, skipped


class ScanIndex:
    """Header values and pixel data locations of scanned files, by path; duck-types the parts of
    DICOMDatabase the plugins and the pixel reader call."""

    folder = "<header scan>"

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._columns: dict[str, int] = {}  # "gggg,eeee" -> index in each entry's values
        self.skipped: list[tuple[str, str]] = []  # (path, why) of files that are not usable DICOM

    @classmethod
    def build(cls, paths: Iterable[str], tags: Sequence[str], workers: int | None = None) -> "ScanIndex":
        """Scan `paths` (files) for `tags` with `workers` processes (None: every core)."""
        index = cls()
        keys, rows = scan_rows(paths, [tag_string(t) for t in tags], workers=workers)
        index._columns = {key: i for i, key in enumerate(keys)}
        index._add(rows)
        return index

    def _add(self, rows: Iterable[ScanRow]) -> None:
        for row in rows:
            path = str(row.path)
            if not row.is_dicom:
                self.skipped.append((path, "not a DICOM file"))
                continue
            if row.error:
                self.skipped.append((path, row.error))
                logger.warning("Skipping %s: %s", path, row.error)
                continue
            self._entries[path] = _Entry(row.values, row.transfer_syntax, row.pixel_data_offset,
                                         row.pixel_data_length)

    def _value(self, entry: _Entry, key: str) -> str | None:
        """A scanned value of an entry ("gggg,eeee" key), None when that tag was never scanned."""
        column = self._columns.get(key)
        if column is not None:
            return entry.values[column]
        return entry.later.get(key) if entry.later else None

    def __contains__(self, path: str) -> bool:
        return os.fspath(path) in self._entries

    def series(self) -> dict[str, list[str]]:
        """SeriesInstanceUID -> files in scan order; files without one, and second copies of an
        instance, are skipped and recorded (see `group_by_series`)."""
        value = self._value
        groups, skipped = group_by_series((path, value(entry, SERIES_TAG) or "", value(entry, SOP_INSTANCE_TAG) or "")
                                          for path, entry in self._entries.items())
        self.skipped.extend(skipped)
        return groups

    # --- the database calls ------------------------------------------------------------------
    def file_values(self, paths: Iterable[str | os.PathLike], tags: Iterable[str]) -> dict[str, dict[str, str]]:
        """Tags of many files ('' when absent); tags not scanned yet are scanned now, once."""
        paths = [os.fspath(p) for p in paths]
        keys = [tag_string(t) for t in tags]
        entries, columns = self._entries, self._columns
        later = [key for key in dict.fromkeys(keys) if key not in columns]
        if later:
            self._scan_later([entry for entry in map(entries.get, paths) if entry is not None], paths, later)
        if not keys:
            return {path: {} for path in paths}
        empty = dict.fromkeys(keys, "")
        found = zip(paths, map(entries.get, paths))
        if later:  # rare: tags no plugin declared
            value = self._value
            return {path: {key: value(entry, key) for key in keys} if entry is not None else dict(empty)
                    for path, entry in found}
        # plugins ask per series for tags of the build's scan: one C-level pick a file
        pick = operator.itemgetter(*[columns[key] for key in keys])
        if len(keys) == 1:
            return {path: {keys[0]: pick(entry.values)} if entry is not None else dict(empty) for path, entry in found}
        return {path: dict(zip(keys, pick(entry.values))) if entry is not None else dict(empty)
                for path, entry in found}

    def _scan_later(self, known: list[_Entry], paths: list[str], keys: list[str]) -> None:
        """Scan the files of `paths` in the index for those of `keys` some of them lack, once."""
        missing = {key for entry in known for key in keys if not entry.later or key not in entry.later}
        if not missing:
            return
        entries = self._entries
        for result in scan_files([p for p in paths if p in entries], sorted(missing), workers=1):
            entry = entries.get(str(result.path))
            if entry is not None:
                if entry.later is None:
                    entry.later = {}
                for key in missing:
                    entry.later[key] = result.values.get(key, "") if result.is_dicom else ""

    def file_value(self, path: str | os.PathLike, tag: str) -> str:
        key = os.fspath(path)
        entry = self._entries.get(key)
        if entry is not None:  # the common case, without building lists and dicts for one value
            value = self._value(entry, tag_string(tag))
            if value is not None:
                return value
        return self.file_values([key], [tag])[key][tag_string(tag)]

    def instances(self, series_uid: str | None = None, **_filters: Any) -> list[dict[str, Any]]:
        """Rows like DICOMDatabase.instances: path, UIDs and where the pixel data is."""
        rows = []
        value = self._value
        for path, entry in self._entries.items():
            uid = value(entry, SERIES_TAG) or ""
            if series_uid is not None and uid != series_uid:
                continue
            rows.append({"FilePath": path, "SeriesInstanceUID": uid,
                         "SOPInstanceUID": value(entry, SOP_INSTANCE_TAG) or "",
                         "TransferSyntaxUID": entry.transfer_syntax, "PixelDataOffset": entry.offset,
                         "PixelDataLength": entry.length})
        return rows

    def files_for_series(self, series_uid: str) -> list[str]:
        value = self._value
        return [p for p, e in self._entries.items() if (value(e, SERIES_TAG) or "") == series_uid]

    def cached_value(self, key: str) -> None:
        """No examine cache: a scan lives for one conversion."""
        return None

    def store_cached_value(self, key: str, value: str) -> None:
        return None
