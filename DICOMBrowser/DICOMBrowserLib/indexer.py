"""Import: find files, scan their headers (headerscan, in parallel), store them in batches.

The indexer never parses headers itself: `headerscan.scan_files` reads exactly the tags the
database, the registered plugins and the loaders need, and those values are all cached in the
TagCache at import, so examining and loading never re-parse a file for them.

Files are the truth and an import is restartable: every batch is one transaction, files whose
size and modification time are unchanged since they were indexed are not read again, and a
killed import is finished by importing the same paths again.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from . import headerscan
from .database import DATABASE_TAGS, DICOMDatabase, InstanceRecord, StoreOutcome
from .errors import DatabaseError, DICOMFileError, NotFoundError
from .tagreader import parse_tag, tag_string

logger = logging.getLogger(__name__)

#: Geometry and display attributes the loaders need for every image (cached at import).
GEOMETRY_KEYWORDS = (
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns",
    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "ImageType", "AcquisitionNumber",
    "EchoNumbers", "TemporalPositionIdentifier", "TriggerTime", "NumberOfFrames", "InstanceNumber",
    "SpecificCharacterSet",
)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR: an index of files, not an instance
BATCH_SIZE = 500

Progress = Callable[[int, "int | None", str], object]


@dataclass
class ImportSummary:
    """What an import did; `errors` lists (path, reason) of broken DICOM files."""

    seen: int = 0
    indexed: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    relinked: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0
    cancelled: bool = False
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not DICOM, a DICOMDIR
    duplicate_files: list[tuple[str, str]] = field(default_factory=list)  # (path, which copy is indexed)
    not_done: list[str] = field(default_factory=list)  # never tried: the import stopped (disk full)
    stopped: str = ""  # why the import stopped before the end ('' when it did not)

    @property
    def files_per_second(self) -> float:
        return self.seen / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return {"seen": self.seen, "indexed": self.indexed, "updated": self.updated, "unchanged": self.unchanged,
                "duplicates": self.duplicates, "relinked": self.relinked, "skipped": self.skipped,
                "errors": [list(e) for e in self.errors], "elapsed": round(self.elapsed, 3),
                "cancelled": self.cancelled, "skipped_files": [list(e) for e in self.skipped_files],
                "duplicate_files": [list(e) for e in self.duplicate_files], "not_done": list(self.not_done),
                "stopped": self.stopped}


_plugins_loaded = False
_required_cache: tuple[tuple, list[str]] | None = None


def _registered_plugins() -> dict:
    """The plugin registry; built-in and entry-point plugins are discovered once per process."""
    global _plugins_loaded
    import DICOMPlugins

    if not _plugins_loaded:
        DICOMPlugins.allPlugins()
        _plugins_loaded = True
    return dict(DICOMPlugins.dicomPlugins)


def _plugin_tags(plugins: dict) -> set[str]:
    """Tags every registered plugin declared (`tags`: name -> "gggg,eeee", either way round)."""
    tags: set[str] = set()
    for name, plugin_class in plugins.items():
        declared = getattr(plugin_class, "tags", {}) or {}
        items = declared.items() if isinstance(declared, dict) else ((t, t) for t in declared)
        for key, value in items:
            for candidate in (value, key):
                try:
                    tags.add(tag_string(parse_tag(candidate)))
                    break
                except (ValueError, TypeError):
                    continue
            else:
                logger.warning("Plugin %s declares a tag that is not a tag: %r -> %r", name, key, value)
    return tags


def required_tags() -> list[str]:
    """The database's own columns + every plugin's declared tags + the common geometry tags."""
    global _required_cache
    plugins = _registered_plugins()
    key = tuple(sorted((name, id(cls), id(getattr(cls, "tags", None))) for name, cls in plugins.items()))
    if _required_cache is not None and _required_cache[0] == key:
        return list(_required_cache[1])
    tags = set(DATABASE_TAGS.values())
    tags.update(tag_string(k) for k in GEOMETRY_KEYWORDS)
    tags.update(_plugin_tags(plugins))
    _required_cache = (key, sorted(tags))
    return list(_required_cache[1])


_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def soundness(result: headerscan.ScanResult) -> int:
    """How many consistency checks a readable file passes (higher is sounder): the file meta's SOP
    Instance UID equals the data set's; the pixel data lies within the file; uncompressed pixel
    data has the length Rows x Columns x samples x bytes x frames says. Used to prefer the sound
    copy when two files claim one SOP Instance UID (a bit flip or a cut usually breaks one)."""
    values = result.values
    score = int(bool(result.media_storage_sop_instance_uid)
                and result.media_storage_sop_instance_uid == values.get("0008,0018", ""))
    if result.pixel_data_offset is None:
        return score + 2
    length = result.pixel_data_length or 0
    score += int(result.pixel_data_offset + length <= result.size)
    if result.transfer_syntax in _UNCOMPRESSED:
        try:
            expected = (int(values["0028,0010"]) * int(values["0028,0011"]) * int(values.get("0028,0002") or 1)
                        * ((int(values.get("0028,0100") or 16) + 7) // 8) * int(values.get("0028,0008") or 1))
            score += int(length in (expected, expected + 1))
        except (KeyError, ValueError):
            pass
    else:
        score += 1
    return score


def _record(result: headerscan.ScanResult) -> InstanceRecord:
    return InstanceRecord(path=result.path, size=result.size, mtime_ns=result.mtime,
                          values=result.values, transfer_syntax=result.transfer_syntax,
                          pixel_data_offset=result.pixel_data_offset, pixel_data_length=result.pixel_data_length)


def scan_for_database(path: str) -> InstanceRecord:
    """Scan one file for the database (listener / index_file); raises DICOMFileError if unusable."""
    path = os.path.abspath(path)
    result = headerscan.scan_file(path, required_tags())
    if result.error:
        raise DICOMFileError(path, result.error)
    if not result.is_dicom:
        raise DICOMFileError(path, "not a DICOM file")
    if result.media_storage_sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        raise DICOMFileError(path, "a DICOMDIR (media index), not an instance")
    return _record(result)


def scan_values(paths: Sequence[str], tags: Sequence[str]) -> dict[str, dict[str, str]]:
    """Tag values of files that are not (or not fully) in the tag cache; unreadable files are left out."""
    workers = 1 if len(paths) < 2 * headerscan.CHUNK_FILES else None
    values: dict[str, dict[str, str]] = {}
    for result in headerscan.scan_files(paths, tags, workers=workers):
        if result.is_dicom and not result.error:
            values[result.path] = result.values
        elif result.error:
            logger.warning("Cannot read %s: %s", result.path, result.error)
    return values


def find_files(paths: Iterable[str | os.PathLike], exclude: Path | None = None,
               unreadable: list[tuple[str, str]] | None = None) -> Iterator[str]:
    """Every file under the given files/folders (recursive, sorted); a DICOMDIR path yields the files it lists.
    Folders that cannot be listed (permissions) are appended to `unreadable` as (path, reason)."""
    from . import dicomdir

    def walk_error(error: OSError) -> None:
        reason = f"cannot read folder: {error.strerror or error}"
        logger.warning("%s: %s", error.filename, reason)
        if unreadable is not None:
            unreadable.append((os.fspath(error.filename or ""), reason))

    excluded = os.path.abspath(exclude) if exclude else None
    for entry in paths:
        path = os.path.abspath(os.fspath(entry))
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path, onerror=walk_error):
                if excluded and (root == excluded or root.startswith(excluded + os.sep)):
                    dirs[:] = []
                    continue
                dirs.sort()
                for name in sorted(files):
                    yield os.path.join(root, name)
        elif os.path.isfile(path) and dicomdir.is_dicomdir(path):
            try:
                referenced = dicomdir.referenced_files(path)
            except DICOMFileError as error:
                logger.warning("%s", error)
                yield path  # scanned like any file: reported as broken (or skipped) with its reason
                continue
            if not referenced:
                logger.warning("%s: a DICOMDIR that lists no existing files", path)
                yield path  # so the summary shows it (skipped, or broken with the reason)
            yield from (os.fspath(p) for p in referenced)
        elif os.path.exists(path):
            yield path
        else:
            raise NotFoundError(f"{path}: no such file or folder")


def import_paths(database: DICOMDatabase, paths: Iterable[str | os.PathLike], copy: bool = False,
                 progress: Progress | None = None, workers: int | None = None) -> ImportSummary:
    """Index files and folders into `database`; `copy` copies files into the database folder.

    `progress(done, total, current_path)` is called for every file; a truthy return cancels
    (what was stored so far stays). Never raises for a single bad file: those are in `errors`.
    """
    started = time.perf_counter()
    unreadable: list[tuple[str, str]] = []
    files = list(dict.fromkeys(find_files(paths, exclude=database.folder, unreadable=unreadable)))
    summary = index_files(database, files, copy=copy, progress=progress, workers=workers, started=started)
    summary.errors[:0] = unreadable
    return summary


def index_files(database: DICOMDatabase, files: list[str], *, copy: bool = False, copied: bool = False,
                progress: Progress | None = None, workers: int | None = None,
                started: float | None = None) -> ImportSummary:
    """Index a list of absolute file paths (import_paths after the folder walk; also `rebuild`).

    `copied=True`: the files already belong to the database folder (stored relative, Copied=1).
    """
    started = time.perf_counter() if started is None else started
    files = [f if os.path.isabs(f) else os.path.abspath(f) for f in map(os.fspath, files)]
    summary = ImportSummary()
    total = len(files)
    summary.seen = total
    files = _storable_paths(files, summary)
    known = database.indexed_files() if not copy else {}
    to_scan: list[str] = []
    done = total - len(files)  # names SQLite cannot store are already reported
    for path in files:
        entry = known.get(path)
        if entry is not None:
            try:
                stat = os.stat(path)
            except OSError:
                stat = None
            if stat is not None and stat.st_size == entry[0] and stat.st_mtime_ns == entry[1]:
                summary.unchanged += 1
                done += 1
                continue
        to_scan.append(path)
    if done and progress is not None and progress(done, total, ""):
        summary.cancelled = True
    batch: list[InstanceRecord] = []
    scanned: list[str] = []
    scores: dict[str, int] = {}  # path -> soundness, of this import's records

    def flush() -> None:
        if not batch:
            return
        try:
            outcomes = database.store_instances(batch, copy=copy, copied=copied)
        except DatabaseError as error:  # the whole batch (a full disk): named file by file, then stop
            outcomes = [DICOMFileError(record.path, f"not stored: {error}") for record in batch]
            summary.stopped = summary.stopped or f"the database cannot be written: {error}"
        sounder = _sounder_duplicates(batch, outcomes, scores) if not (copy or copied) else {}
        for outcome in outcomes:
            if isinstance(outcome, StoreOutcome) and outcome.path in sounder:
                continue  # counted when stored below, in place of the damaged copy
            _count(summary, outcome)
            if isinstance(outcome, DICOMFileError) and "no space left on device" in outcome.reason:
                summary.stopped = summary.stopped or f"no space left on device (copying {outcome.path})"
        if sounder:
            records = [record for record in batch if record.path in sounder]
            for outcome in database.store_instances(records, replace_duplicates=True):
                _count(summary, outcome)
                if isinstance(outcome, StoreOutcome):
                    old = sounder[outcome.path]
                    summary.duplicate_files.append((old, f"instance {outcome.sop_instance_uid}: a damaged copy; the "
                                                         f"sound copy {outcome.path} is indexed instead"))
                    summary.duplicates += 1
        batch.clear()

    if not summary.cancelled and to_scan:
        with contextlib.ExitStack() as stack:
            if len(to_scan) > 4 * BATCH_SIZE:
                stack.enter_context(database.bulk_writes())
            results = headerscan.scan_files(to_scan, required_tags(), workers=workers)
            stack.callback(getattr(results, "close", lambda: None))  # stops the worker pool on cancel/error
            for result in results:
                done += 1
                scanned.append(result.path)
                if result.error:
                    summary.errors.append((result.path, result.error))
                    logger.info("Skipping broken DICOM file %s: %s", result.path, result.error)  # in summary.errors
                elif not result.is_dicom or result.media_storage_sop_class_uid == MEDIA_STORAGE_DIRECTORY:
                    summary.skipped += 1
                    summary.skipped_files.append((result.path, "not a DICOM file" if not result.is_dicom
                                                  else "a DICOMDIR (media index), not an instance"))
                else:
                    batch.append(_record(result))
                    scores[result.path] = soundness(result)
                    if len(batch) >= BATCH_SIZE:
                        flush()
                if progress is not None and progress(done, total, result.path):
                    summary.cancelled = True
                    break
                if summary.stopped:  # a full disk: every further file would fail the same way
                    break
            flush()
            if summary.stopped:
                tried = set(scanned)
                summary.not_done = [path for path in to_scan if path not in tried]
                logger.warning("Import stopped: %s; %d file(s) not imported", summary.stopped, len(summary.not_done))
    summary.elapsed = time.perf_counter() - started
    logger.info("Import: %s", summary.as_dict())
    return summary


def _sounder_duplicates(batch: list[InstanceRecord], outcomes: list, scores: dict[str, int]) -> dict[str, str]:
    """new path -> indexed path, for duplicates whose new file passes more checks (`soundness`)
    than the file indexed under the same SOP Instance UID (scanned again here: it may come from
    an earlier import). Ties keep the indexed copy."""
    prefix = "already indexed as "
    sounder = {}
    for record, outcome in zip(batch, outcomes):
        if not isinstance(outcome, StoreOutcome) or outcome.status != "duplicate" \
                or not outcome.detail.startswith(prefix):
            continue
        old = outcome.detail[len(prefix):]
        old_score = scores.get(old)
        if old_score is None:
            result = headerscan.scan_file(old, required_tags())
            old_score = soundness(result) if result.is_dicom and not result.error else -1
        if scores.get(record.path, 0) > old_score:
            sounder[record.path] = old
    return sounder


def _count(summary: ImportSummary, outcome: StoreOutcome | DICOMFileError) -> None:
    if isinstance(outcome, DICOMFileError):
        summary.errors.append((outcome.path, outcome.reason))
        logger.info("Skipping %s", outcome)  # in summary.errors
        return
    if outcome.status == "indexed":
        summary.indexed += 1
    elif outcome.status == "updated":
        summary.updated += 1
    elif outcome.status == "unchanged":
        summary.unchanged += 1
    elif outcome.status == "duplicate":
        summary.duplicates += 1
        summary.duplicate_files.append((outcome.path, f"instance {outcome.sop_instance_uid} {outcome.detail}"))
        logger.info("Duplicate instance %s at %s (%s)", outcome.sop_instance_uid, outcome.path, outcome.detail)
    elif outcome.status == "relinked":
        summary.relinked += 1


def _storable_paths(files: list[str], summary: ImportSummary) -> list[str]:
    """Paths SQLite can store (UTF-8); a name with undecodable bytes is reported, not fatal."""
    storable = []
    for path in files:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            summary.errors.append((shown, "file name is not valid UTF-8 (rename the file to import it)"))
            logger.info("Skipping %s: file name is not valid UTF-8", shown)  # in summary.errors
            continue
        storable.append(path)
    return storable


@dataclass
class ReconcileSummary:
    """What `reconcile` did to the database folder's leftovers."""

    indexed: int = 0
    partial_removed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def reconcile(database: DICOMDatabase, unindexed: list[str] | None = None,
              partial: list[str] | None = None) -> ReconcileSummary:
    """Index the files under dicom/ that the index lacks and remove stale temporary files.

    Why: a listener acknowledges an instance once its file is renamed into dicom/, and indexes it
    a moment later on another thread; a kill, a crash or a full disk in between left files that
    the sender was told were stored but that nobody would find. The listener runs this when it
    starts, and `db verify --repair` runs it (lists from `database.folder_leftovers()` unless given)."""
    if unindexed is None or partial is None:
        unindexed, partial = database.folder_leftovers()
    summary = ReconcileSummary()
    for path in partial:
        try:
            os.unlink(path)
            summary.partial_removed += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            summary.errors.append((path, f"cannot remove: {error.strerror or error}"))
    if unindexed:
        result = index_files(database, unindexed, copied=True)
        summary.indexed = result.indexed + result.updated + result.relinked
        summary.errors.extend(result.errors)
        if result.skipped:  # files that are not DICOM stay where they are, named
            failed = {p for p, _ in result.errors}
            summary.errors.extend((path, "not a DICOM instance") for path in unindexed
                                  if path not in failed and database.instance_for_file(path) is None)
    if summary.indexed or summary.partial_removed or summary.errors:
        logger.warning("Database folder %s: %d file(s) the index lacked indexed, %d stale temporary file(s) "
                       "removed, %d left as they are", database.folder, summary.indexed,
                       summary.partial_removed, len(summary.errors))
    return summary


def rebuild(folder: str | os.PathLike, progress: Progress | None = None,
            workers: int | None = None) -> tuple[DICOMDatabase, ImportSummary, list[Path]]:
    """Rebuild a database folder's index from its files, which are the truth.

    For a corrupt database, one of an unknown schema version, or a 3D Slicer/CTK database folder:
    the old SQLite files are renamed aside (never deleted), the list of files they reference is
    salvaged as far as it can be read, and a new index is built from those files plus everything
    under `<folder>/dicom` (kept in place as copied files). Returns the open database, the import
    summary and the paths of the files moved aside.
    """
    from .database import DATABASE_FILE, IMAGES_FOLDER, TAGCACHE_FILE

    started = time.perf_counter()
    folder = Path(folder).expanduser().resolve()
    referenced = _salvage_filenames(folder / DATABASE_FILE)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved: list[Path] = []
    for name in (DATABASE_FILE, TAGCACHE_FILE):
        for suffix in ("", "-wal", "-shm"):
            old = folder / f"{name}{suffix}"
            if old.exists():
                aside = folder / f"{name}{suffix}.{stamp}.bak"
                os.replace(old, aside)
                moved.append(aside)
    database = DICOMDatabase(folder)
    images = folder / IMAGES_FOLDER
    inside = [os.path.join(root, name) for root, _, names in os.walk(images) for name in sorted(names)
              if not name.endswith(".part")] if images.is_dir() else []
    inside_set = set(inside)
    outside = [p for p in referenced if p not in inside_set and os.path.isfile(p)]
    summary = index_files(database, inside, copied=True, progress=progress, workers=workers, started=started)
    rest = index_files(database, outside, progress=progress, workers=workers)
    for name in ("seen", "indexed", "updated", "unchanged", "duplicates", "relinked", "skipped"):
        setattr(summary, name, getattr(summary, name) + getattr(rest, name))
    summary.errors.extend(rest.errors)
    summary.elapsed = time.perf_counter() - started
    logger.warning("Rebuilt %s from %d files (old index kept as %s)", folder, summary.seen,
                   ", ".join(p.name for p in moved) or "nothing")
    return database, summary, moved


def _salvage_filenames(main_file: Path) -> list[str]:
    """Absolute paths an old (possibly damaged or CTK) index lists; what cannot be read is skipped."""
    import sqlite3

    if not main_file.exists():
        return []
    paths: list[str] = []
    try:
        connection = sqlite3.connect(f"file:{main_file}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as error:
        logger.warning("Cannot open %s to salvage file names: %s", main_file, error)
        return []
    try:
        for (filename,) in connection.execute("SELECT Filename FROM Images"):
            if filename:
                paths.append(filename if os.path.isabs(filename) else str(main_file.parent / filename))
    except sqlite3.Error as error:
        logger.warning("Salvaged %d file names from %s before: %s", len(paths), main_file, error)
    finally:
        connection.close()
    return paths
