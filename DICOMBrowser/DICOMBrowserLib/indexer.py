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
    not_done: list[str] = field(default_factory=list)  # not imported: the import stopped first (disk full)
    not_done_bytes: int = 0  # their size
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
                "not_done_bytes": self.not_done_bytes,
                "stopped": self.stopped}


_plugins_loaded = False
_required_cache: tuple[tuple, list[str]] | None = None


def _registered_plugins() -> dict:
    """The plugin registry; built-in and entry-point plugins are discovered once per process."""
    global _plugins_loaded
    from . import plugins

    if not _plugins_loaded:
        plugins.allPlugins()
        _plugins_loaded = True
    return dict(plugins.dicomPlugins)


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
    known = database.indexed_files(files) if not copy else {}  # only the files being imported
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
    taken: dict[str, str] = {}  # SOP Instance UID -> the path this import indexed it from

    untried: list[str] = []  # scanned, never stored: the import stopped first
    out_of_space: list[str] = []  # the file the disk could not take (named in errors)

    def flush() -> None:
        if not batch:
            return
        if copy and _disk_short(database, batch):
            outcomes = _store_one_by_one(database, batch, summary, copy=copy, copied=copied)
        else:
            try:
                outcomes = database.store_instances(batch, copy=copy, copied=copied)
            except DatabaseError as error:
                if not _disk_full(error):  # named file by file, then stop
                    outcomes = [DICOMFileError(record.path, f"not stored: {error}") for record in batch]
                    summary.stopped = summary.stopped or f"the database cannot be written: {error}"
                else:  # rolled back (its copies removed) but for rows the index kept: the rest file by file
                    logger.warning("Import: %s; storing the batch of %d file(s) one by one", error, len(batch))
                    kept = set(getattr(error, "committed", ()))
                    rest = [record for record in batch if record.path not in kept]
                    stored = iter(_store_one_by_one(database, rest, summary, copy=copy, copied=copied))
                    outcomes = []
                    for record in batch:
                        outcome = (StoreOutcome("indexed", record.value("SOPInstanceUID"), record.path)
                                   if record.path in kept else next(stored, None))
                        if outcome is None:  # stopped before this one
                            break
                        outcomes.append(outcome)
        untried.extend(record.path for record in batch[len(outcomes):])
        duplicates: dict[str, tuple[str, list[InstanceRecord]]] = {}
        for record, outcome in zip(batch, outcomes):
            indexed_as = _duplicate_of(outcome) if not copied else None
            if indexed_as is not None:
                duplicates.setdefault(outcome.sop_instance_uid, (indexed_as, []))[1].append(record)
                continue
            if isinstance(outcome, DICOMFileError) and _out_of_space(outcome.reason):
                if out_of_space:  # not the first: left undone, like the files after it
                    untried.append(record.path)
                    continue
                out_of_space.append(record.path)
                summary.stopped = summary.stopped or f"no space left on device (copying {outcome.path})"
            _count(summary, outcome)
            if isinstance(outcome, StoreOutcome) and outcome.status in ("indexed", "updated", "relinked"):
                taken[outcome.sop_instance_uid] = outcome.path
        for sop, (indexed_as, records) in duplicates.items():
            _keep_sound_copy(database, summary, sop, indexed_as, records, copy=copy, taken=taken)
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
                summary.not_done = untried + [path for path in to_scan if path not in tried]
                summary.not_done_bytes = sum(_size(path) for path in summary.not_done)
                logger.warning("Import stopped: %s; %d file(s) not imported", summary.stopped, len(summary.not_done))
    summary.elapsed = time.perf_counter() - started
    logger.info("Import: %s", summary.as_dict())
    return summary


# room kept free beyond a batch's own bytes before copying it in one transaction: the index
# rows, the WAL and the tag cache of 500 files take a few megabytes
_SPARE_BYTES = 16 << 20


def _disk_short(database: DICOMDatabase, batch: list[InstanceRecord]) -> bool:
    """Whether the database's file system may not hold this batch's copies and its rows. Why: a
    batch is one transaction, and a disk that fills up halfway fails the commit, which used to
    throw away every copy of the batch (up to 500 files) though most of them fitted."""
    try:
        stats = os.statvfs(database.folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < sum(record.size for record in batch) + _SPARE_BYTES


def _out_of_space(reason: str) -> bool:
    return "no space left on device" in reason or "database or disk is full" in reason


def _disk_full(error: DatabaseError) -> bool:
    return _out_of_space(str(error)) or _out_of_space(str(error.__cause__ or ""))


def _store_one_by_one(database: DICOMDatabase, records: list[InstanceRecord], summary: ImportSummary, *,
                      copy: bool, copied: bool) -> list:
    """Store (copy) each record in its own transaction, and stop at the first that the disk cannot
    take: what fitted stays, that file's partial copy is removed (store_instances), and the
    records after it get no outcome (the caller names them as not done)."""
    outcomes: list = []
    for record in records:
        try:
            outcome = database.store_instances([record], copy=copy, copied=copied)[0]
        except DatabaseError as error:
            full = _disk_full(error)
            outcome = DICOMFileError(record.path, f"not stored: {'no space left on device: ' if full else ''}{error}")
            summary.stopped = summary.stopped or (f"no space left on device (storing {record.path})"
                                                  if full else f"the database cannot be written: {error}")
        outcomes.append(outcome)
        if isinstance(outcome, DICOMFileError) and (_out_of_space(outcome.reason) or summary.stopped):
            break
    return outcomes


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


_DUPLICATE_DETAILS = ("already indexed as ", "already copied to ")


def _duplicate_of(outcome: StoreOutcome | DICOMFileError) -> str | None:
    """The path of the copy indexed under the same SOP Instance UID, for a duplicate outcome."""
    if isinstance(outcome, StoreOutcome) and outcome.status == "duplicate":
        for prefix in _DUPLICATE_DETAILS:
            if outcome.detail.startswith(prefix):
                return outcome.detail[len(prefix):]
    return None


def _keep_sound_copy(database: DICOMDatabase, summary: ImportSummary, sop: str, indexed_as: str,
                     records: list[InstanceRecord], *, copy: bool, taken: dict[str, str]) -> None:
    """Of the indexed copy and the files of this batch that claim its SOP Instance UID, index the
    soundest (validity.best_copy: the indexed copy stays on a tie) and name every other with why.

    Why: sort order decided before, and a damaged copy that sorted first (or, with --copy, the
    last one copied) won. Files identical to the indexed copy are named without being checked."""
    from . import validity

    by_path = {record.path: record for record in records}
    differing = []
    for record in records:
        if _same_bytes(record.path, indexed_as):
            summary.duplicates += 1
            summary.duplicate_files.append((record.path, f"instance {sop}: identical to the indexed copy {indexed_as}"))
        else:
            differing.append(record.path)
    if not differing:
        return
    best, checked = validity.best_copy([indexed_as, *differing])
    if best != indexed_as:
        outcome = database.store_instances([by_path[best]], copy=copy, replace_duplicates=True)[0]
        if isinstance(outcome, DICOMFileError):  # could not take the sounder copy over: the indexed one stays
            _count(summary, outcome)
            differing.remove(best)
            best = indexed_as
        else:
            earlier = taken.get(sop)
            if earlier is None:  # the replaced copy came from an earlier import: this one relinks it
                _count(summary, outcome)
            taken[sop] = best
            replaced = earlier or indexed_as
            verdict = checked[indexed_as].describe()
            summary.duplicates += 1
            summary.duplicate_files.append((replaced, f"instance {sop}: replaced by the sounder copy {best} (this "
                                                      f"copy: {verdict}; {best}: {checked[best].describe()})"))
            logger.info("Instance %s: %s replaces %s (%s)", sop, best, replaced, verdict)
    for path in differing:
        if path == best:
            continue
        summary.duplicates += 1
        if checked[path].rank == checked[best].rank:
            reason = (f"instance {sop}: differs from the indexed copy {best}, and no check tells which is sound "
                      f"(both: {checked[path].describe()}); the copy indexed first stays")
        else:
            reason = (f"instance {sop}: not indexed ({checked[path].describe()}); the sounder copy {best} is "
                      f"indexed ({checked[best].describe()})")
        summary.duplicate_files.append((path, reason))
        logger.info("Duplicate %s: %s", path, reason)


def _same_bytes(path: str, other: str) -> bool:
    import filecmp

    try:
        return os.path.getsize(path) == os.path.getsize(other) and filecmp.cmp(path, other, shallow=False)
    except OSError:
        return False


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
