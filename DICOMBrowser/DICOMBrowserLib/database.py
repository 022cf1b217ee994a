"""The local DICOM database: one folder holding SQLite files (CTK's schema, extended) and copied files.

Layout of a database folder (see docs/database.md)::

    <folder>/ctkDICOM.sql            Patients, Studies, Series, Images (+ SchemaInfo, Generation)
    <folder>/ctkDICOMTagCache.sql    TagCache(SOPInstanceUID, Tag, Value) and a small ValueCache
    <folder>/dicom/<study>/<series>/<sop>.dcm   files copied in or received by the listener
    <folder>/settings.json           per-database settings (config.py)

Thread-safe: every thread gets its own SQLite connection (WAL mode, so readers never wait for a
writer); writes in this process are serialized by a lock and are one transaction per batch, so a
killed import leaves the database as of the last committed batch. Files are the truth: the
database is an index that can always be rebuilt from them.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading

try:
    import fcntl
except ImportError:  # Windows: no flock; the check after an unclean shutdown is then skipped
    fcntl = None  # type: ignore[assignment]
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import DatabaseError, DICOMFileError, NotFoundError, SchemaVersionError

logger = logging.getLogger(__name__)

DATABASE_FILE = "ctkDICOM.sql"
TAGCACHE_FILE = "ctkDICOMTagCache.sql"
IMAGES_FOLDER = "dicom"
#: CTK's schema 0.8.1 plus our additions; bump the suffix on every change and add an upgrade step.
SCHEMA_VERSION = "0.8.1+dicombrowser.3"
# .3: the patient's order columns copied into Studies (schema.sql's triggers keep them), so that a
# page of studies found by date sorts entries of StudiesDateIndex2 instead of rows joined to Patients
_PATIENT_ORDER_COPIES = """
    ALTER TABLE Studies ADD COLUMN PatientOrderName VARCHAR(255) NULL;
    ALTER TABLE Studies ADD COLUMN PatientOrderID VARCHAR(255) NULL;
    ALTER TABLE Studies ADD COLUMN PatientOrderUID TEXT NULL;
    UPDATE Studies SET (PatientOrderName, PatientOrderID, PatientOrderUID) =
        (SELECT PatientsName, PatientID, PatientUID FROM Patients WHERE UID = Studies.PatientsUID);
    DROP INDEX IF EXISTS StudiesDateIndex;
"""
#: Versions we know how to upgrade from, mapped to the SQL that does it. After a step, the
#: indexes and triggers of schema.sql are created and every maintained count is computed (`_upgrade`).
SCHEMA_UPGRADES: dict[str, str] = {
    # .2: counts maintained per patient, study and series; indexes for ordered paging and filters
    "0.8.1+dicombrowser.1": """
        ALTER TABLE Patients ADD COLUMN NumberOfStudies INT NOT NULL DEFAULT 0;
        ALTER TABLE Patients ADD COLUMN NumberOfSeries INT NOT NULL DEFAULT 0;
        ALTER TABLE Patients ADD COLUMN NumberOfInstances INT NOT NULL DEFAULT 0;
        ALTER TABLE Patients ADD COLUMN LastStudyDate VARCHAR(8) NULL;
        ALTER TABLE Studies ADD COLUMN NumberOfSeries INT NOT NULL DEFAULT 0;
        ALTER TABLE Studies ADD COLUMN NumberOfInstances INT NOT NULL DEFAULT 0;
        ALTER TABLE Series ADD COLUMN NumberOfInstances INT NOT NULL DEFAULT 0;
        ALTER TABLE Series ADD COLUMN NumberOfFrames INT NOT NULL DEFAULT 0;
        DROP INDEX IF EXISTS ImagesSeriesIndex;
        DROP INDEX IF EXISTS SeriesStudyIndex;
        DROP INDEX IF EXISTS StudiesPatientIndex;
    """ + _PATIENT_ORDER_COPIES,
    "0.8.1+dicombrowser.2": _PATIENT_ORDER_COPIES,
}
#: The lock file every process holding the database open keeps a shared flock on: the first one
#: to open it alone learns whether the last one closed cleanly (see `_check_after_unclean_shutdown`).
OPEN_LOCK_FILE = "ctkDICOM.sql.open"
#: SQLite page cache per connection, KiB (SQLite's default is 2 MB: at a million instances the
#: indexes browsing walks did not fit, and every page was read again from the OS).
CACHE_KIB = 65536
#: A page asked for with filters an index can find: when the filter's index finds fewer rows
#: than this, they are read and sorted (cheap); when it finds at least this many, the matches are
#: dense and the levels are walked in the list's order instead, checking the filters on the way,
#: which stops when the page is full (a sort would read every match first). SQLite keeps no
#: statistics that would tell it this, so `browse_query` counts up to this many first.
SORT_AT_MOST = 2000
#: A substring's trigrams are first counted up to this many rows each: one that rare decides it
#: (sparse) without counting the common ones up to SORT_AT_MOST (`_narrow_substrings`).
RARE_FIRST = 256

#: Substring indexes (SQLite FTS5, trigram tokenizer): filtered column -> (table, its rowid
#: column, the indexed column, the FTS5 table). External content: the text is read from the table
#: itself; the FTS5 rows are kept in step by the triggers of `_text_index_sql` inside every write
#: transaction (the same writes that keep the counts).
_TEXT_INDEXES = {
    "p.PatientsName": ("Patients", "UID", "PatientsName", "PatientsNameText"),
    "p.PatientID": ("Patients", "UID", "PatientID", "PatientsIDText"),
    "st.StudyDescription": ("Studies", "rowid", "StudyDescription", "StudiesDescriptionText"),
    "se.SeriesDescription": ("Series", "rowid", "SeriesDescription", "SeriesDescriptionText"),
}

#: The attributes the database's own columns are filled from: keyword -> tag "gggg,eeee" (as
#: tagreader.tag_string spells it; written out so that opening a database for `ls` or the browser
#: does not import pydicom, about 0.4 s of a CLI command; Testing/test_database.py checks them)
DATABASE_TAGS: dict[str, str] = {
    "SpecificCharacterSet": "0008,0005", "PatientName": "0010,0010", "PatientID": "0010,0020",
    "PatientBirthDate": "0010,0030", "PatientBirthTime": "0010,0032", "PatientSex": "0010,0040",
    "PatientAge": "0010,1010", "PatientComments": "0010,4000", "StudyInstanceUID": "0020,000d",
    "StudyID": "0020,0010", "StudyDate": "0008,0020", "StudyTime": "0008,0030", "StudyDescription": "0008,1030",
    "AccessionNumber": "0008,0050", "InstitutionName": "0008,0080", "ReferringPhysicianName": "0008,0090",
    "PerformingPhysicianName": "0008,1050", "SeriesInstanceUID": "0020,000e", "SeriesNumber": "0020,0011",
    "SeriesDate": "0008,0021", "SeriesTime": "0008,0031", "SeriesDescription": "0008,103e", "Modality": "0008,0060",
    "BodyPartExamined": "0018,0015", "FrameOfReferenceUID": "0020,0052", "AcquisitionNumber": "0020,0012",
    "ContrastBolusAgent": "0018,0010", "ScanningSequence": "0018,0020", "EchoNumbers": "0018,0086",
    "TemporalPositionIdentifier": "0020,0100", "SOPInstanceUID": "0008,0018", "SOPClassUID": "0008,0016",
    "InstanceNumber": "0020,0013", "NumberOfFrames": "0028,0008",
}
DATABASE_KEYWORDS = tuple(DATABASE_TAGS)

_TRIGRAM: bool | None = None


def trigram_available() -> bool:
    """Whether this process's SQLite has FTS5 with the trigram tokenizer (3.34 or later, built
    with FTS5). Without it a substring filter reads its whole table, as before the index."""
    global _TRIGRAM
    if _TRIGRAM is None:
        try:
            probe = sqlite3.connect(":memory:")
            probe.execute("CREATE VIRTUAL TABLE t USING fts5(a, tokenize='trigram')")
            probe.close()
            _TRIGRAM = True
        except sqlite3.Error:
            _TRIGRAM = False
    return _TRIGRAM


def _text_trigger_names() -> list[str]:
    return [f"{fts}{event}" for _, _, _, fts in _TEXT_INDEXES.values() for event in ("Insert", "Delete", "Update")]


def _text_index_sql() -> list[str]:
    """The FTS5 tables and their triggers. The update trigger fires only when the text changed
    (an import's upsert sets the description on every instance it stores)."""
    statements = []
    for table, rowid, column, fts in _TEXT_INDEXES.values():
        statements += [
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({column}, content='{table}',"
            f" content_rowid='{rowid}', tokenize='trigram')",
            f"CREATE TRIGGER IF NOT EXISTS {fts}Insert AFTER INSERT ON {table} BEGIN"
            f" INSERT INTO {fts} (rowid, {column}) VALUES (new.{rowid}, new.{column}); END",
            f"CREATE TRIGGER IF NOT EXISTS {fts}Delete AFTER DELETE ON {table} BEGIN"
            f" INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.{rowid}, old.{column}); END",
            f"CREATE TRIGGER IF NOT EXISTS {fts}Update AFTER UPDATE OF {column} ON {table}"
            f" WHEN old.{column} IS NOT new.{column} BEGIN"
            f" INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.{rowid}, old.{column});"
            f" INSERT INTO {fts} (rowid, {column}) VALUES (new.{rowid}, new.{column}); END",
        ]
    return statements


class _OlderSchema(Exception):
    """Internal: an older DICOMBrowser schema that SCHEMA_UPGRADES cannot upgrade in place."""


def _older_own_schema(version: str) -> bool:
    """True for '0.8.1+dicombrowser.N' with N below ours (ours to rebuild); newer or foreign: False."""
    prefix, _, number = version.rpartition("+dicombrowser.")
    current = SCHEMA_VERSION.rpartition("+dicombrowser.")[2]
    return bool(prefix) and number.isdigit() and int(number) < int(current)


REBUILD_HINT = "`dicombrowser --database <folder> db rebuild` re-indexes its files and keeps the old index aside"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _int_or_none(text: str | None) -> int | None:
    """IS/US strings to int; '' and garbage to None (a bad number must not stop an import)."""
    if not text:
        return None
    first = text.split("\\")[0].strip()
    try:
        return int(first)
    except ValueError:
        try:
            return int(float(first))
        except ValueError:
            return None


def normalized_name(name: str) -> str:
    """Person name without trailing empty components/blanks, so 'Doe^John^^^' == 'Doe^John'."""
    return name.rstrip(" ^=")


def patient_key(patient_id: str, patient_name: str, study_uid: str) -> str:
    """The identity of a patient: (PatientID, PatientName), or the study when both are empty.

    CTK rejects files whose PatientID and PatientName are both empty; we keep them, one anonymous
    patient per study, so unrelated anonymous studies are never merged into one patient.
    """
    patient_id = patient_id.strip()
    patient_name = normalized_name(patient_name.strip())
    if patient_id or patient_name:
        return f"{patient_id}\x1f{patient_name}"
    return f"\x1fstudy:{study_uid}"


def patient_uid_for_key(key: str) -> str:
    """Stable public patient key: the same patient gets the same key in every database."""
    return "patient-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def safe_name(text: str) -> str:
    """A file-name component from a UID that can never escape its folder ('/', '..', NUL...)."""
    cleaned = _SAFE_NAME.sub("_", text)[:80]
    if cleaned != text or not cleaned or cleaned.startswith("."):
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"x{cleaned.lstrip('.')}_{digest}"
    return cleaned


@dataclass
class InstanceRecord:
    """What the indexer learned about one file, ready to be stored."""

    path: str                      # absolute path of the file as found (source, when copying); must be absolute
    size: int
    mtime_ns: int
    values: dict[str, str]         # tag "gggg,eeee" -> value string (tagreader.format_value)
    transfer_syntax: str = ""
    pixel_data_offset: int | None = None
    pixel_data_length: int | None = None

    def value(self, keyword: str) -> str:
        return self.values.get(DATABASE_TAGS[keyword], "") or ""


@dataclass
class StoreOutcome:
    """What happened to one record: indexed, updated, unchanged, duplicate or relinked."""

    status: str
    sop_instance_uid: str
    path: str
    detail: str = ""


@dataclass
class VerifyReport:
    """Result of `verify`: entries whose files are gone or changed since indexing."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)   # absolute paths
    changed: list[str] = field(default_factory=list)
    removed: int = 0                                   # entries removed by repair
    reindexed: int = 0                                 # changed files indexed again by repair
    unindexed: list[str] = field(default_factory=list)  # files under dicom/ the index lacks (orphans)
    partial: list[str] = field(default_factory=list)    # stale temporary files (.part) under dicom/
    recovered: int = 0                                 # orphans indexed by repair
    partial_removed: int = 0                           # stale temporary files removed by repair

    @property
    def problems(self) -> bool:
        return bool(self.missing or self.changed or self.unindexed or self.partial)


class DICOMDatabase:
    """An index of DICOM files (Patient / Study / Series / Instance) plus a tag cache."""

    def __init__(self, folder: str | os.PathLike, *, create: bool = True, check: bool = False):
        """Open (or create) the database in `folder`.

        Opening costs the same at any size: the schema version is read and both files' headers,
        nothing more. The full integrity check (`check_integrity`) runs when `check` is true, when
        the last process to use the database did not close it (its write-ahead log was left
        behind), and in `db verify`.
        """
        self.folder = Path(folder).expanduser().resolve()
        self._open_lock: int | None = None
        self._check_requested = check
        self.images_folder = self.folder / IMAGES_FOLDER
        self._delete_on_close = False
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False
        self._patient_uids: dict[str, int] = {}  # PatientKey -> Patients.UID (write-side cache)
        self._generation = -1  # Generation value after our last commit
        self._tag_sets_by_key: dict[str, int] = {}
        self._tag_sets_by_id: dict[int, dict[str, int]] = {}
        self._text_index = False  # substring filters can use the FTS5 indexes (_settle_text_index)
        if not (self.folder / DATABASE_FILE).exists():
            if not create:
                raise DatabaseError(f"{self.folder}: no DICOM database here ({DATABASE_FILE} missing)")
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseError(f"{self.folder}: cannot create database folder: {error}") from error
        try:
            self._open()
        except _OlderSchema as older:
            self._rebuild_older(str(older))
        except DatabaseError:
            if not self._tag_cache_damaged():
                raise
            self._set_tag_cache_aside()
            self._open()

    def _tag_cache_damaged(self) -> bool:
        """True when ctkDICOMTagCache.sql itself is unreadable or fails its integrity check."""
        path = self.folder / TAGCACHE_FILE
        if not path.exists():
            return False
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return [row[0] for row in connection.execute("PRAGMA quick_check")] != ["ok"]
            finally:
                connection.close()
        except sqlite3.DatabaseError:
            return True

    def _set_tag_cache_aside(self) -> None:
        """The tag cache is only a cache: keep the damaged file as *.bak and start an empty one.
        Values are then read from the files again (and cached again) when asked for."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = self.folder / f"{TAGCACHE_FILE}{suffix}"
            if old.exists():
                os.replace(old, self.folder / f"{TAGCACHE_FILE}{suffix}.{stamp}.bak")
        logger.warning("%s: damaged tag cache set aside; starting an empty one", self.folder / TAGCACHE_FILE)
        self._closed = False
        self._local = threading.local()

    def _rebuild_older(self, version: str) -> None:
        """An index written by an older DICOMBrowser without an in-place upgrade: rebuild it from the
        files (the old index is kept aside as *.bak), then open the new one."""
        from .indexer import rebuild

        logger.warning("%s: schema %s is older than %s; rebuilding the index from the files",
                       self.folder, version, SCHEMA_VERSION)
        rebuilt, summary, moved = rebuild(self.folder)
        rebuilt.close()
        logger.warning("%s: rebuilt, %d instances; old index kept as %s", self.folder, summary.indexed,
                       ", ".join(p.name for p in moved))
        self._closed = False
        self._local = threading.local()
        self._open()

    @classmethod
    def temporary(cls) -> "DICOMDatabase":
        """A throw-away database (for 'open a folder without a database'); deleted on close()."""
        folder = tempfile.mkdtemp(prefix="dicombrowser-db-")
        database = cls(folder)
        database._delete_on_close = True
        return database

    @property
    def is_temporary(self) -> bool:
        return self._delete_on_close

    # --- connections ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.folder / DATABASE_FILE, timeout=30.0, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA busy_timeout = 30000")
            connection.execute("ATTACH DATABASE ? AS tagcache", (str(self.folder / TAGCACHE_FILE),))
            for schema in ("main", "tagcache"):
                self._enable_wal(connection, schema)
            connection.execute("PRAGMA main.synchronous = NORMAL")
            connection.execute("PRAGMA tagcache.synchronous = NORMAL")
            connection.execute(f"PRAGMA main.cache_size = -{CACHE_KIB}")
            # every join has its index: a temporary one built per query would read a whole table
            connection.execute("PRAGMA automatic_index = OFF")
        except sqlite3.DatabaseError as error:
            raise DatabaseError(f"{self.folder / DATABASE_FILE}: cannot open database: {error}. {REBUILD_HINT}") from error
        connection.row_factory = sqlite3.Row
        return connection

    def _enable_wal(self, connection: sqlite3.Connection, schema: str) -> None:
        """WAL mode (persistent in the file). Switching needs an exclusive lock and SQLite does not
        wait for it, so two processes creating a database at once retry here."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                if connection.execute(f"PRAGMA {schema}.journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute(f"PRAGMA {schema}.journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise DatabaseError(f"{self.folder}: database is closed")
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; bumps the generation counter so pollers see the change."""
        with self._write_lock:
            connection = self._conn()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:  # locked by another process for longer than the busy timeout
                raise DatabaseError(f"{self.folder / DATABASE_FILE}: cannot start a write: {error}") from error
            try:
                generation = connection.execute("SELECT Value FROM Generation WHERE Id = 0").fetchone()[0]
                if generation != self._generation:
                    self._clear_write_caches()  # another process wrote (and may have deleted) since our last write
                yield connection
                connection.execute("UPDATE Generation SET Value = Value + 1 WHERE Id = 0")
                connection.execute("COMMIT")
                self._generation = generation + 1
            except BaseException as error:
                if connection.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                    connection.execute("ROLLBACK")
                self._clear_write_caches()  # they may hold ids of rolled-back rows
                if isinstance(error, sqlite3.Error):  # disk full, read-only folder, corruption...
                    raise DatabaseError(f"{self.folder / DATABASE_FILE}: write failed: {error}") from error
                raise

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """For a large import: checkpoint the WAL once at the end instead of every ~4 MB.

        Each automatic checkpoint copies (and fsyncs) pages that the next batches dirty again; one
        checkpoint at the end writes each page once. Readers are unaffected (WAL).
        """
        connection = self._conn()
        connection.execute("PRAGMA main.wal_autocheckpoint = 50000")
        connection.execute("PRAGMA tagcache.wal_autocheckpoint = 50000")
        try:
            yield
        finally:
            connection.execute("PRAGMA main.wal_autocheckpoint = 1000")
            connection.execute("PRAGMA tagcache.wal_autocheckpoint = 1000")
            for schema in ("main", "tagcache"):
                try:
                    connection.execute(f"PRAGMA {schema}.wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError as error:  # busy: a later commit checkpoints instead
                    logger.debug("checkpoint of %s skipped: %s", schema, error)

    def _clear_write_caches(self) -> None:
        self._patient_uids.clear()
        self._tag_sets_by_key.clear()
        self._tag_sets_by_id.clear()

    def _open(self) -> None:
        unclean = self._check_requested or self._last_close_unclean()
        connection = self._conn()
        try:
            schema = [tuple(row) for row in connection.execute(
                "SELECT type, name FROM main.sqlite_master WHERE type IN ('table', 'trigger')")]
            tables = {name for kind, name in schema if kind == "table"}
            triggers = {name for kind, name in schema if kind == "trigger"}
            connection.execute("SELECT COUNT(*) FROM tagcache.sqlite_master").fetchone()  # its header and schema
        except sqlite3.DatabaseError as error:
            self.close()
            raise DatabaseError(f"{self.folder / DATABASE_FILE}: not a readable SQLite database: {error}. "
                                f"{REBUILD_HINT}") from error
        if not tables:
            self._create_schema(connection)
            tables, triggers = set(), set()
        elif "SchemaInfo" not in tables:
            self.close()
            raise SchemaVersionError(f"{self.folder / DATABASE_FILE}: no SchemaInfo table; not a DICOM database we "
                                     f"know. {REBUILD_HINT}")
        else:
            row = connection.execute("SELECT Version FROM SchemaInfo").fetchone()
            version = row[0] if row else ""
            if version != SCHEMA_VERSION:
                if version in SCHEMA_UPGRADES:
                    self._upgrade(connection, version)
                elif _older_own_schema(version):
                    self.close()
                    raise _OlderSchema(version)
                else:
                    self.close()
                    kind = "a 3D Slicer/CTK database" if version and "+dicombrowser" not in version else "unknown"
                    raise SchemaVersionError(
                        f"{self.folder / DATABASE_FILE}: schema version {version!r} ({kind}) is not "
                        f"{SCHEMA_VERSION!r}; refusing to open it so nothing is damaged. {REBUILD_HINT}")
            # The tag cache is only a cache: make sure its tables exist (it may have been deleted).
            connection.executescript(self._schema_sql(tagcache_only=True))
        if unclean:
            self._quick_check(connection)
        self._settle_text_index(connection, tables, triggers)

    def _settle_text_index(self, connection: sqlite3.Connection, tables: set[str], triggers: set[str]) -> None:
        """Make the substring indexes (`_TEXT_INDEXES`) usable, or stop maintaining them.

        The rule: the FTS5 tables are in step exactly when all their triggers exist. A database
        without them (created before them, or by a SQLite without the trigram tokenizer) gets them
        built once from the tables when this SQLite has the tokenizer (a few seconds at a million
        instances). A SQLite without it cannot write to them, so it drops the triggers (writes go
        on; the index is rebuilt by the next open with the tokenizer) and substring filters read
        their table, as they did before the index.
        """
        wanted = set(_text_trigger_names())
        fts_tables = {fts for _, _, _, fts in _TEXT_INDEXES.values()}
        self._text_index = False
        if trigram_available():
            if not (wanted <= triggers and fts_tables <= tables):
                if tables:  # an existing database: once, and it takes a moment
                    logger.warning("%s: building the substring indexes of names, IDs and descriptions", self.folder)
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    present = {row[0] for row in connection.execute(
                        "SELECT name FROM main.sqlite_master WHERE type = 'trigger'")}
                    if not wanted <= present:  # two processes opening at once: the second finds it built
                        for statement in _text_index_sql():
                            connection.execute(statement)
                        for _, _, _, fts in _TEXT_INDEXES.values():
                            connection.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
                    connection.execute("COMMIT")
                except sqlite3.Error as error:  # a read-only folder: substring filters read their tables
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    logger.warning("%s: cannot build the substring indexes: %s", self.folder, error)
                    return
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            self._text_index = True
        elif wanted & triggers:
            logger.warning("%s: this SQLite (%s) has no FTS5 trigram tokenizer; substring filters read their"
                           " tables and the substring indexes are rebuilt by the next open with one",
                           self.folder, sqlite3.sqlite_version)
            with self._write() as writer:
                for name in sorted(wanted & triggers):
                    writer.execute(f"DROP TRIGGER IF EXISTS {name}")

    def _last_close_unclean(self) -> bool:
        """True when no other process has the database open and a write-ahead log was left behind.

        SQLite removes the log when the last connection closes; one left behind means the last
        user was killed or crashed (SQLite recovers the log itself; the check is for what a crash
        may have done besides). A shared flock on OPEN_LOCK_FILE, held while the database is open,
        tells whether anyone else has it open (their log is then legitimately there).
        """
        if fcntl is None:
            return False
        try:
            descriptor = os.open(self.folder / OPEN_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # a read-only folder: no marker, no check
            logger.debug("%s: cannot open %s: %s", self.folder, OPEN_LOCK_FILE, error)
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except OSError:
            alone = False
        left_behind = False
        if alone:
            for name in (DATABASE_FILE, TAGCACHE_FILE):
                with contextlib.suppress(OSError):
                    left_behind = left_behind or os.stat(self.folder / f"{name}-wal").st_size > 0
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        if self._open_lock is not None:
            os.close(self._open_lock)
        self._open_lock = descriptor
        if left_behind:
            logger.warning("%s: not closed cleanly last time; checking its integrity", self.folder)
        return left_behind

    def check_integrity(self) -> list[str]:
        """SQLite's quick_check of both files: [] when sound, else the problems found (for `db verify`)."""
        problems = []
        connection = self._conn()
        for schema, file_name in (("main", DATABASE_FILE), ("tagcache", TAGCACHE_FILE)):
            try:
                result = [row[0] for row in connection.execute(f"PRAGMA {schema}.quick_check")]
            except sqlite3.DatabaseError as error:
                result = [str(error)]
            if result != ["ok"]:
                problems.extend(f"{self.folder / file_name}: {line}" for line in result[:20])
        return problems

    @staticmethod
    def _schema_sql(tagcache_only: bool = False) -> str:
        text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
        if not tagcache_only:
            return text
        statements = [s for s in text.split(";") if "EXISTS tagcache." in s]
        return ";".join(statements) + ";"

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        script = self._schema_sql()
        # IMMEDIATE and "WHERE NOT EXISTS": two processes creating the same new database at once agree.
        connection.executescript(f"BEGIN IMMEDIATE;\n{script}\nINSERT INTO SchemaInfo SELECT '{SCHEMA_VERSION}'"
                                 " WHERE NOT EXISTS (SELECT 1 FROM SchemaInfo);\nCOMMIT;")
        logger.info("Created DICOM database in %s", self.folder)

    def _upgrade(self, connection: sqlite3.Connection, version: str) -> None:
        """Apply a known upgrade in one transaction; data is kept.

        After the step's SQL, schema.sql's indexes and triggers are created and every maintained
        count is computed. Two processes opening an old database at once: the second finds the
        version already current once it holds the write lock and does nothing.
        """
        logger.warning("Upgrading %s from schema %s to %s", self.folder, version, SCHEMA_VERSION)
        indexes = re.findall(r"CREATE (?:UNIQUE )?INDEX [^;]*", self._schema_sql())
        triggers = re.findall(r"CREATE TRIGGER .*?\bEND\b", self._schema_sql(), re.S)
        connection.execute("BEGIN IMMEDIATE")
        try:
            if connection.execute("SELECT Version FROM SchemaInfo").fetchone()[0] == version:
                for statement in [*SCHEMA_UPGRADES[version].split(";"), *indexes, *triggers]:
                    if statement.strip():
                        connection.execute(statement)
                self._refresh_all_counts(connection)
                connection.execute("UPDATE SchemaInfo SET Version = ?", (SCHEMA_VERSION,))
                connection.execute("UPDATE Generation SET Value = Value + 1 WHERE Id = 0")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _quick_check(self, connection: sqlite3.Connection) -> None:
        for schema, file_name in (("main", DATABASE_FILE), ("tagcache", TAGCACHE_FILE)):
            try:
                result = [row[0] for row in connection.execute(f"PRAGMA {schema}.quick_check")]
            except sqlite3.DatabaseError as error:
                result = [str(error)]
            if result != ["ok"]:
                self.close()
                raise DatabaseError(f"{self.folder / file_name}: integrity check failed: {'; '.join(result[:3])}. "
                                    f"{REBUILD_HINT}")

    def close(self) -> None:
        """Close every thread's connection; a temporary database's folder is deleted."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                connection.close()
            except sqlite3.ProgrammingError:
                pass  # closed already by its thread
        self._local = threading.local()
        if self._open_lock is not None:  # after the connections: the last one has removed the log
            os.close(self._open_lock)
            self._open_lock = None
        if self._delete_on_close and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "DICOMDatabase":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DICOMDatabase({str(self.folder)!r})"

    # --- paths ------------------------------------------------------------------------------
    def stored_filename(self, path: str | os.PathLike, copied: bool) -> str:
        """How a path is stored: relative (POSIX) inside the database folder when copied, else absolute."""
        absolute = os.path.abspath(os.fspath(path))
        if copied:
            # lexical, as Path.relative_to (abspath has normalised `absolute`; the folder is resolved),
            # in string operations: this runs twice per received instance
            prefix = os.path.join(str(self.folder), "")
            if absolute.startswith(prefix) and len(absolute) > len(prefix):
                relative = absolute[len(prefix):]
                return relative if os.sep == "/" else relative.replace(os.sep, "/")
        return absolute

    def absolute_path(self, filename: str) -> str:
        """The absolute path of a stored Filename (relative ones are inside the database folder)."""
        if os.path.isabs(filename):
            return filename
        return os.path.join(self.folder, *filename.split("/"))

    def _lookup_filename(self, path: str | os.PathLike) -> str:
        """The Filename key for a path given by a caller (absolute or already stored form)."""
        text = os.fspath(path)
        if not os.path.isabs(text) and not os.path.exists(text):
            return text
        return self.stored_filename(text, copied=True)

    def _inside(self, path: str) -> bool:
        """Lexically inside the database folder (no resolve(): `dicom/` may be a symlink)."""
        return os.path.normpath(os.path.abspath(path)).startswith(str(self.folder) + os.sep)

    def copy_destination(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Where a copied file goes: dicom/<study>/<series>/<sop>.dcm, names made safe."""
        root = str(self.images_folder)
        destination = os.path.join(root, safe_name(study_uid), safe_name(series_uid), f"{safe_name(sop_uid)}.dcm")
        # A lexical check (no resolve()): `dicom/` may legitimately be a symlink to a bigger disk.
        if os.path.normpath(destination) != destination or not destination.startswith(root + os.sep):
            raise DatabaseError(f"{self.folder}: refusing to write outside the database: {destination}")
        return Path(destination)

    # --- writing ----------------------------------------------------------------------------
    def _patient_uid(self, connection: sqlite3.Connection, record: InstanceRecord) -> int:
        patient_id = record.value("PatientID")
        patient_name = record.value("PatientName")
        key = patient_key(patient_id, patient_name, record.value("StudyInstanceUID"))
        uid = self._patient_uids.get(key)
        if uid is not None:
            return uid
        row = connection.execute("SELECT UID FROM Patients WHERE PatientKey = ?", (key,)).fetchone()
        if row is None:
            cursor = connection.execute(
                "INSERT INTO Patients (PatientsName, PatientID, PatientsBirthDate, PatientsBirthTime, PatientsSex,"
                " PatientsAge, PatientsComments, InsertTimestamp, DisplayedPatientsName, PatientKey, PatientUID)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (patient_name, patient_id, record.value("PatientBirthDate"), record.value("PatientBirthTime"),
                 record.value("PatientSex"), record.value("PatientAge"), record.value("PatientComments"), _now(),
                 patient_name.replace("^", " ").strip(), key, patient_uid_for_key(key)))
            uid = cursor.lastrowid
        else:
            uid = row[0]
        self._patient_uids[key] = uid
        return uid

    def _upsert_study_series(self, connection: sqlite3.Connection, record: InstanceRecord, patient_uid: int) -> None:
        v = record.value
        connection.execute(
            "INSERT INTO Studies (StudyInstanceUID, PatientsUID, StudyID, StudyDate, StudyTime, StudyDescription,"
            " AccessionNumber, InstitutionName, ReferringPhysician, PerformingPhysiciansName, InsertTimestamp)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (StudyInstanceUID) DO UPDATE SET"
            " PatientsUID = excluded.PatientsUID,"
            " StudyID = COALESCE(NULLIF(excluded.StudyID, ''), StudyID),"
            " StudyDate = COALESCE(NULLIF(excluded.StudyDate, ''), StudyDate),"
            " StudyTime = COALESCE(NULLIF(excluded.StudyTime, ''), StudyTime),"
            " StudyDescription = COALESCE(NULLIF(excluded.StudyDescription, ''), StudyDescription),"
            " AccessionNumber = COALESCE(NULLIF(excluded.AccessionNumber, ''), AccessionNumber)",
            (v("StudyInstanceUID"), patient_uid, v("StudyID"), v("StudyDate"), v("StudyTime"), v("StudyDescription"),
             v("AccessionNumber"), v("InstitutionName"), v("ReferringPhysicianName"), v("PerformingPhysicianName"),
             _now()))
        connection.execute(
            "INSERT INTO Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDate, SeriesTime,"
            " SeriesDescription, Modality, BodyPartExamined, FrameOfReferenceUID, AcquisitionNumber, ContrastAgent,"
            " ScanningSequence, EchoNumber, TemporalPosition, InsertTimestamp) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (SeriesInstanceUID) DO UPDATE SET StudyInstanceUID = excluded.StudyInstanceUID,"
            " SeriesNumber = COALESCE(excluded.SeriesNumber, SeriesNumber),"
            " SeriesDescription = COALESCE(NULLIF(excluded.SeriesDescription, ''), SeriesDescription),"
            " Modality = COALESCE(NULLIF(excluded.Modality, ''), Modality),"
            " BodyPartExamined = COALESCE(NULLIF(excluded.BodyPartExamined, ''), BodyPartExamined)",
            (v("SeriesInstanceUID"), v("StudyInstanceUID"), _int_or_none(v("SeriesNumber")), v("SeriesDate"),
             v("SeriesTime"), v("SeriesDescription"), v("Modality"), v("BodyPartExamined"), v("FrameOfReferenceUID"),
             _int_or_none(v("AcquisitionNumber")), v("ContrastBolusAgent"), v("ScanningSequence"),
             _int_or_none(v("EchoNumbers")), _int_or_none(v("TemporalPositionIdentifier")), _now()))

    @staticmethod
    def _check_record(record: InstanceRecord) -> None:
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not record.value(keyword):
                raise DICOMFileError(record.path, f"missing {keyword}")
        try:
            "".join(record.values.values()).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from odd decoding: SQLite stores UTF-8 only
            record.values = {tag: value.encode("utf-8", "backslashreplace").decode("utf-8")
                             for tag, value in record.values.items()}

    def store_instances(self, records: Sequence[InstanceRecord], *, copy: bool = False,
                        copied: bool = False, replace_duplicates: bool = False) -> list[StoreOutcome | DICOMFileError]:
        """Store a batch in one transaction; one outcome (or error) per record, in order.

        `copy`: copy each file into the database folder first. `copied`: the file already belongs
        to the database folder (received by the listener). Duplicates (same SOP Instance UID, old
        file still there) are reported, not stored; a SOP found at a new path whose old file is gone
        is relinked. `replace_duplicates`: the caller found these records sounder than the copies
        indexed under their SOP Instance UIDs; they take those rows over ("relinked"; with `copy`
        the file in the database folder is overwritten, "updated").
        """
        outcomes: list[StoreOutcome | DICOMFileError] = []
        copies: list[Path] = []  # made by this batch: removed again if its transaction fails
        try:
            with self._write() as connection:  # SQLite failures (disk full...) become one DatabaseError
                batch = _Batch(connection, records, self, copied=copied)
                batch.copies = copies
                batch.replace_duplicates = replace_duplicates
                self._store_batch(batch, records, outcomes, copy=copy, copied=copied)
        except BaseException as error:
            # A commit that fails on a full disk may still have committed the index's rows: with
            # WAL, a transaction over the attached tag cache is atomic per file, not across both
            # (the tag cache is only a cache: missing values are read from the file when asked).
            committed = self._committed(records, outcomes) if isinstance(error, DatabaseError) else {}
            for path in copies:  # no row points at the others: orphans on a disk that is probably full
                if str(path) not in committed.values():
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            if isinstance(error, DatabaseError):
                error.committed = list(committed)  # type: ignore[attr-defined]  # record paths whose rows exist
            raise
        return outcomes

    def _committed(self, records: Sequence[InstanceRecord], outcomes: list) -> dict[str, str]:
        """record path -> absolute path of its file, for the records of a failed batch whose Images
        row exists anyway (see store_instances)."""
        stored = {}
        for record, outcome in zip(records, outcomes):
            # only new rows: a row updated or relinked by the batch existed before it either way
            if isinstance(outcome, StoreOutcome) and outcome.status == "indexed":
                path = self.absolute_path(outcome.detail) if outcome.detail else record.path
                stored[self._lookup_filename(path)] = (record.path, path)
        found: dict[str, str] = {}
        try:
            connection = self._conn()
            for chunk in _chunks(list(stored)):
                marks = ",".join("?" * len(chunk))
                for (filename,) in connection.execute(f"SELECT Filename FROM Images WHERE Filename IN ({marks})",
                                                      chunk):
                    found[stored[filename][0]] = stored[filename][1]
        except sqlite3.Error as error:  # cannot tell: keep every copy (db verify names what is unindexed)
            logger.warning("Cannot tell which rows of a failed write were kept (%s); keeping its copies", error)
            return {source: path for source, path in stored.values()}
        return found

    def _store_batch(self, batch: "_Batch", records: Sequence[InstanceRecord],
                     outcomes: list[StoreOutcome | DICOMFileError], *, copy: bool, copied: bool) -> None:
        for record in records:
            try:
                self._check_record(record)
                outcome = self._store_one(batch, record, copy=copy, copied=copied)
            except DICOMFileError as error:
                outcome = error
            outcomes.append(outcome)
        batch.finish()

    def _store_one(self, batch: "_Batch", record: InstanceRecord, *, copy: bool, copied: bool) -> StoreOutcome:
        connection = batch.connection
        sop = record.value("SOPInstanceUID")
        study = record.value("StudyInstanceUID")
        series = record.value("SeriesInstanceUID")
        source = record.path
        if copy or (copied and not self._inside(source)):
            target = self.copy_destination(study, series, sop)
            is_copied = True
            filename = self.stored_filename(target, True)
        elif copied:
            target = Path(source)
            is_copied = True
            filename = self.stored_filename(target, True)
        else:
            target = None
            is_copied = False
            filename = source  # InstanceRecord.path is absolute
        existing = batch.existing.get(sop)
        status = "indexed"
        replaced = False
        if existing is not None and existing[0] != filename:
            old_path = self.absolute_path(existing[0])
            if os.path.exists(old_path) and not batch.replace_duplicates:
                return StoreOutcome("duplicate", sop, source, f"already indexed as {old_path}")
            status = "relinked"
            replaced = True
        elif existing is not None:
            if copy and target is not None:
                # the indexer decides which copy is sounder (indexer: validity ranking) and
                # comes back with replace_duplicates; a later file never silently overwrites
                if target.exists() and not batch.replace_duplicates:
                    return StoreOutcome("duplicate", sop, source, f"already copied to {target}")
            elif existing[1] == record.size and existing[2] == record.mtime_ns:
                return StoreOutcome("unchanged", sop, source)
            status = "updated"
            replaced = True
        if target is not None and is_copied and os.path.abspath(source) != os.path.abspath(target):
            tmp = target.with_name(partial_name(target.name))
            try:
                try:
                    shutil.copyfile(source, tmp)
                except FileNotFoundError:  # first file of its series: make the folder (once, not per file)
                    if not os.path.exists(source):
                        raise
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, tmp)
                existed = target.exists()
                os.replace(tmp, target)
                if not existed:
                    batch.copies.append(target)
            except OSError as error:
                # a full disk leaves a partial copy: removed, so that the space is given back
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise DICOMFileError(source, f"cannot copy into {target}: {_os_reason(error)}") from error
            stat = target.stat()
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
        else:
            size, mtime_ns = record.size, record.mtime_ns
        # A different instance previously stored at this very path (file overwritten): replace it.
        other = batch.owner.get(filename)
        if other is not None and other != sop:
            # counts and empty parents are settled once, in finish(), after this batch's rows exist
            batch.touched_series.update(self._delete_instances(connection, [other], refresh=False))
            batch.existing.pop(other, None)
            status = "updated"
            replaced = True
        if series not in batch.upserted:
            patient_uid = self._patient_uid(connection, record)
            batch.note_moves(series, study, patient_uid)
            self._upsert_study_series(connection, record, patient_uid)
            batch.upserted.add(series)
        batch.images.append(
            (sop, filename, series, batch.timestamp, record.value("SOPClassUID"),
             _int_or_none(record.value("InstanceNumber")), _int_or_none(record.value("NumberOfFrames")),
             int(is_copied), size, mtime_ns, record.transfer_syntax, record.pixel_data_offset,
             record.pixel_data_length))
        batch.existing[sop] = (filename, size, mtime_ns)
        batch.owner[filename] = sop
        if replaced:
            batch.replaced = True
            if sop in batch.old_series:  # the replaced row's series loses it (when it is another series)
                batch.touched_series.add(batch.old_series[sop])
            connection.execute("DELETE FROM tagcache.TagCache WHERE SOPInstanceUID = ?", (sop,))
        batch.add_tags(sop, record.values)
        return StoreOutcome(status, sop, source, filename if is_copied else "")

    def _tag_set_id(self, connection: sqlite3.Connection, tags: tuple[str, ...]) -> int:
        """Id of a packed tag list (TagSets); an import stores one list for all its instances."""
        key = "\\".join(tags)
        cached = self._tag_sets_by_key.get(key)
        if cached is not None:
            return cached
        row = connection.execute("SELECT Id FROM tagcache.TagSets WHERE Tags = ?", (key,)).fetchone()
        if row is None:
            row = (connection.execute("INSERT INTO tagcache.TagSets (Tags) VALUES (?)", (key,)).lastrowid,)
        self._tag_sets_by_key[key] = row[0]
        self._tag_sets_by_id[row[0]] = {tag: index for index, tag in enumerate(tags)}
        return row[0]

    def _tag_set(self, tag_set_id: int) -> dict[str, int]:
        cached = self._tag_sets_by_id.get(tag_set_id)
        if cached is None:
            row = self._conn().execute("SELECT Tags FROM tagcache.TagSets WHERE Id = ?", (tag_set_id,)).fetchone()
            tags = row[0].split("\\") if row else []
            cached = {tag: index for index, tag in enumerate(tags)}
            self._tag_sets_by_id[tag_set_id] = cached
        return cached

    def index_file(self, path: str | os.PathLike, *, copied: bool) -> str:
        """Index one file now (the listener's entry point); returns its SOPInstanceUID.

        `copied=True`: the file belongs to the database (kept under images_folder; copied there
        when it is elsewhere). Raises DICOMFileError when it is not a readable DICOM instance.
        """
        from .indexer import scan_for_database

        record = scan_for_database(os.fspath(path))
        outcome = self.store_instances([record], copied=copied)[0]
        if isinstance(outcome, DICOMFileError):
            raise outcome
        return outcome.sop_instance_uid

    # --- deleting ---------------------------------------------------------------------------
    def _delete_instances(self, connection: sqlite3.Connection, sop_uids: Sequence[str],
                          refresh: bool = True) -> set[str]:
        """Remove instances; returns the series they were in. With `refresh`, those series'
        counts (and their studies' and patients') are settled and the ones left empty removed:
        the cost is what is deleted, never a sweep of the whole database."""
        series: set[str] = set()
        for chunk in _chunks(list(sop_uids)):
            marks = ",".join("?" * len(chunk))
            series.update(row[0] for row in connection.execute(
                f"SELECT DISTINCT SeriesInstanceUID FROM Images WHERE SOPInstanceUID IN ({marks})", chunk))
            connection.execute(f"DELETE FROM Images WHERE SOPInstanceUID IN ({marks})", chunk)
            connection.execute(f"DELETE FROM tagcache.TagCache WHERE SOPInstanceUID IN ({marks})", chunk)
            connection.execute(f"DELETE FROM tagcache.InstanceTags WHERE SOPInstanceUID IN ({marks})", chunk)
        if refresh:
            self._refresh_counts(connection, series)
        return series

    def _refresh_counts(self, connection: sqlite3.Connection, series_uids: Iterable[str],
                        study_uids: Iterable[str] = (), patient_ids: Iterable[int] = ()) -> None:
        """Recount the given series, their studies and patients (plus the studies and patients
        given: a series or study moved away from them); remove those left empty.

        Counts are kept in the rows so that listing costs what is listed. A series is recounted
        from the Images index (its instances), a study from its series' counts, a patient from
        its studies': each costs the children of what the write touched, nothing more.
        """
        studies = set(study_uids)
        patients = set(patient_ids)
        for chunk in _chunks(sorted(series_uids)):
            marks = ",".join("?" * len(chunk))
            studies.update(row[0] for row in connection.execute(
                f"SELECT DISTINCT StudyInstanceUID FROM Series WHERE SeriesInstanceUID IN ({marks})", chunk))
            connection.execute(
                "UPDATE Series SET NumberOfInstances = (SELECT COUNT(*) FROM Images i"
                "   WHERE i.SeriesInstanceUID = Series.SeriesInstanceUID),"
                " NumberOfFrames = (SELECT COALESCE(SUM(COALESCE(i.NumberOfFrames, 1)), 0) FROM Images i"
                "   WHERE i.SeriesInstanceUID = Series.SeriesInstanceUID)"
                f" WHERE SeriesInstanceUID IN ({marks})", chunk)
            connection.execute(f"DELETE FROM Series WHERE SeriesInstanceUID IN ({marks}) AND NumberOfInstances = 0",
                               chunk)
        for chunk in _chunks(sorted(studies)):
            marks = ",".join("?" * len(chunk))
            patients.update(row[0] for row in connection.execute(
                f"SELECT DISTINCT PatientsUID FROM Studies WHERE StudyInstanceUID IN ({marks})", chunk))
            connection.execute(f"UPDATE Studies SET {_STUDY_COUNTS} WHERE StudyInstanceUID IN ({marks})", chunk)
            connection.execute(f"DELETE FROM Studies WHERE StudyInstanceUID IN ({marks}) AND NumberOfSeries = 0", chunk)
        for chunk in _chunks(sorted(patients)):
            marks = ",".join("?" * len(chunk))
            connection.execute(f"UPDATE Patients SET {_PATIENT_COUNTS} WHERE UID IN ({marks})", chunk)
            if connection.execute(f"DELETE FROM Patients WHERE UID IN ({marks}) AND NumberOfStudies = 0",
                                  chunk).rowcount:
                self._patient_uids.clear()

    @staticmethod
    def _refresh_all_counts(connection: sqlite3.Connection) -> None:
        """Every maintained count computed afresh (the schema upgrade; `db verify --repair`)."""
        connection.execute(
            "UPDATE Series SET NumberOfInstances = (SELECT COUNT(*) FROM Images i"
            "   WHERE i.SeriesInstanceUID = Series.SeriesInstanceUID),"
            " NumberOfFrames = (SELECT COALESCE(SUM(COALESCE(i.NumberOfFrames, 1)), 0) FROM Images i"
            "   WHERE i.SeriesInstanceUID = Series.SeriesInstanceUID)")
        connection.execute(f"UPDATE Studies SET {_STUDY_COUNTS}")
        connection.execute(f"UPDATE Patients SET {_PATIENT_COUNTS}")

    def _delete_orphans(self, connection: sqlite3.Connection) -> None:
        """Series without images, studies without series, patients without studies go (a sweep
        of every table: for repairs only; deletes and imports settle what they touch)."""
        connection.execute("DELETE FROM Series WHERE NOT EXISTS"
                           " (SELECT 1 FROM Images i WHERE i.SeriesInstanceUID = Series.SeriesInstanceUID)")
        connection.execute("DELETE FROM Studies WHERE NOT EXISTS"
                           " (SELECT 1 FROM Series s WHERE s.StudyInstanceUID = Studies.StudyInstanceUID)")
        connection.execute("DELETE FROM Patients WHERE NOT EXISTS"
                           " (SELECT 1 FROM Studies s WHERE s.PatientsUID = Patients.UID)")
        self._patient_uids.clear()

    def delete(self, uids: str | Sequence[str], remove_copied_files: bool = False) -> int:
        """Remove patients/studies/series/instances (one UID or many, in one transaction);
        returns how many instances went.

        Unknown UIDs raise NotFoundError before anything is removed. Referenced files are never
        touched; files copied into the database folder are removed only when
        `remove_copied_files` is true.
        """
        levels: dict[str, str] = {}
        for uid in [uids] if isinstance(uids, str) else uids:
            level = self.level_of(uid)
            if level is None:
                raise NotFoundError(f"{uid}: no patient, study, series or instance with this UID in {self.folder}")
            levels[uid] = level
        rows = [row for uid, level in levels.items() for row in self._image_rows_for_uid(uid, level)]
        with self._write() as connection:  # all or nothing: one transaction for every UID given
            self._delete_instances(connection, list(dict.fromkeys(row["SOPInstanceUID"] for row in rows)))
        if remove_copied_files:
            for row in rows:
                if row["Copied"]:
                    self._remove_copied_file(self.absolute_path(row["Filename"]))
        for uid, level in levels.items():
            logger.info("Deleted %s %s", level, uid)
        return len({row["SOPInstanceUID"] for row in rows})

    def _remove_copied_file(self, path: str) -> None:
        target = Path(path)
        if not target.resolve().is_relative_to(self.images_folder.resolve()):
            logger.warning("Not removing %s: outside %s", target, self.images_folder)
            return
        try:
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != self.images_folder and parent.is_relative_to(self.images_folder) and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        except OSError as error:
            logger.warning("Could not remove copied file %s: %s", target, error)

    # --- browsing ---------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    def patients(self, *, limit: int | None = None, offset: int = 0, after: Any = None,
                 **filters: Any) -> list[dict[str, Any]]:
        """Patients matching the filters, with study/series/instance counts, by name.

        Paging (every level): `limit` rows from `offset`, or the `limit` rows after `after` (the
        last row of the previous page, or its UID): keyset paging, whose cost does not grow with
        the position, for scrolling.
        """
        return list(self.browse_rows("patients", limit=limit, offset=offset, after=after, **filters))

    def studies(self, patient_uid: str | None = None, *, limit: int | None = None, offset: int = 0,
                after: Any = None, **filters: Any) -> list[dict[str, Any]]:
        """Studies (of one patient, or all) matching the filters, with series/instance counts."""
        if patient_uid is not None:
            filters["PatientUID"] = patient_uid
        return list(self.browse_rows("studies", limit=limit, offset=offset, after=after, **filters))

    def series(self, study_uid: str | None = None, *, limit: int | None = None, offset: int = 0,
               after: Any = None, **filters: Any) -> list[dict[str, Any]]:
        """Series (of one study, or all) matching the filters, with instance counts."""
        if study_uid is not None:
            filters["StudyInstanceUID"] = study_uid
        return list(self.browse_rows("series", limit=limit, offset=offset, after=after, **filters))

    def instances(self, series_uid: str | None = None, *, limit: int | None = None, offset: int = 0,
                  after: Any = None, **filters: Any) -> list[dict[str, Any]]:
        """Instances (of one series, or all) matching the filters, with absolute file paths."""
        if series_uid is not None:
            filters["SeriesInstanceUID"] = series_uid
        return list(self.browse_rows("instances", limit=limit, offset=offset, after=after, **filters))

    def browse_rows(self, level: str, *, limit: int | None = None, offset: int = 0, after: Any = None,
                    from_patient: dict[str, Any] | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """The rows of one level ("patients", "studies", "series", "instances") as they are read:
        what `patients()`... return, streamed (the CLI prints a large answer while reading it).
        `from_patient` (a row of `patients()`): start at that patient's rows (a tree's page)."""
        sql, params = self.browse_query(level, limit=limit, offset=offset, after=after, from_patient=from_patient,
                                        **filters)
        for row in self._conn().execute(sql, params):
            item = dict(row)
            if level == "instances":
                item["FilePath"] = self.absolute_path(item.pop("Filename"))
                item["Copied"] = bool(item["Copied"])
            yield item

    def browse_query(self, level: str, *, limit: int | None = None, offset: int = 0, after: Any = None,
                     from_patient: dict[str, Any] | None = None, **filters: Any) -> tuple[str, list[Any]]:
        """The SQL and parameters `browse_rows` runs (tests read their query plans).

        Rows come in the order of the indexes (schema.sql), so a page is read, not sorted.
        Filters on the level itself or above it apply to the rows' own tables; filters below it
        (a patient list filtered by modality) become one `IN (...)` over the tables from the
        deepest filtered level up, so the join never starts from every row of the level.
        """
        if level not in _LEVELS:
            raise ValueError(f"unknown level {level!r}; known: {', '.join(_LEVELS)}")
        depth = _LEVELS.index(level)
        where: list[str] = []
        params: list[Any] = []
        conditions = _conditions(filters, self._text_index)
        deeper = [condition for condition in conditions if condition.level > depth]
        # Without a filter an index can find (none, or substrings no index holds), walk the levels
        # in their order from the patients' name index (CROSS JOIN fixes SQLite's join order): a
        # page then costs its rows. With one, SQLite starts from the filter's index and sorts what
        # matched (the unary + keeps it from walking the name index instead, which reads every
        # patient when few match): the cost grows with the answer, not with the database. For a
        # page whose filters match many rows (SORT_AT_MOST or more), walking in order is what
        # stops early: the filters are then checked on the way (`walk_sql`). A substring is
        # first narrowed to its rare trigrams (`_narrow_substrings`), which also tells dense
        # from sparse without reading the common ones.
        self._narrow_substrings(conditions)
        walk = not any(condition.indexed for condition in conditions)
        few = False  # a page whose rows a sparse filter's index finds
        if not walk and limit is not None and not deeper:
            walk = self._dense(conditions)
            few = not walk
        for condition in conditions:
            if condition.level <= depth:
                # a substring found in many rows, beside a filter whose index finds few: tested on those rows
                row_test = walk or (few and condition.probes and not condition.sparse)
                where.append(condition.walk_sql if row_test else condition.sql)
                params.extend(condition.walk_params if row_test else condition.params)
        if deeper:
            deepest = max(condition.level for condition in deeper)
            child_column, own_column = _PARENT_LINK[depth + 1]
            where.append(f"{own_column} IN (SELECT {child_column} FROM {_tables(depth + 1, deepest)}"
                         f" WHERE {' AND '.join(condition.sql for condition in deeper)})")
            params.extend(value for condition in deeper for value in condition.params)
        order = _order(depth)
        sort = order if walk else [f"+{order[0]}", *order[1:]]
        if from_patient is not None:
            key = (from_patient["PatientName"], from_patient["PatientID"], from_patient["PatientUID"])
            where.append(f"{order[0]} >= ?")
            where.append(f"({', '.join(sort[:3])}) >= (?, ?, ?)")
            params.extend([key[0], *key])
        if after is not None:
            key = self._after_key(depth, after)
            # the first term alone lets SQLite seek its index; the row value decides the rest
            where.append(f"{order[0]} >= ?")
            where.append(f"({', '.join(sort)}) > ({', '.join('?' * len(order))})")
            params.extend([key[0], *key])
        paging = [-1 if limit is None else max(0, int(limit)), max(0, int(offset))]
        if (depth == 1 and not walk and limit is not None and from_patient is None and conditions
                and all(condition.level == 1 for condition in conditions)):
            # a sorted page of studies filtered on their own columns (a date, a month): the page's
            # rows are chosen from Studies alone, sorted by the patient's order columns copied
            # there (from StudiesDateIndex2's entries for a date), and only they are joined to
            # their patients; joining every match first made the sort grow with the matches
            def copies(text: str) -> str:
                for term, copy in _STUDY_ORDER_COPIES.items():
                    text = text.replace(term, copy)
                return text
            page = (f"SELECT st.rowid FROM Studies st WHERE {copies(' AND '.join(where))}"
                    f" ORDER BY {copies(', '.join(sort))} LIMIT ? OFFSET ?")
            sql = (f"SELECT {_SELECT[depth]} FROM Studies st CROSS JOIN Patients p ON p.UID = st.PatientsUID"
                   f" WHERE st.rowid IN ({page}) ORDER BY {', '.join(sort)}")
            return sql, [*params, *paging]
        # instances are reached from their series, unless the filter names one
        images_last = not any(condition.level == 3 for condition in conditions)
        sql = f"SELECT {_SELECT[depth]} FROM {_tables(0, depth, cross=walk, images_last=images_last)}"
        if where:
            sql += f" WHERE {' AND '.join(where)}"
        sql += f" ORDER BY {', '.join(sort)}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params.extend(paging)
        return sql, params

    def _dense(self, conditions: list[_Condition]) -> bool:
        """Whether every filter an index can find finds at least SORT_AT_MOST rows (read up to
        that many, so the answer costs the same at any size). A substring has been told by its
        trigrams' counts (`_narrow_substrings`)."""
        for condition in conditions:
            if not condition.indexed:
                continue
            if condition.probes:
                if condition.sparse:
                    return False
                continue
            rows = f"SELECT 1 FROM {_TABLES[condition.level]} WHERE {condition.sql}"
            found = self._conn().execute(f"SELECT COUNT(*) FROM ({rows} LIMIT ?)",
                                         [*condition.params, SORT_AT_MOST]).fetchone()[0]
            if found < SORT_AT_MOST:
                return False
        return True

    def _narrow_substrings(self, conditions: list[_Condition]) -> None:
        """Count the rows of every trigram of the substrings the trigram indexes can find, up to
        SORT_AT_MOST each. A substring with a rare trigram (in fewer rows than that) is `sparse`:
        its candidates are the rows holding its rarest trigrams, read from the index (at most
        SORT_AT_MOST rows, whatever the size). Without one, every trigram is common: a page walks
        in order (the rows holding them all may still be few: then the walk reads far, and an
        answer without a page reads the whole substring from the index).

        The counts are read in one statement, first up to RARE_FIRST rows each (a substring with
        a trigram that rare is decided by that), then up to SORT_AT_MOST for the others: a common
        trigram costs its SORT_AT_MOST rows (about 0.3 ms) only when no trigram is that rare.

        Why: the index's own substring search reads the rows of every trigram of the pattern, and
        a pattern's common trigrams (`Nam` in 20,000 names all starting `Name0`) cost what a scan did."""
        pending = [condition for condition in conditions if condition.probes]
        for cap in sorted({min(RARE_FIRST, SORT_AT_MOST), SORT_AT_MOST}):
            if not pending:
                return
            counted = [(probe, token) for condition in pending for probe in condition.probes for token in probe.tokens]
            sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM (SELECT 1 FROM {probe.fts} WHERE {probe.fts} MATCH ?"
                                        f" LIMIT {cap}))" for probe, _ in counted)
            found = self._conn().execute(sql, [_phrases([token]) for _, token in counted]).fetchone()
            counts = {(id(probe), token): count for (probe, token), count in zip(counted, found)}
            undecided = []
            for condition in pending:
                rare = [sorted((counts[id(probe), token], token) for token in probe.tokens
                               if counts[id(probe), token] < cap) for probe in condition.probes]
                if all(rare):
                    # the rarest, with up to two more in at most 4 times its rows: intersecting a
                    # longer list in the index costs more than testing the rows it would remove
                    condition.narrow([[token for count, token in tokens[:3] if count <= 4 * tokens[0][0]]
                                      for tokens in rare])
                else:
                    undecided.append(condition)
            pending = undecided

    def _after_key(self, depth: int, after: Any) -> tuple:
        """The ordering values of the row a page continues after (read again by its UID; for a
        row deleted meanwhile, taken from the row itself when it holds them)."""
        order = _order(depth)
        uid = after if isinstance(after, str) else after.get(_KEY_FIELDS[depth])
        row = self._conn().execute(f"SELECT {', '.join(order)} FROM {_tables(0, depth)}"
                                   f" WHERE {_KEY_COLUMNS[depth]} = ?", (uid,)).fetchone()
        if row is not None:
            return tuple(row)
        if isinstance(after, dict) and all(_ORDER_FIELDS.get(term) in after for term in order):
            return tuple(_NO_NUMBER if after[_ORDER_FIELDS[term]] is None and "IFNULL" in term
                         else after[_ORDER_FIELDS[term]] for term in order)
        raise NotFoundError(f"{uid}: the row to continue after is no longer in {self.folder}; start from the first page")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in this thread see one state of the database (several queries of one answer,
        such as `tree`'s, agree even while another process writes). For reads only."""
        connection = self._conn()
        if connection.in_transaction:
            yield
            return
        connection.execute("BEGIN")
        try:
            yield
        finally:
            if connection.in_transaction:
                connection.execute("COMMIT")

    def level_of(self, uid: str) -> str | None:
        """Which level a UID (or patient key) belongs to, or None when unknown."""
        for level, sql in (
            ("patient", "SELECT 1 FROM Patients WHERE PatientUID = ?"),
            ("study", "SELECT 1 FROM Studies WHERE StudyInstanceUID = ?"),
            ("series", "SELECT 1 FROM Series WHERE SeriesInstanceUID = ?"),
            ("instance", "SELECT 1 FROM Images WHERE SOPInstanceUID = ?"),
        ):
            if self._conn().execute(sql, (uid,)).fetchone():
                return level
        return None

    def _image_rows_for_uid(self, uid: str, level: str | None = None) -> list[sqlite3.Row]:
        level = level or self.level_of(uid)
        column = {"patient": "p.PatientUID", "study": "st.StudyInstanceUID", "series": "se.SeriesInstanceUID",
                  "instance": "i.SOPInstanceUID"}.get(level or "")
        if column is None:
            return []
        return self._rows(
            "SELECT i.SOPInstanceUID, i.Filename, i.Copied, i.SeriesInstanceUID, i.FileSize, i.FileMTimeNs"
            f" FROM {_IMAGE_HIERARCHY} WHERE {column} = ?"
            " ORDER BY se.SeriesNumber, i.SeriesInstanceUID, i.InstanceNumber, i.Filename", (uid,))

    def files_for_series(self, series_uid: str) -> list[str]:
        """Absolute paths of a series' files, ordered by InstanceNumber."""
        rows = self._rows("SELECT Filename FROM Images WHERE SeriesInstanceUID = ? ORDER BY InstanceNumber, Filename",
                          (series_uid,))
        return [self.absolute_path(row[0]) for row in rows]

    def files_for_uid(self, uid: str) -> list[str]:
        """Absolute paths of every file under a UID of any level (patient key, study, series, instance)."""
        return [self.absolute_path(row["Filename"]) for row in self._image_rows_for_uid(uid)]

    def series_for_uid(self, uid: str) -> list[str]:
        """Series UIDs under a UID of any level."""
        level = self.level_of(uid)
        if level == "patient":
            sql = ("SELECT se.SeriesInstanceUID FROM {h} WHERE p.PatientUID = ?"
                   " ORDER BY st.StudyDate, st.StudyInstanceUID, se.SeriesNumber")
        elif level == "study":
            sql = "SELECT se.SeriesInstanceUID FROM {h} WHERE st.StudyInstanceUID = ? ORDER BY se.SeriesNumber"
        elif level == "series":
            return [uid]
        elif level == "instance":
            sql = "SELECT SeriesInstanceUID FROM Images WHERE SOPInstanceUID = ?"
        else:
            return []
        return [row[0] for row in self._rows(sql.format(h=_HIERARCHY), (uid,))]

    def instance_for_file(self, path: str | os.PathLike) -> str | None:
        row = self._conn().execute("SELECT SOPInstanceUID FROM Images WHERE Filename = ?",
                                   (self._lookup_filename(path),)).fetchone()
        return row[0] if row else None

    def file_for_instance(self, sop_uid: str) -> str | None:
        row = self._conn().execute("SELECT Filename FROM Images WHERE SOPInstanceUID = ?", (sop_uid,)).fetchone()
        return self.absolute_path(row[0]) if row else None

    def show(self, uid: str) -> dict[str, Any]:
        """All stored attributes of one patient/study/series/instance (for `show UID`)."""
        level = self.level_of(uid)
        if level is None:
            raise NotFoundError(f"{uid}: no patient, study, series or instance with this UID in {self.folder}")
        if level == "patient":
            item = self.patients(PatientUID=uid)[0]
        elif level == "study":
            item = self.studies(StudyInstanceUID=uid)[0]
        elif level == "series":
            item = self.series(SeriesInstanceUID=uid)[0]
        else:
            item = self.instances(SOPInstanceUID=uid)[0]
            item["Tags"] = self.cached_tags(uid)
        return {"Level": level, **item}

    def cached_tags(self, sop_uid: str) -> dict[str, str]:
        """Every tag value cached for one instance (import-time packed values and later TagCache rows)."""
        tags: dict[str, str] = {}
        packed = self._conn().execute("SELECT TagSetId, Packed FROM tagcache.InstanceTags WHERE SOPInstanceUID = ?",
                                      (sop_uid,)).fetchone()
        if packed is not None:
            tags.update(zip(self._tag_set(packed[0]), unpack_values(packed[1])))
        rows = self._rows("SELECT Tag, Value FROM tagcache.TagCache WHERE SOPInstanceUID = ?", (sop_uid,))
        tags.update({row[0]: row[1] for row in rows})
        return dict(sorted(tags.items()))

    def counts(self) -> dict[str, int]:
        """How many patients, studies, series and instances: one pass over Patients and its kept
        counts (the browser asks after every commit it notices; counting Images grew with them)."""
        row = self._conn().execute("SELECT COUNT(*), COALESCE(SUM(NumberOfStudies), 0), COALESCE(SUM(NumberOfSeries), 0),"
                                   " COALESCE(SUM(NumberOfInstances), 0) FROM Patients").fetchone()
        return dict(zip(("patients", "studies", "series", "instances"), map(int, row)))

    def info(self) -> dict[str, Any]:
        """Facts about the database folder (for `db info`)."""
        connection = self._conn()
        copied = connection.execute("SELECT COUNT(*), COALESCE(SUM(FileSize), 0) FROM Images WHERE Copied = 1").fetchone()
        referenced = connection.execute("SELECT COUNT(*), COALESCE(SUM(FileSize), 0) FROM Images WHERE Copied = 0").fetchone()
        tags = connection.execute("SELECT COUNT(*) FROM tagcache.TagCache").fetchone()[0]
        packed = connection.execute("SELECT COUNT(*) FROM tagcache.InstanceTags").fetchone()[0]
        sizes = {name: (self.folder / name).stat().st_size if (self.folder / name).exists() else 0
                 for name in (DATABASE_FILE, TAGCACHE_FILE)}
        return {
            "folder": str(self.folder),
            "schema_version": SCHEMA_VERSION,
            "temporary": self.is_temporary,
            **self.counts(),
            "copied_instances": copied[0], "copied_bytes": copied[1],
            "referenced_instances": referenced[0], "referenced_bytes": referenced[1],
            "tag_cache_entries": tags, "packed_tag_rows": packed,
            "database_file_bytes": sizes[DATABASE_FILE], "tag_cache_file_bytes": sizes[TAGCACHE_FILE],
            "data_version": self.data_version(),
        }

    def data_version(self) -> int:
        """A number that changes whenever any connection (any thread or process) commits a change."""
        return int(self._conn().execute("SELECT Value FROM Generation WHERE Id = 0").fetchone()[0])

    def indexed_files(self, paths: Iterable[str] | None = None) -> dict[str, tuple[int | None, int | None, str]]:
        """Filename (absolute) -> (size, mtime_ns, SOPInstanceUID), for the indexer's unchanged check.

        `paths` (absolute): only those are looked up, through the Filename index: an import of ten
        files costs ten lookups, not a read of every row of a million-instance database.
        """
        if paths is None:
            rows = self._rows("SELECT Filename, FileSize, FileMTimeNs, SOPInstanceUID FROM Images")
            return {self.absolute_path(row[0]): (row[1], row[2], row[3]) for row in rows}
        wanted: dict[str, str] = {}  # stored form -> the absolute path asked for
        for path in paths:
            wanted[path] = path
            wanted.setdefault(self.stored_filename(path, True), path)  # relative inside the folder
        found: dict[str, tuple[int | None, int | None, str]] = {}
        connection = self._conn()
        for chunk in _chunks(list(wanted)):
            marks = ",".join("?" * len(chunk))
            for row in connection.execute("SELECT Filename, FileSize, FileMTimeNs, SOPInstanceUID FROM Images"
                                          f" WHERE Filename IN ({marks})", chunk):
                found[wanted[row[0]]] = (row[1], row[2], row[3])
        return found

    # --- tag cache --------------------------------------------------------------------------
    def file_value(self, path: str | os.PathLike, tag: str) -> str:
        """One tag of one file ('' when absent); served from the TagCache, parsed at most once."""
        from .tagreader import tag_string

        key = os.fspath(path)
        return self.file_values([key], [tag])[key][tag_string(tag)]

    def file_values(self, paths: Iterable[str | os.PathLike], tags: Iterable[str]) -> dict[str, dict[str, str]]:
        """Tags of many files: cache hits from SQLite, misses parsed in one scan and cached."""
        from .tagreader import tag_string

        paths = [os.fspath(p) for p in paths]
        tag_keys = [tag_string(t) for t in tags]
        result: dict[str, dict[str, str]] = {p: {} for p in paths}
        sop_for_path: dict[str, str] = {}
        connection = self._conn()
        for path in paths:
            row = connection.execute("SELECT SOPInstanceUID FROM Images WHERE Filename = ?",
                                     (self._lookup_filename(path),)).fetchone()
            if row:
                sop_for_path[path] = row[0]
        marks = ",".join("?" * len(tag_keys))
        missing: dict[str, list[str]] = {}
        for path in paths:
            sop = sop_for_path.get(path)
            if sop is not None and tag_keys:
                packed = connection.execute("SELECT TagSetId, Packed FROM tagcache.InstanceTags WHERE SOPInstanceUID = ?",
                                            (sop,)).fetchone()
                if packed is not None:
                    positions = self._tag_set(packed[0])
                    values = unpack_values(packed[1])
                    for tag in tag_keys:
                        index = positions.get(tag)
                        if index is not None and index < len(values):
                            result[path][tag] = values[index]
                if all(t in result[path] for t in tag_keys):
                    continue
                for tag, value in connection.execute(
                        f"SELECT Tag, Value FROM tagcache.TagCache WHERE SOPInstanceUID = ? AND Tag IN ({marks})",
                        [sop, *tag_keys]):
                    result[path][tag] = value if value is not None else ""
            absent = [t for t in tag_keys if t not in result[path]]
            if absent:
                missing[path] = absent
        if missing:
            from .indexer import scan_values

            wanted = sorted({t for absent in missing.values() for t in absent})
            scanned = scan_values(list(missing), wanted)
            rows = []
            for path, absent in missing.items():
                values = scanned.get(path, {})
                for tag in absent:
                    result[path][tag] = values.get(tag, "")
                    if path in sop_for_path and path in scanned:
                        rows.append((sop_for_path[path], tag, values.get(tag, "")))
            if rows:
                with self._write() as writer:
                    writer.executemany("INSERT OR REPLACE INTO tagcache.TagCache VALUES (?,?,?)", rows)
        return result

    def cached_value(self, key: str) -> str | None:
        """A value other modules cached (examine results, thumbnail index), or None."""
        row = self._conn().execute("SELECT Value FROM tagcache.ValueCache WHERE Key = ?", (key,)).fetchone()
        return row[0] if row else None

    def store_cached_value(self, key: str, text: str) -> None:
        with self._write() as connection:
            connection.execute("INSERT OR REPLACE INTO tagcache.ValueCache VALUES (?, ?)", (key, text))

    # --- maintenance ------------------------------------------------------------------------
    def file_states(self, *, limit: int | None = None, uid: str | None = None,
                    batch: int = 2000) -> Iterator[tuple[str, str]]:
        """(absolute path, "ok" | "missing" | "changed") of indexed files, in Filename order,
        as they are checked: `db verify` prints while it works. `limit`: the first N files only;
        `uid`: the files under one patient/study/series/instance.

        Rows are read `batch` at a time (keyset on Filename), each in its own short read, so a
        long check never holds a snapshot that keeps SQLite from checkpointing a listener's writes.
        """
        if uid is not None:
            rows = sorted((row["Filename"], row["FileSize"], row["FileMTimeNs"])
                          for row in self._image_rows_for_uid(uid))
            chunks: Iterable[list[Any]] = [rows[:limit] if limit is not None else rows]
        else:
            def read() -> Iterator[list[Any]]:
                last, left = "", limit
                while left is None or left > 0:
                    size = batch if left is None else min(batch, left)
                    page = self._rows("SELECT Filename, FileSize, FileMTimeNs FROM Images WHERE Filename > ?"
                                      " ORDER BY Filename LIMIT ?", (last, size))
                    if not page:
                        return
                    yield page
                    last = page[-1][0]
                    left = None if left is None else left - len(page)
            chunks = read()
        for page in chunks:
            for filename, size, mtime_ns in page:
                path = self.absolute_path(filename)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    yield path, "missing"
                    continue
                except OSError as error:
                    logger.warning("Cannot stat %s: %s", path, error)
                    yield path, "missing"
                    continue
                yield path, "ok" if (stat.st_size == size and stat.st_mtime_ns == mtime_ns) else "changed"

    def verify(self, repair: bool = False) -> VerifyReport:
        """Report entries whose file is gone or changed (size/mtime); `repair` removes the gone ones."""
        report = VerifyReport()
        gone: list[str] = []
        for path, (size, mtime_ns, sop) in self.indexed_files().items():
            report.checked += 1
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                report.missing.append(path)
                gone.append(sop)
                continue
            except OSError as error:
                logger.warning("Cannot stat %s: %s", path, error)
                report.missing.append(path)
                gone.append(sop)
                continue
            if stat.st_size != size or stat.st_mtime_ns != mtime_ns:
                report.changed.append(path)
        if repair and report.changed:
            gone.extend(self._reindex_changed(report))
        if repair and gone:
            with self._write() as connection:
                self._delete_instances(connection, gone)
                self._delete_orphans(connection)
            report.removed = len(gone)
        report.unindexed, report.partial = self.folder_leftovers()
        if repair and (report.unindexed or report.partial):
            from .indexer import reconcile

            summary = reconcile(self, report.unindexed, report.partial)
            report.recovered, report.partial_removed = summary.indexed, summary.partial_removed
        return report

    def folder_leftovers(self) -> tuple[list[str], list[str]]:
        """Files under dicom/ that the index lacks (a listener or a copy killed between writing a
        file and committing its row, or a disk that filled up in between), and temporary files
        (.part) that no running process is still writing. Both absolute, sorted."""
        root = str(self.images_folder)
        if not os.path.isdir(root):
            return [], []
        indexed = set(self.indexed_files())
        unindexed, partial = [], []
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if name.endswith(PARTIAL_SUFFIX):
                    if partial_is_stale(path):
                        partial.append(path)
                elif path not in indexed:
                    unindexed.append(path)
        return sorted(unindexed), sorted(partial)

    def _reindex_changed(self, report: VerifyReport) -> list[str]:
        """Index changed files again; returns SOP UIDs of entries whose file is no longer a readable instance."""
        from .indexer import index_files

        copied = {self.absolute_path(row[0]) for row in self._rows("SELECT Filename FROM Images WHERE Copied = 1")}
        unusable: list[str] = []
        for flag in (False, True):
            paths = [p for p in report.changed if (p in copied) == flag]
            if not paths:
                continue
            summary = index_files(self, paths, copied=flag)
            report.reindexed += summary.indexed + summary.updated + summary.relinked
            bad = {p for p, _ in summary.errors}
            if summary.skipped:
                bad.update(p for p in paths if self.instance_for_file(p) is not None and not _is_dicom_now(p))
            unusable.extend(sop for p in bad if (sop := self.instance_for_file(p)) is not None)
        return unusable

    def vacuum(self) -> None:
        """Compact both SQLite files (and drop cached values of instances no longer indexed)."""
        with self._write() as connection:
            connection.execute("DELETE FROM tagcache.TagCache WHERE SOPInstanceUID NOT IN (SELECT SOPInstanceUID FROM Images)")
            connection.execute("DELETE FROM tagcache.InstanceTags WHERE SOPInstanceUID NOT IN (SELECT SOPInstanceUID FROM Images)")
        with self._write_lock:
            connection = self._conn()
            connection.execute("VACUUM main")
            connection.execute("VACUUM tagcache")
        if self._text_index:
            # VACUUM may renumber the rowids of Studies and Series (no INTEGER PRIMARY KEY), which
            # the substring indexes point at: read them again from the tables
            with self._write() as connection:
                for _, _, _, fts in _TEXT_INDEXES.values():
                    connection.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
        with self._write_lock:
            connection = self._conn()
            connection.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")
            connection.execute("PRAGMA tagcache.wal_checkpoint(TRUNCATE)")


PARTIAL_SUFFIX = ".part"
_PARTIAL_OWNER = re.compile(r"\.(\d+)(?:-\d+)?\.part$")
# a temporary file untouched this long is stale even when its writer's process id is alive again
# (a reused id); no writer keeps one open without writing for anywhere near this long
PARTIAL_MAX_AGE = 3600.0


def partial_name(final_name: str) -> str:
    """The hidden temporary name a file is written under before its rename: it carries the
    writer's process id, so a later start or `db verify` can tell a dead writer's leftovers."""
    return f".{final_name}.{os.getpid()}-{threading.get_ident()}{PARTIAL_SUFFIX}"


def partial_is_stale(path: str) -> bool:
    """A .part file whose writer is gone (its process id is not running), that is older than
    PARTIAL_MAX_AGE, or that does not name its writer (an older version's)."""
    match = _PARTIAL_OWNER.search(os.path.basename(path))
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False  # renamed or removed meanwhile: its writer finished
    if match is None or age > PARTIAL_MAX_AGE:
        return True
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _os_reason(error: OSError) -> str:
    """An OSError as a reason: 'no space left on device' named plainly (the user must free space)."""
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    return error.strerror or str(error)


def _is_dicom_now(path: str) -> bool:
    from .indexer import scan_values

    return bool(scan_values([path], [DATABASE_TAGS["SOPInstanceUID"]]))


_SEPARATOR = "\x1e"  # ASCII record separator: never part of a decoded DICOM text value in practice


def pack_values(values: list[str]) -> str:
    """Values as one string: separator-joined (fast), or JSON when a value holds the separator."""
    joined = _SEPARATOR.join(values)
    if joined.count(_SEPARATOR) == len(values) - 1:
        return _SEPARATOR + joined
    return json.dumps(values, ensure_ascii=False)


def unpack_values(packed: str) -> list[str]:
    if packed.startswith(_SEPARATOR):
        return packed[1:].split(_SEPARATOR)
    return json.loads(packed)


class _Batch:
    """Per-transaction state of store_instances: prefetched rows, so each file costs one INSERT."""

    def __init__(self, connection: sqlite3.Connection, records: Sequence[InstanceRecord], database: DICOMDatabase,
                 copied: bool = False):
        self.connection = connection
        self.database = database
        self.timestamp = _now()
        self.upserted: set[str] = set()
        self.replaced = False
        # whose counts finish() settles: series written or losing instances, and the studies and
        # patients a series or study moved away from
        self.touched_series: set[str] = set()
        self.touched_studies: set[str] = set()
        self.touched_patients: set[int] = set()
        self.old_series: dict[str, str] = {}  # SOP Instance UID -> series of its existing row
        self.existing: dict[str, tuple[str, int | None, int | None]] = {}
        self.owner: dict[str, str] = {}
        self.packed: list[tuple[str, int, str]] = []
        self.images: list[tuple] = []
        self.copies: list[Path] = []
        self.replace_duplicates = False
        sops = [r.values.get(DATABASE_TAGS["SOPInstanceUID"], "") for r in records]
        names = [r.path for r in records]
        if copied:  # files of the database folder are stored by relative path
            names += [database.stored_filename(r.path, True) for r in records]
        for chunk in _chunks(sops):
            marks = ",".join("?" * len(chunk))
            for row in connection.execute("SELECT SOPInstanceUID, Filename, FileSize, FileMTimeNs, SeriesInstanceUID"
                                          f" FROM Images WHERE SOPInstanceUID IN ({marks})", chunk):
                self.existing[row[0]] = (row[1], row[2], row[3])
                self.old_series[row[0]] = row[4]
        for chunk in _chunks(names):
            marks = ",".join("?" * len(chunk))
            for row in connection.execute(f"SELECT Filename, SOPInstanceUID FROM Images WHERE Filename IN ({marks})",
                                          chunk):
                self.owner[row[0]] = row[1]

    def note_moves(self, series: str, study: str, patient_uid: int) -> None:
        """Before a series is upserted: remember the study and patient it (or its study) leaves."""
        self.touched_series.add(series)
        row = self.connection.execute("SELECT StudyInstanceUID FROM Series WHERE SeriesInstanceUID = ?",
                                      (series,)).fetchone()
        if row is not None and row[0] != study:
            self.touched_studies.add(row[0])
        row = self.connection.execute("SELECT PatientsUID FROM Studies WHERE StudyInstanceUID = ?", (study,)).fetchone()
        if row is not None and row[0] != patient_uid:
            self.touched_patients.add(row[0])

    def add_tags(self, sop: str, values: dict[str, str]) -> None:
        tags = tuple(values)
        self.packed.append((sop, self.database._tag_set_id(self.connection, tags), pack_values(list(values.values()))))

    def finish(self) -> None:
        if self.images:
            self.connection.executemany(
                "INSERT OR REPLACE INTO Images (SOPInstanceUID, Filename, SeriesInstanceUID, InsertTimestamp,"
                " SOPClassUID, InstanceNumber, NumberOfFrames, Copied, FileSize, FileMTimeNs, TransferSyntaxUID,"
                " PixelDataOffset, PixelDataLength) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", self.images)
        if self.packed:
            self.connection.executemany("INSERT OR REPLACE INTO tagcache.InstanceTags VALUES (?,?,?)", self.packed)
        self.database._refresh_counts(self.connection, self.touched_series, self.touched_studies,
                                      self.touched_patients)


_STUDY_COUNTS = (
    "NumberOfSeries = (SELECT COUNT(*) FROM Series se WHERE se.StudyInstanceUID = Studies.StudyInstanceUID),"
    " NumberOfInstances = (SELECT COALESCE(SUM(se.NumberOfInstances), 0) FROM Series se"
    "   WHERE se.StudyInstanceUID = Studies.StudyInstanceUID),"
    " ModalitiesInStudy = COALESCE((SELECT group_concat(m, '\\') FROM (SELECT DISTINCT se.Modality AS m FROM Series se"
    "   WHERE se.StudyInstanceUID = Studies.StudyInstanceUID AND se.Modality != '' ORDER BY m)), '')")
_PATIENT_COUNTS = (
    "NumberOfStudies = (SELECT COUNT(*) FROM Studies st WHERE st.PatientsUID = Patients.UID),"
    " NumberOfSeries = (SELECT COALESCE(SUM(st.NumberOfSeries), 0) FROM Studies st WHERE st.PatientsUID = Patients.UID),"
    " NumberOfInstances = (SELECT COALESCE(SUM(st.NumberOfInstances), 0) FROM Studies st"
    "   WHERE st.PatientsUID = Patients.UID),"
    " LastStudyDate = (SELECT MAX(st.StudyDate) FROM Studies st WHERE st.PatientsUID = Patients.UID)")


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


_HIERARCHY = ("Series se JOIN Studies st ON st.StudyInstanceUID = se.StudyInstanceUID"
              " JOIN Patients p ON p.UID = st.PatientsUID")
_IMAGE_HIERARCHY = ("Images i JOIN Series se ON se.SeriesInstanceUID = i.SeriesInstanceUID"
                    " JOIN Studies st ON st.StudyInstanceUID = se.StudyInstanceUID"
                    " JOIN Patients p ON p.UID = st.PatientsUID")

_LEVELS = ("patients", "studies", "series", "instances")
_TABLES = ("Patients p", "Studies st", "Series se", "Images i")
_UP_JOINS = {1: "st.PatientsUID = p.UID", 2: "se.StudyInstanceUID = st.StudyInstanceUID",
             3: "i.SeriesInstanceUID = se.SeriesInstanceUID"}
# level -> (its column naming the parent, the parent's key column)
_PARENT_LINK = {1: ("st.PatientsUID", "p.UID"), 2: ("se.StudyInstanceUID", "st.StudyInstanceUID"),
                3: ("i.SeriesInstanceUID", "se.SeriesInstanceUID")}
_KEY_COLUMNS = ("p.PatientUID", "st.StudyInstanceUID", "se.SeriesInstanceUID", "i.SOPInstanceUID")
_KEY_FIELDS = ("PatientUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
# a missing SeriesNumber/InstanceNumber sorts first, as NULL did, yet compares in a row value
_NO_NUMBER = -(2 ** 62)
# each level's ordering terms (the indexes of schema.sql); a level's rows sort by its ancestors' first
_ORDER_TERMS = (("p.PatientsName COLLATE NOCASE", "p.PatientID", "p.PatientUID"),
                ("st.StudyDate", "st.StudyTime", "st.StudyInstanceUID"),
                (f"IFNULL(se.SeriesNumber, {_NO_NUMBER})", "se.SeriesInstanceUID"),
                (f"IFNULL(i.InstanceNumber, {_NO_NUMBER})", "i.Filename"))
# the patient's ordering terms as Studies holds them (schema.sql: PatientOrderName...)
_STUDY_ORDER_COPIES = {"p.PatientsName COLLATE NOCASE": "st.PatientOrderName COLLATE NOCASE",
                       "p.PatientID": "st.PatientOrderID", "p.PatientUID": "st.PatientOrderUID"}
_ORDER_FIELDS = {"p.PatientsName COLLATE NOCASE": "PatientName", "p.PatientID": "PatientID", "p.PatientUID": "PatientUID",
                 "st.StudyDate": "StudyDate", "st.StudyTime": "StudyTime", "st.StudyInstanceUID": "StudyInstanceUID"}
_SELECT = (
    "p.PatientUID, p.PatientID, p.PatientsName AS PatientName, p.PatientsBirthDate AS PatientBirthDate,"
    " p.PatientsSex AS PatientSex, p.NumberOfStudies, p.NumberOfSeries, p.NumberOfInstances, p.LastStudyDate",
    "st.StudyInstanceUID, st.StudyID, st.StudyDate, st.StudyTime, st.StudyDescription, st.AccessionNumber,"
    " COALESCE(st.ModalitiesInStudy, '') AS ModalitiesInStudy, st.NumberOfSeries, st.NumberOfInstances,"
    " p.PatientUID, p.PatientID, p.PatientsName AS PatientName",
    "se.SeriesInstanceUID, se.SeriesNumber, se.Modality, se.SeriesDescription, se.BodyPartExamined,"
    " se.SeriesDate, se.SeriesTime, se.FrameOfReferenceUID, se.NumberOfInstances, se.NumberOfFrames,"
    " se.StudyInstanceUID, p.PatientUID, p.PatientID, p.PatientsName AS PatientName",
    "i.SOPInstanceUID, i.SOPClassUID, i.InstanceNumber, i.Filename, i.TransferSyntaxUID,"
    " i.PixelDataOffset, i.PixelDataLength, i.NumberOfFrames, i.FileSize, i.Copied, i.SeriesInstanceUID,"
    " se.SeriesNumber, se.Modality, se.StudyInstanceUID, p.PatientUID, p.PatientID, p.PatientsName AS PatientName",
)


def _tables(top: int, bottom: int, cross: bool = False, images_last: bool = False) -> str:
    """The tables of levels top..bottom (0 patients ... 3 images) joined child to parent
    (`cross`: in this order, parents first; `images_last`: Images after the others)."""
    text = _TABLES[top]
    for level in range(top + 1, bottom + 1):
        join = " CROSS JOIN " if cross or (images_last and level == 3) else " JOIN "
        text += f"{join}{_TABLES[level]} ON {_UP_JOINS[level]}"
    return text


def _order(depth: int) -> list[str]:
    return [term for level in range(depth + 1) for term in _ORDER_TERMS[level]]


# Filter keyword -> (level 0-3, SQL column, kind): "text" substring/wildcard case-insensitive,
# "exact" exact or wildcard, "nocase" exact ignoring case, "date" a date or DICOM range.
_FILTER_COLUMNS: dict[str, tuple[int, str, str]] = {
    "PatientUID": (0, "p.PatientUID", "exact"),
    "PatientName": (0, "p.PatientsName", "text"),
    "PatientID": (0, "p.PatientID", "exact"),
    "StudyInstanceUID": (1, "st.StudyInstanceUID", "exact"),
    "StudyDescription": (1, "st.StudyDescription", "text"),
    "AccessionNumber": (1, "st.AccessionNumber", "exact"),
    "StudyDate": (1, "st.StudyDate", "date"),
    "SeriesInstanceUID": (2, "se.SeriesInstanceUID", "exact"),
    "SeriesDescription": (2, "se.SeriesDescription", "text"),
    "Modality": (2, "se.Modality", "nocase"),
    "BodyPartExamined": (2, "se.BodyPartExamined", "exact"),
    "SOPInstanceUID": (3, "i.SOPInstanceUID", "exact"),
}
FILTER_KEYWORDS = tuple(_FILTER_COLUMNS) + ("date_from", "date_to", "patient_words")


def _wildcard_to_like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


@dataclass
class _TextProbe:
    """A substring one trigram index (`fts`) can find: the rows whose text holds the LIKE
    pattern are among those holding every run of 3 or more literal characters of it (`runs`),
    and among those holding every trigram of `tokens`."""
    fts: str
    runs: list[str]
    tokens: list[str]

    def candidates(self, tokens: Sequence[str] | None = None) -> tuple[str, list[Any]]:
        """The rowids the index finds: for the pattern's runs, or for some of its trigrams (more
        rows: the row test decides). A MATCH of phrases, not the index's LIKE, which reads each
        row's text again from the table to test it."""
        return f"SELECT rowid FROM {self.fts} WHERE {self.fts} MATCH ?", [_phrases(self.runs if tokens is None
                                                                                      else tokens)]


def _phrases(texts: Sequence[str]) -> str:
    """An FTS5 query: every text as a phrase (with the trigram tokenizer: its trigrams in a row)."""
    return " AND ".join('"' + text.replace('"', '""') + '"' for text in texts)


@dataclass
class _Condition:
    """One filter as SQL: `sql` lets SQLite start from an index when `indexed`; `walk_sql` is the
    same test written so that no index is used for it (a walk in the list's order checks it row
    by row, and must not be turned into a search by the filter's index)."""
    level: int
    sql: str
    params: list[Any]
    indexed: bool
    walk_sql: str
    walk_params: list[Any]
    #: a substring the trigram indexes find: the row's key column and the indexes to ask (the row
    #: matches when any of them finds it, and `walk_sql` holds)
    rowid: str = ""
    probes: list[_TextProbe] = field(default_factory=list)
    #: set by `narrow`: the substring's candidates come from its rare trigrams
    sparse: bool = False

    def narrow(self, tokens: list[list[str]]) -> None:
        """Find the rows from these trigrams (one list per probe) instead of the whole pattern."""
        self.sql, self.params = self._from_index(tokens)
        self.sparse = True

    def _from_index(self, tokens: list[list[str]] | None = None) -> tuple[str, list[Any]]:
        parts = [probe.candidates(None if tokens is None else tokens[number])
                 for number, probe in enumerate(self.probes)]
        union = " UNION ".join(sql for sql, _ in parts)
        return (f"{self.rowid} IN ({union}) AND ({self.walk_sql})",
                [value for _, values in parts for value in values] + self.walk_params)


def _substring_run(pattern: str) -> bool:
    """A LIKE pattern the trigram index can find: three characters in a row without a wildcard,
    and no escaped character (FTS5 is not given a LIKE with an ESCAPE clause)."""
    if "\\" in pattern:
        return False
    return any(len(run) >= 3 for run in re.split(r"[%_]", pattern))


def _runs(pattern: str) -> list[str]:
    """A LIKE pattern's runs of 3 or more literal characters (`_substring_run`)."""
    return [run for run in re.split(r"[%_]", pattern) if len(run) >= 3]


def _trigrams(runs: Sequence[str]) -> list[str]:
    """The distinct trigrams of the runs."""
    tokens: dict[str, str] = {}
    for run in runs:
        for start in range(len(run) - 2):
            tokens.setdefault(run[start:start + 3].lower(), run[start:start + 3])
    return list(tokens.values())


def _text_condition(level: int, columns: Sequence[str], pattern: str, text_index: bool) -> _Condition:
    """`pattern` (LIKE, case-insensitive) in any of `columns` of one level: through their
    trigram indexes when each can find it, else tested on every row read."""
    test = " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for column in columns)
    test = test if len(columns) == 1 else f"({test})"
    test_params = [pattern] * len(columns)
    if not (text_index and _substring_run(pattern) and all(column in _TEXT_INDEXES for column in columns)):
        return _Condition(level, test, test_params, False, test, test_params)
    rowid = f"{columns[0].split('.')[0]}.{_TEXT_INDEXES[columns[0]][1]}"
    runs = _runs(pattern)
    probes = [_TextProbe(_TEXT_INDEXES[column][3], runs, _trigrams(runs)) for column in columns]
    condition = _Condition(level, "", [], True, test, test_params, rowid, probes)
    # the trigram index finds the candidates (it folds case beyond ASCII, so it may find more);
    # LIKE on the row keeps the meaning the filter always had
    condition.sql, condition.params = condition._from_index()
    return condition


def _conditions(filters: dict[str, Any], text_index: bool = False) -> list[_Condition]:
    """The DICOM-keyword filters as SQL conditions.

    Names and descriptions match case-insensitive substrings; IDs, UIDs and codes match exactly;
    both accept DICOM wildcards * and ? (a pattern without a leading wildcard uses the column's
    index; with `text_index`, a substring of three characters or more uses the trigram index).
    StudyDate takes a DICOM range ("20200101-20201231", "-20201231", "20200101-") or
    date_from/date_to. `patient_words` (the browser's search box): each word, taken literally,
    in the patient's name or ID (case-insensitive; `^` reads as a space).
    """
    conditions: list[_Condition] = []

    def add(level: int, sql: str, params: list[Any], indexed: bool, walk_sql: str | None = None,
            walk_params: list[Any] | None = None) -> None:
        conditions.append(_Condition(level, sql, params, indexed, walk_sql or sql,
                                     params if walk_params is None else walk_params))

    filters = {k: v for k, v in filters.items() if v not in (None, "")}
    date_from = filters.pop("date_from", None)
    date_to = filters.pop("date_to", None)
    words = filters.pop("patient_words", None)
    if words:
        text = words if isinstance(words, str) else " ".join(words)
        for word in text.replace("^", " ").split():
            conditions.append(_text_condition(0, ("p.PatientsName", "p.PatientID"), _like_word(word), text_index))
    for key, value in filters.items():
        if key not in _FILTER_COLUMNS:
            raise ValueError(f"unknown filter {key!r}; known: {', '.join(FILTER_KEYWORDS)}")
        level, column, kind = _FILTER_COLUMNS[key]
        text = str(value)
        wildcard = "*" in text or "?" in text
        prefix = not text.startswith(("*", "?"))  # a pattern with a fixed start: the index finds it
        if kind == "date":
            if "-" in text:
                low, high = text.split("-", 1)
                date_from = low or date_from
                date_to = high or date_to
            else:
                add(level, f"{column} = ?", [text], True, f"+{column} = ?")
        elif kind == "text":
            pattern = _wildcard_to_like(text) if wildcard else f"%{_wildcard_to_like(text)}%"
            like = f"{column} LIKE ? ESCAPE '\\'"
            if wildcard and prefix:
                add(level, like, [pattern], True, f"+{like}")
            else:
                conditions.append(_text_condition(level, (column,), pattern, text_index))
        elif wildcard:
            add(level, f"{column} LIKE ? ESCAPE '\\'", [_wildcard_to_like(text)], prefix,
                f"+{column} LIKE ? ESCAPE '\\'")
        elif kind == "nocase":
            add(level, f"{column} = ? COLLATE NOCASE", [text], True, f"+{column} = ? COLLATE NOCASE")
        else:
            add(level, f"{column} = ?", [text], True, f"+{column} = ?")
    # a range is one condition (each bound alone finds most of the table, together a month);
    # each bound closed (':' follows the digits, '' is no date): SQLite, which has no statistics
    # of the dates, takes a one-sided range for most of the table and may scan instead
    low = str(date_from).replace("-", "") if date_from else ""
    high = str(date_to).replace("-", "") if date_to else ""
    if low or high:
        bounds = [low, high] if low and high else [low] if low else [high]
        sql = ("st.StudyDate >= ? AND st.StudyDate <= ? AND st.StudyDate < ':'" if low and high else
               "st.StudyDate >= ? AND st.StudyDate < ':'" if low else "st.StudyDate > '' AND st.StudyDate <= ?")
        add(1, sql, bounds, True, sql.replace("st.StudyDate", "+st.StudyDate"))
    return conditions


# --- the browser's patient pages ------------------------------------------------------------------
# Read-only queries for the GUI's patient table (widgets/models.py): one page in the table's own
# order, so the browser never holds or sorts every patient. Names (or IDs) present come first,
# walked along their index in either direction; blank ones follow as a second run ("blank"
# pages), as a user expects "(no name)" rows at the end whatever the direction.

#: patient_page orders: the terms of the keyset (an index's order), the column whose blank rows
#: come last, and the row fields holding the terms' values
_PAGE_ORDERS = {
    "name": (("p.PatientsName COLLATE NOCASE", "p.PatientID", "p.PatientUID"), "p.PatientsName",
             ("PatientName", "PatientID", "PatientUID")),
    "id": (("p.PatientID", "p.UID"), "p.PatientID", ("PatientID", "RowKey")),
}
PAGE_ORDERS = tuple(_PAGE_ORDERS)


def _like_word(word: str) -> str:
    return f"%{word.replace(chr(92), chr(92) * 2).replace('%', chr(92) + '%').replace('_', chr(92) + '_')}%"


def patient_page(database: DICOMDatabase, *, limit: int = 200, after: dict[str, Any] | None = None,
                 order: str = "name", descending: bool = False, blank: bool = False,
                 words: Sequence[str] = (), date_from: str = "", date_to: str = "", modality: str = "",
                 description_words: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One page of patients for the browser, continuing after the row `after` (keyset).

    `order` "name" (PatientsNameIndex) or "id" (PatientsIDIndex), `descending` walks it backwards;
    `blank` False lists the patients whose name (id) is present, True those where it is blank
    (ordered by the remaining terms). `words`: each must be in the name or ID (case-insensitive;
    `^` reads as a space): the API's `patient_words` filter, found as `patients()` finds it (its
    rare trigrams' rows read from the trigram indexes and sorted; when every trigram is common,
    checked on the way). A study filter (`date_from`/`date_to` YYYYMMDD, `modality`,
    `description_words`, each in the study's or in one series' description) keeps patients with
    a study that passes, checked per patient as the index is walked: a page costs the rows read
    until it is full, which grows with the database only when few patients match.
    Rows are `patients()`'s plus `RowKey` (the table's row id, the id order's tie-break).
    """
    sql, params = patient_page_query(database, limit=limit, after=after, order=order, descending=descending,
                                     blank=blank, words=words, date_from=date_from, date_to=date_to,
                                     modality=modality, description_words=description_words)
    return [dict(row) for row in database._conn().execute(sql, params)]


def patient_page_query(database: DICOMDatabase, *, limit: int = 200, after: dict[str, Any] | None = None,
                       order: str = "name", descending: bool = False, blank: bool = False,
                       words: Sequence[str] = (), date_from: str = "", date_to: str = "", modality: str = "",
                       description_words: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """The SQL and parameters `patient_page` runs (tests read their query plans)."""
    if order not in _PAGE_ORDERS:
        raise ValueError(f"unknown order {order!r}; known: {', '.join(PAGE_ORDERS)}")
    terms, column, fields = _PAGE_ORDERS[order]
    if blank:
        terms, fields = terms[1:], fields[1:]
    conditions = _conditions({"patient_words": tuple(words)}, database._text_index)
    database._narrow_substrings(conditions)
    # the rows a sparse word's index finds are sorted (the unary + keeps SQLite from walking the
    # order's index instead); otherwise the order's index is walked and the words tested
    sort = any(condition.sparse for condition in conditions)
    plus = "+" if sort else ""
    where: list[str] = [f"({plus}{column} IS NULL OR {plus}{column} = '')" if blank else f"{plus}{terms[0]} > ''"]
    params: list[Any] = []
    for condition in conditions:
        where.append(condition.sql if sort and condition.sparse else condition.walk_sql)
        params.extend(condition.params if sort and condition.sparse else condition.walk_params)
    study_where: list[str] = []
    if date_from:
        study_where.append("+st.StudyDate >= ? AND +st.StudyDate < ':'")
        params.append(date_from)
    if date_to:
        study_where.append("+st.StudyDate > '' AND +st.StudyDate <= ?")
        params.append(date_to)
    series_where: list[str] = []
    if modality:
        series_where.append("+se.Modality = ? COLLATE NOCASE")
        params.append(modality)
    if description_words:
        study_text = " AND ".join("st.StudyDescription LIKE ? ESCAPE '\\'" for _ in description_words)
        series_text = " AND ".join("se.SeriesDescription LIKE ? ESCAPE '\\'" for _ in description_words)
        series_where.append(f"(({study_text}) OR ({series_text}))")
        params.extend(_like_word(word) for word in description_words)
        params.extend(_like_word(word) for word in description_words)
    if series_where:
        study_where.append("EXISTS (SELECT 1 FROM Series se WHERE se.StudyInstanceUID = st.StudyInstanceUID"
                           f" AND {' AND '.join(series_where)})")
    # (the unary + keeps SQLite on the patient's own studies and series, through their parent
    # indexes, rather than walking every study of a date or series of a modality per patient)
    if study_where:
        where.append(f"EXISTS (SELECT 1 FROM Studies st WHERE st.PatientsUID = p.UID AND {' AND '.join(study_where)})")
    keys = [f"+{terms[0]}", *terms[1:]] if sort else list(terms)
    if after is not None:
        where.append(f"({', '.join(keys)}) {'<' if descending else '>'} ({', '.join('?' * len(terms))})")
        params.extend(after.get(field) for field in fields)
    direction = " DESC" if descending else ""
    sql = (f"SELECT {_SELECT[0]}, p.UID AS RowKey FROM Patients p WHERE {' AND '.join(where)}"
           f" ORDER BY {', '.join(term + direction for term in keys)} LIMIT ?")
    params.append(max(0, int(limit)))
    return sql, params


def modalities(database: DICOMDatabase) -> list[str]:
    """The distinct modalities of the series, one index seek each (SeriesModalityIndex), not a scan."""
    sql = ("WITH RECURSIVE m(value) AS (SELECT MIN(Modality COLLATE NOCASE) FROM Series WHERE Modality > ''"
           " UNION ALL SELECT (SELECT MIN(Modality COLLATE NOCASE) FROM Series"
           " WHERE Modality COLLATE NOCASE > m.value) FROM m WHERE m.value IS NOT NULL)"
           " SELECT value FROM m WHERE value IS NOT NULL")
    return [str(row[0]) for row in database._conn().execute(sql)]
