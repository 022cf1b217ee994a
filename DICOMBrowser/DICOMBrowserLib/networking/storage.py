"""Received instances: written atomically into the database folder, then indexed off the receive thread.

The C-STORE handler must answer quickly (the peer waits for every response), so it only writes
the encoded dataset exactly as received (no decode, no re-encode: pixel data stays byte-identical)
and hands the path to one indexing thread, which stores batches in one transaction
(`database.store_instances`, else `index_file` per path). The handler has two entries: the
EVT_C_STORE event pynetdicom triggers, and `store_encoded(...)` for the store lane
(fastpath/_storelane.py), which serves plain requests without building an event.

Atomicity: each instance is written to a hidden temporary file in its final folder, optionally
fsync'ed, then `os.replace`d onto its final name, and only then queued for indexing; so a reader,
the indexer or a crash never sees a half-written instance under a final name. fsync policy
(`fsync=`, the `fsync` setting): off by default: a killed process loses nothing (the page cache
is the kernel's), a power cut may lose what the kernel had not yet written back. On: the file is
fsync'ed before its rename and its folder after it (and new study/series folders when made), so
the instance is on disk, under its name, before the peer hears Success.

Paths: `images_folder/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`, each part a UID only when it
is a well-formed UID (digits and dots, no empty or '..' component, <= 64 chars); anything else
(a '/' or '..' from a hostile peer) is replaced by a hash, so no path can escape images_folder.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import queue
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydicom.filereader import read_dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from ..database import partial_name
from ..errors import DICOMBrowserError, DICOMFileError

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_SOP_INSTANCE_TAG = 0x00080018
_STUDY_UID_TAG = 0x0020000D
_SERIES_UID_TAG = 0x0020000E

# C-STORE failure statuses we answer with (PS3.7 Annex C, PS3.4 B.2.3)
STATUS_INVALID_SOP_INSTANCE = 0x0117  # "Invalid SOP Instance": the UID breaks the construction rules
STATUS_DATA_SET_MISMATCH = 0xA900  # "Data Set does not match SOP Class": lacks the UIDs every instance has
STATUS_OUT_OF_RESOURCES = 0xA700


class RefusedInstance(DICOMBrowserError):
    """A received instance we will not store; `status` is the C-STORE status the peer gets."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def valid_uid(text: str) -> bool:
    """1-64 characters of digits and dots, no empty component (PS3.5 9.1; leading zeros tolerated,
    as much real data has them)."""
    return 0 < len(text) <= 64 and _UID_RE.fullmatch(text) is not None


def safe_uid_component(uid: str | None) -> str:
    """A path component for a UID that can never leave its folder."""
    text = (uid or "").strip().rstrip("\0")
    if valid_uid(text):
        return text
    digest = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"x{digest}" if text else "unknown"


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _text(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("ascii", "replace").rstrip("\0 ")


def _scan_uids_le(raw: bytes | memoryview, implicit: bool) -> tuple[str, str, str] | None:
    """Walk little-endian elements up to (0020,000E) without building a Dataset (~20x faster than
    pydicom for this one question). None when an undefined length (a sequence) comes first."""
    sop = study = series = ""
    offset, end = 0, len(raw)
    while offset + 8 <= end:
        group, element = struct.unpack_from("<HH", raw, offset)
        tag = (group << 16) | element
        if tag > _SERIES_UID_TAG:
            break
        if implicit:
            (length,) = struct.unpack_from("<I", raw, offset + 4)
            offset += 8
        else:
            vr = bytes(raw[offset + 4:offset + 6])
            if vr in _LONG_VRS:
                (length,) = struct.unpack_from("<I", raw, offset + 8)
                offset += 12
            else:
                (length,) = struct.unpack_from("<H", raw, offset + 6)
                offset += 8
        if length == 0xFFFFFFFF:
            return None
        if tag == _SOP_INSTANCE_TAG:
            sop = _text(raw[offset:offset + length])
        elif tag == _STUDY_UID_TAG:
            study = _text(raw[offset:offset + length])
        elif tag == _SERIES_UID_TAG:
            series = _text(raw[offset:offset + length])
        offset += length
    return sop, study, series


@functools.lru_cache(maxsize=64)
def _syntax_facts(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(deflated, implicit VR, little endian) of a transfer syntax UID; unknown ones read as
    explicit VR little endian. Cached: pydicom validates a UID each time one is made (~10 us)."""
    ts = UID(transfer_syntax)
    known = ts.is_transfer_syntax
    return (ts == DeflatedExplicitVRLittleEndian, ts.is_implicit_VR if known else False,
            ts.is_little_endian if known else True)


def instance_uids(raw: bytes | memoryview, transfer_syntax: str) -> tuple[str, str, str]:
    """SOP Instance, Study and Series Instance UID from an encoded dataset, reading only the
    elements before them; '' for what is absent or unreadable."""
    try:
        deflated, implicit, little = _syntax_facts(str(transfer_syntax))
        if deflated:
            raw = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, 1 << 20)
        if little:
            found = _scan_uids_le(raw, implicit)
            if found is not None:
                return found
        ds = read_dataset(io.BytesIO(bytes(raw)), implicit, little,
                          stop_when=lambda tag, vr, length: tag > _SERIES_UID_TAG)
        values = [ds.get(tag) for tag in (_SOP_INSTANCE_TAG, _STUDY_UID_TAG, _SERIES_UID_TAG)]
        return tuple(str(v.value).rstrip("\0 ") if v is not None and v.value is not None else ""
                     for v in values)  # type: ignore[return-value]
    except (ValueError, EOFError, OSError, zlib.error, NotImplementedError, KeyError, struct.error) as error:
        logger.warning("Could not read the UIDs of a received instance: %s", error)
        return "", "", ""


def study_and_series(raw: bytes | memoryview, transfer_syntax: str) -> tuple[str, str]:
    """Study and Series Instance UID from an encoded dataset, reading only the elements before them."""
    return instance_uids(raw, transfer_syntax)[1:]


def check_instance_uids(command_sop: str, data_set_sop: str, study_uid: str, series_uid: str) -> None:
    """Refuse (RefusedInstance) what would be stored under a name that is not its own.

    Why: DCMTK's storescu cuts the Affected SOP Instance UID of its command to 64 characters, so
    two instances whose UIDs were longer and began alike arrived under one name: both were
    answered Success and the second overwrote the first. A SOP Instance UID that is not a valid
    UID, or differs between the command and the data set, gets "Invalid SOP Instance" (0117);
    a data set without its SOP Instance, Study or Series UID (the index could never hold it)
    gets "Data Set does not match SOP Class" (A900). Study and Series UIDs that are not valid
    UIDs are kept as they are (their folder name is a hash, the index holds the full value)."""
    command = (command_sop or "").strip().rstrip("\0")
    if not valid_uid(command):
        raise RefusedInstance(f"SOP Instance UID {command_sop!r} is not a valid UID (1-64 digits and dots)",
                              STATUS_INVALID_SOP_INSTANCE)
    if not (data_set_sop and study_uid and series_uid):
        missing = [name for name, value in (("SOP Instance UID", data_set_sop), ("Study Instance UID", study_uid),
                                            ("Series Instance UID", series_uid)) if not value]
        raise RefusedInstance(f"instance {command}: the data set has no {', '.join(missing)}",
                              STATUS_DATA_SET_MISMATCH)
    if data_set_sop != command:
        raise RefusedInstance(f"SOP Instance UID of the command ({command}) differs from the data set's "
                              f"({data_set_sop!r}, {len(data_set_sop)} characters)", STATUS_INVALID_SOP_INSTANCE)


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr in _LONG_VRS:
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def encode_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str,
                     source_ae: str | None = None) -> bytes:
    """Preamble, 'DICM' and group 0002 (explicit VR little endian, PS3.10 7.1), built directly:
    pydicom's write_file_meta_info validates and encodes a Dataset, ~1 ms per instance."""
    body = b"".join([
        _element(0x00020001, b"OB", b"\0\1"),
        _element(0x00020002, b"UI", sop_class.encode("ascii")),
        _element(0x00020003, b"UI", sop_instance.encode("ascii")),
        _element(0x00020010, b"UI", transfer_syntax.encode("ascii")),
        _element(0x00020012, b"UI", PYDICOM_IMPLEMENTATION_UID.encode("ascii")),
        _element(0x00020013, b"SH", b"DICOMBROWSER"),
        *([_element(0x00020016, b"AE", source_ae.encode("ascii", "replace"))] if source_ae else []),
    ])
    return b"\0" * 128 + b"DICM" + _element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def _write_all(descriptor: int, buffers: list[bytes | memoryview]) -> None:
    """All of `buffers`, in order: one writev when there are few (a header and a data set: the
    kernel takes it all at once for regular files), else buffer by buffer; short writes finished."""
    if len(buffers) <= 16:
        written = os.writev(descriptor, buffers)
        if written == sum(len(b) for b in buffers):
            return
    else:
        written = 0
    for buffer in buffers:  # from where `written` got to
        with memoryview(buffer) as view:
            if written >= len(view):
                written -= len(view)
                continue
            view = view[written:]
            written = 0
            while len(view):
                view = view[os.write(descriptor, view):]


def _fsync_directory(folder: str) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _head(fragments: list[bytes | memoryview], enough: int = 1 << 20) -> bytes | memoryview:
    """The start of a data set received in fragments, for study_and_series: the first fragment when
    it is big enough, else the first ones joined up to `enough` bytes (the UIDs are near the start)."""
    if len(fragments) == 1 or len(fragments[0]) >= enough:
        return fragments[0]
    head, size = [], 0
    for fragment in fragments:
        head.append(fragment)
        size += len(fragment)
        if size >= enough:
            break
    return b"".join(head)


@dataclass
class StorageCounters:
    """What happened since the listener (or a C-GET) started; read by the GUI and CLI."""

    received: int = 0
    received_bytes: int = 0
    write_failed: int = 0
    indexed: int = 0
    index_failed: int = 0
    errors: list[str] = field(default_factory=list)


class ReceivedInstanceWriter:
    """Writes instances atomically under database.images_folder and indexes them on a worker thread."""

    def __init__(self, database: Any, *, fsync: bool = False, index: bool = True,
                 on_indexed: Callable[[str, str], Any] | None = None, batch_size: int = 256,
                 batch_wait: float = 0.05):
        self.database = database
        self.images_folder = Path(database.images_folder).absolute()
        self.fsync = fsync
        self.index = index
        self.on_indexed = on_indexed
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.counters = StorageCounters()
        self._lock = threading.Lock()
        self._folders: dict[tuple[str, str], str] = {}  # (study, series) UID -> its folder, made
        self._pid = os.getpid()
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0  # written, not yet indexed (or failed); guarded by _done
        self._done = threading.Condition(self._lock)

    # --- receive side (called from pynetdicom's association threads) -------------------------------
    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return Path(self._folder_for(study_uid, series_uid), f"{safe_uid_component(sop_uid)}.dcm")

    def _folder_for(self, study_uid: str, series_uid: str) -> str:
        """The series folder (made on first use), remembered: every instance of a series needs it."""
        key = (study_uid, series_uid)
        folder = self._folders.get(key)
        if folder is None:
            path = self.images_folder / safe_uid_component(study_uid) / safe_uid_component(series_uid)
            # belt and braces: the components above cannot contain separators, check anyway
            if os.path.commonpath([self.images_folder, path]) != str(self.images_folder):
                raise DICOMBrowserError(f"refusing to write series {series_uid!r} outside {self.images_folder}")
            if self.fsync and not path.is_dir():
                made = [p for p in (path, path.parent) if not p.is_dir()]
                path.mkdir(parents=True, exist_ok=True)
                for directory in [*made, self.images_folder]:  # each new entry, in its parent
                    _fsync_directory(str(directory.parent))
            else:
                path.mkdir(parents=True, exist_ok=True)
            folder = str(path)
            with self._lock:
                if len(self._folders) >= 4096:  # a long-running listener: forget, re-check on next use
                    self._folders.clear()
                self._folders[key] = folder
        return folder

    def write_encoded(self, sop_class: str, sop_uid: str, transfer_syntax: str,
                      raw_dataset: bytes | memoryview | list[bytes | memoryview], source_ae: str | None = None) -> Path:
        """Preamble + file meta (from the C-STORE request's own values, no pydicom File Meta dataset
        to build) + the data set bytes as received; returns the final path.
        `raw_dataset` may be the fragments it arrived in (the store lane): never joined in memory."""
        fragments = raw_dataset if isinstance(raw_dataset, list) else [raw_dataset]
        instance = InstanceFile(self, sop_class, sop_uid, transfer_syntax, fragments, source_ae)
        return instance.finish()

    def open_encoded(self, sop_class: str, sop_uid: str, transfer_syntax: str,
                     head: list[bytes | memoryview], source_ae: str | None = None) -> "InstanceFile":
        """Start writing an instance from the first fragments of its data set (they must hold its
        UIDs); the rest is appended with `write` as it arrives, `finish` renames it into place."""
        return InstanceFile(self, sop_class, sop_uid, transfer_syntax, head, source_ae)

    def _written(self, final: str, size: int) -> None:
        with self._lock:
            self.counters.received += 1
            self.counters.received_bytes += size
            if self.index:
                self._pending += 1
        if self.index:
            self._queue.put(final)

    def record_failure(self, message: str) -> None:
        with self._lock:
            self.counters.write_failed += 1
            self.counters.errors.append(message)

    # --- indexing side ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.index and (self._thread is None or not self._thread.is_alive()):
            from ..indexer import required_tags

            required_tags()  # discovers the plugins (imports) now rather than during the first transfer
            self._thread = threading.Thread(target=self._run, name="dicombrowser-indexer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Index what is queued, then stop the indexing thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("Indexing thread did not finish within %.0f s; %d files still queued",
                             timeout, self._queue.qsize())
            self._thread = None

    def wait_indexed(self, timeout: float = 60.0) -> bool:
        """Block until every written instance is indexed (or failed to); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._done:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._done.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            # Gather what arrives within batch_wait: one scan plan and one transaction per batch cost
            # a third of indexing file by file. Asleep, not waiting on the queue: a waiting thread
            # wakes up (and takes the GIL from the receiving thread) for every instance put.
            if batch[-1] is not None and self._queue.qsize() < self.batch_size:
                time.sleep(self.batch_wait)
            while len(batch) < self.batch_size and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            paths = [p for p in batch if p is not None]
            stop = len(paths) != len(batch)
            try:
                self._index_batch(paths)
            except Exception as error:  # the indexing thread must outlive any bug in one batch
                logger.exception("Unexpected error indexing %d received files", len(paths))
                for path in paths:
                    self._index_failed(path, error)
            finally:
                with self._done:
                    self._pending -= len(paths)
                    self._done.notify_all()

    def _index_batch(self, paths: list[str]) -> None:
        """Index what arrived since the last wake-up in one transaction when the database offers it
        (DICOMDatabase.store_instances), else one by one through index_file."""
        if not paths:
            return
        store_instances = getattr(self.database, "store_instances", None)
        if store_instances is None:
            for path in paths:
                self._index_one(path)
            return
        from .. import headerscan
        from ..database import InstanceRecord
        from ..indexer import MEDIA_STORAGE_DIRECTORY, required_tags

        records, scanned = [], []
        for result in headerscan.scan_files(paths, required_tags(), workers=1):  # in this thread
            reason = result.error or ("" if result.is_dicom else "not a DICOM file")
            if not reason and result.media_storage_sop_class_uid == MEDIA_STORAGE_DIRECTORY:
                reason = "a DICOMDIR (media index), not an instance"
            if reason:
                self._index_failed(result.path, DICOMFileError(result.path, reason))
                continue
            records.append(InstanceRecord(path=result.path, size=result.size, mtime_ns=result.mtime,
                                          values=result.values, transfer_syntax=result.transfer_syntax,
                                          pixel_data_offset=result.pixel_data_offset,
                                          pixel_data_length=result.pixel_data_length))
            scanned.append(result.path)
        try:
            outcomes = store_instances(records, copied=True) if records else []
        except DICOMBrowserError as error:  # the whole transaction failed: try one by one
            logger.warning("Batch indexing of %d received files failed (%s); indexing one by one", len(records), error)
            for path in scanned:
                self._index_one(path)
            return
        for path, outcome in zip(scanned, outcomes):
            if isinstance(outcome, DICOMBrowserError):
                self._index_failed(path, outcome)
            else:
                self._indexed(path, getattr(outcome, "sop_instance_uid", ""))

    def _index_failed(self, path: str, error: Exception) -> None:
        logger.error("Received file %s could not be indexed: %s", path, error)
        with self._lock:
            self.counters.index_failed += 1
            self.counters.errors.append(str(error))

    def _indexed(self, path: str, sop_uid: str) -> None:
        with self._lock:
            self.counters.indexed += 1
        if self.on_indexed is not None:
            try:
                self.on_indexed(path, sop_uid)
            except Exception:  # a GUI callback must not stop indexing
                logger.exception("on_indexed callback failed for %s", path)

    def _index_one(self, path: str) -> None:
        try:
            sop_uid = self.database.index_file(path, copied=True)
        except DICOMBrowserError as error:
            self._index_failed(path, error)
            return
        except Exception as error:  # the indexer thread must survive one bad file; logged with traceback
            logger.exception("Unexpected error indexing received file %s", path)
            self._index_failed(path, error)
            return
        self._indexed(path, sop_uid)


class InstanceFile:
    """One received instance being written: opened from the start of its data set (the UIDs
    checked, the folder chosen), appended to as fragments arrive, renamed into place by `finish`.

    Why: a data set sent in many PDUs was held in memory until its last fragment; the store
    lane now writes a large one as it arrives (fastpath/_storelane.SPOOL_AFTER), so memory per association
    stays a few PDUs whatever the instance's size. Plain os.open/os.writev/os.close: Python's
    open() adds fstat, isatty and lseek calls per file, and every system call is a moment the
    receiving thread may lose the GIL to the indexer."""

    def __init__(self, writer: ReceivedInstanceWriter, sop_class: str, sop_uid: str, transfer_syntax: str,
                 head: list[bytes | memoryview], source_ae: str | None = None):
        self.writer = writer
        data_set_sop, study_uid, series_uid = instance_uids(_head(head), transfer_syntax)
        check_instance_uids(sop_uid, data_set_sop, study_uid, series_uid)
        self.folder = folder = writer._folder_for(study_uid, series_uid)
        name = f"{safe_uid_component(sop_uid)}.dcm"
        self.final = f"{folder}{os.sep}{name}"
        header = encode_file_meta(sop_class, sop_uid, transfer_syntax, source_ae)
        # unique per writing thread: two associations may deliver the same instance at once; the
        # process id in the name lets a later start tell a killed listener's leftovers (database.partial_is_stale)
        self.temporary = f"{folder}{os.sep}{partial_name(name)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.descriptor = -1
        try:
            self.descriptor = os.open(self.temporary, flags, 0o666)
        except FileNotFoundError:  # the series folder was removed meanwhile (a delete): make it again
            with writer._lock:
                writer._folders.pop((study_uid, series_uid), None)
            writer._folder_for(study_uid, series_uid)
            self.descriptor = os.open(self.temporary, flags, 0o666)
        self.size = 0
        self.write([header, *head])
        self.size -= len(header)

    def write(self, fragments: list[bytes | memoryview]) -> None:
        """Append fragments; on failure the partial file is removed and the error raised."""
        try:
            _write_all(self.descriptor, fragments)
        except BaseException:
            self.discard()
            raise
        self.size += sum(len(fragment) for fragment in fragments)

    def finish(self) -> Path:
        """Flush (with fsync on), close and rename into place, then queue for indexing."""
        try:
            if self.writer.fsync:
                os.fsync(self.descriptor)
            os.close(self.descriptor)
            self.descriptor = -1
            os.replace(self.temporary, self.final)
            if self.writer.fsync:  # the rename itself is durable only once its folder is flushed
                _fsync_directory(self.folder)
        except BaseException:
            self.discard()
            raise
        self.writer._written(self.final, self.size)
        return Path(self.final)

    def discard(self) -> None:
        """Close and remove the partial file (a failure, a refusal, a peer gone mid-message)."""
        if self.descriptor >= 0:
            with contextlib.suppress(OSError):
                os.close(self.descriptor)
            self.descriptor = -1
        with contextlib.suppress(OSError):
            os.unlink(self.temporary)


def _failure_status(writer: ReceivedInstanceWriter, sop_instance: str, error: BaseException) -> int:
    """The C-STORE status for a failure to store an instance, logged and counted."""
    if isinstance(error, RefusedInstance):
        logger.error("Refused received instance (status 0x%04X): %s", error.status, error)
        writer.record_failure(f"{sop_instance}: {error}")
        return error.status
    if isinstance(error, (OSError, DICOMBrowserError, ValueError, AttributeError)):
        logger.error("Could not store received instance %s: %s", sop_instance, error)
        writer.record_failure(f"{sop_instance}: {error}")
        return STATUS_OUT_OF_RESOURCES
    logger.error("Unexpected error storing received instance %s", sop_instance, exc_info=error)
    writer.record_failure(f"{sop_instance}: {type(error).__name__}: {error}")
    return 0xC210  # Cannot understand


class SpooledStore:
    """The handler's side of an instance written as it arrives (store_handler's `open_encoded`):
    never raises; a failure (refused UIDs, a full disk) removes the partial file, the rest of the
    data set is then read and dropped, and `finish` returns the failure status."""

    def __init__(self, writer: ReceivedInstanceWriter, sop_class: str, sop_instance: str, transfer_syntax: str,
                 head: list[bytes | memoryview]):
        self.writer, self.sop_instance = writer, sop_instance
        self.status = 0x0000
        self.file: InstanceFile | None = None
        try:
            self.file = writer.open_encoded(sop_class, sop_instance, transfer_syntax, head)
        except Exception as error:  # noqa: BLE001 - becomes the status the peer gets
            self.status = _failure_status(writer, sop_instance, error)

    def write(self, fragments: list[bytes | memoryview]) -> None:
        if self.file is None:
            return
        try:
            self.file.write(fragments)
        except Exception as error:  # noqa: BLE001 - write() removed the partial file
            self.file = None
            self.status = _failure_status(self.writer, self.sop_instance, error)

    def finish(self) -> int:
        if self.file is None:
            return self.status
        file, self.file = self.file, None
        try:
            file.finish()
        except Exception as error:  # noqa: BLE001 - finish() removed the partial file
            return _failure_status(self.writer, self.sop_instance, error)
        return 0x0000

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()
            self.file = None


def store_handler(writer: ReceivedInstanceWriter) -> Callable[[Any], int]:
    """An EVT_C_STORE handler writing through `writer`; returns a status, never raises.

    Its attribute `store_encoded(sop_class, sop_instance, transfer_syntax, data_set_bytes)` is the
    same handler without pynetdicom's event: fastpath/_storelane.py calls it for the requests it serves;
    `open_encoded(..., first_fragments) -> SpooledStore` for a data set written as it arrives."""

    def store_encoded(sop_class: str, sop_instance: str, transfer_syntax: str,
                      raw: bytes | memoryview | list[bytes | memoryview]) -> int:
        try:
            writer.write_encoded(sop_class, sop_instance, transfer_syntax, raw)
            return 0x0000
        except Exception as error:  # noqa: BLE001 - a handler never raises; the peer gets a failure status
            return _failure_status(writer, sop_instance, error)

    def open_encoded(sop_class: str, sop_instance: str, transfer_syntax: str,
                     head: list[bytes | memoryview]) -> SpooledStore:
        return SpooledStore(writer, sop_class, sop_instance, transfer_syntax, head)

    def handle_store(event: Any) -> int:
        try:
            request = event.request
            sop_class, sop_instance = str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
            transfer_syntax = str(event.context.transfer_syntax)
            # the bytes as received, without a copy (a 512x512 slice is 0.5 MB) and without
            # pynetdicom's event.file_meta (a pydicom Dataset per instance, ~0.1 ms)
            buffer = request.DataSet.getbuffer()
        except AttributeError as error:
            sop = getattr(getattr(event, "request", None), "AffectedSOPInstanceUID", "?")
            logger.error("Could not store received instance %s: %s", sop, error)
            writer.record_failure(f"{sop}: {error}")
            return 0xA700  # Out of Resources
        with buffer as raw:
            return store_encoded(sop_class, sop_instance, transfer_syntax, raw)

    handle_store.store_encoded = store_encoded  # type: ignore[attr-defined]
    handle_store.open_encoded = open_encoded  # type: ignore[attr-defined]
    return handle_store
