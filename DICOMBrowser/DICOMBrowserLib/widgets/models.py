"""Table models over database queries: rows cached once per query, filtered and sorted in memory.

Why not QStandardItemModel: with 10,000 patients it would build 10,000 x columns item objects
up front. These models keep the query's list of dicts, answer `data()` only for rows the view
paints, filter through a precomputed lower-case "haystack" per row, and expose rows to the
view in batches (`canFetchMore`/`fetchMore`) so the first paint never waits for all of them.
"""
from __future__ import annotations

import dataclasses
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable

from PySide6 import QtCore, QtGui

from .verdict import details_text, readable_name, series_label

logger = logging.getLogger(__name__)

UID_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
ROW_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2
SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 3
BATCH = 1000


@dataclass(frozen=True)
class Column:
    """One column: its header, the row key it shows, and how to sort it."""

    header: str
    key: str
    numeric: bool = False
    searchable: bool = False
    blank: str = ""  # shown (greyed) when the value is empty, e.g. "(no name)"


def dicom_date(text: str) -> str:
    """'20260101' -> '2026-01-01' (display only; anything else is shown as stored)."""
    text = (text or "").strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def person_name(text: str) -> str:
    """'Doe^John' -> 'Doe, John', as people read a name."""
    text = (text or "").split("=")[0]  # alphabetic group only; ideographic groups stay in the tooltip
    parts = [p for p in text.split("^") if p]
    if len(parts) >= 2:
        return f"{parts[0]}, {' '.join(parts[1:])}"
    return parts[0] if parts else ""


def _is_blank(value: Any) -> bool:
    """No value (None or only spaces); a number 0 is a value (series number 0 sorts first)."""
    return value is None or str(value).strip() == ""


def _number(value: Any) -> float:
    try:
        return float(str(value).split("\\")[0])
    except (TypeError, ValueError):
        return float("inf")


class RowTableModel(QtCore.QAbstractTableModel):
    """Rows from `fetch()` (a list of dicts), filtered by a text, sorted by a column."""

    formatters: dict[str, Callable[[str], str]] = {}

    def __init__(self, columns: list[Column], uid_key: str, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.columns = columns
        self.uid_key = uid_key
        self._fetch: Callable[[], list[dict]] | None = None
        self._rows: list[dict] = []
        self._haystacks: list[str] = []
        self._visible: list[int] = []  # indexes into _rows, filtered and sorted
        self._exposed = 0  # rows the view knows about (batches)
        self._filter = ""
        self._allowed: set[str] | None = None  # UIDs the side filters let through (None: all)
        self._sort: tuple[int, QtCore.Qt.SortOrder] | None = None
        self.decorations: dict[str, Any] = {}  # uid -> icon/colour for column 0
        self.tooltips: dict[str, str] = {}  # uid -> tooltip override

    # --- data source -----------------------------------------------------------------
    def set_source(self, fetch: Callable[[], list[dict]] | None) -> None:
        """Use a new query (e.g. studies of another patient) and reload."""
        self._fetch = fetch
        self.reload()

    def reload(self) -> None:
        """Run the query again (after an import, a delete, or a database change)."""
        rows = self._fetch() if self._fetch is not None else []
        searchable = [c.key for c in self.columns if c.searchable] or [c.key for c in self.columns]
        self.beginResetModel()
        self._rows = rows
        self._haystacks = [" ".join(str(row.get(k, "") or "") for k in searchable).lower().replace("^", " ")
                           for row in rows]
        self._apply()
        self.endResetModel()

    def set_filter(self, text: str) -> None:
        """Keep only rows whose searchable columns contain every word of `text` (case-insensitive)."""
        text = text.strip().lower().replace("^", " ")
        if text == self._filter:
            return
        self.beginResetModel()
        self._filter = text
        self._apply()
        self.endResetModel()

    def set_allowed(self, uids: set[str] | None) -> None:
        """Show only rows whose UID is in `uids` (the date/modality/description filters); None: all."""
        if uids is None and self._allowed is None:
            return
        self.beginResetModel()
        self._allowed = None if uids is None else set(uids)
        self._apply()
        self.endResetModel()

    def _apply(self) -> None:
        words = self._filter.split()
        if words:
            haystacks = self._haystacks
            visible = [i for i, h in enumerate(haystacks) if all(w in h for w in words)]
        else:
            visible = list(range(len(self._rows)))
        if self._allowed is not None:
            allowed, key_name = self._allowed, self.uid_key
            visible = [i for i in visible if str(self._rows[i].get(key_name, "")) in allowed]
        if self._sort is not None and 0 <= self._sort[0] < len(self.columns):
            column, order = self._sort
            # empty values (a nameless patient, a study without date) stay last in both directions
            key_name = self.columns[column].key
            filled = [i for i in visible if not _is_blank(self._rows[i].get(key_name))]
            empty = [i for i in visible if _is_blank(self._rows[i].get(key_name))]
            key = self._sort_key(self.columns[column])
            filled.sort(key=lambda i: key(self._rows[i]), reverse=order == QtCore.Qt.SortOrder.DescendingOrder)
            visible = filled + empty
        self._visible = visible
        self._exposed = min(len(visible), BATCH)

    def _sort_key(self, column: Column) -> Callable[[dict], Any]:
        if column.numeric:
            return lambda row: _number(row.get(column.key, ""))
        return lambda row: str(row.get(column.key, "") or "").lower()

    # --- access ------------------------------------------------------------------------
    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def filtered_count(self) -> int:
        return len(self._visible)

    def row_dict(self, row: int) -> dict:
        return self._rows[self._visible[row]]

    def uid(self, row: int) -> str:
        return str(self.row_dict(row).get(self.uid_key, ""))

    def row_of_uid(self, uid: str) -> int:
        """Row of a UID among the filtered rows, exposing more batches if needed; -1 if filtered out."""
        for position, index in enumerate(self._visible):
            if str(self._rows[index].get(self.uid_key, "")) == uid:
                while position >= self._exposed and self.canFetchMore(QtCore.QModelIndex()):
                    self.fetchMore(QtCore.QModelIndex())
                return position
        return -1

    def uids(self) -> list[str]:
        return [str(self._rows[i].get(self.uid_key, "")) for i in self._visible]

    # --- Qt model interface ------------------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else self._exposed

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def canFetchMore(self, parent: QtCore.QModelIndex) -> bool:
        return not parent.isValid() and self._exposed < len(self._visible)

    def fetchMore(self, parent: QtCore.QModelIndex) -> None:
        if parent.isValid():
            return
        more = min(BATCH, len(self._visible) - self._exposed)
        if more <= 0:
            return
        self.beginInsertRows(QtCore.QModelIndex(), self._exposed, self._exposed + more - 1)
        self._exposed += more
        self.endInsertRows()

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.columns[section].header
        return None

    def display_text(self, row: dict, column: Column) -> str:
        value = row.get(column.key, "")
        value = "" if value is None else str(value)
        formatter = self.formatters.get(column.key)
        return formatter(value) if formatter else value

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= self._exposed:
            return None
        row = self.row_dict(index.row())
        column = self.columns[index.column()]
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.display_text(row, column) or column.blank
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and column.blank and not self.display_text(row, column):
            return QtGui.QBrush(QtGui.QColor(140, 140, 140))
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            uid = str(row.get(self.uid_key, ""))
            return self.tooltips.get(uid) or f"{self.uid_key}: {uid}"
        if role == UID_ROLE:
            return str(row.get(self.uid_key, ""))
        if role == ROW_ROLE:
            return row
        if role == SORT_ROLE:
            return self._sort_key(column)(row)
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        return None

    def sort(self, column: int, order: QtCore.Qt.SortOrder = QtCore.Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self._sort = (column, order) if column >= 0 else None
        self._apply()
        self.layoutChanged.emit()


class PatientModel(RowTableModel):
    formatters = {"PatientName": person_name, "PatientBirthDate": dicom_date}

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__([
            Column("Patient name", "PatientName", searchable=True, blank="(no name)"),
            Column("Patient ID", "PatientID", searchable=True),
            Column("Birth date", "PatientBirthDate"),
            Column("Sex", "PatientSex"),
            Column("Studies", "NumberOfStudies", numeric=True),
        ], uid_key="PatientUID", parent=parent)


@dataclass(frozen=True)
class PatientQuery:
    """What the patient table asks the database for: its order and its filters (see
    database.patient_page); `sort_key` names a column the database cannot page (sorted in memory)."""

    order: str = "name"
    descending: bool = False
    words: tuple[str, ...] = ()
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    description_words: tuple[str, ...] = ()
    sort_key: str = ""
    numeric: bool = False

    def page_filters(self) -> dict[str, Any]:
        return {"words": self.words, "date_from": self.date_from, "date_to": self.date_to,
                "modality": self.modality, "description_words": self.description_words}


#: rows per page of the patient table; enough to fill a tall table, small enough to read in ~1 ms
PAGE = 200
#: columns the database cannot page (birth date, sex, studies) are sorted in memory up to this many
#: patients (one read of every row on the worker thread); above it the sort is refused, name order kept
SORT_IN_MEMORY_LIMIT = 20000
PAGED_ORDERS = {"PatientName": "name", "PatientID": "id"}


@dataclass
class PageResult:
    """A worker's answer: rows in display order (each marked `_blank` when it is in the blank run),
    whether the list ended, the number of patients in the database, and a refused sort."""

    rows: list[dict]
    complete: bool
    total: int
    refused: str = ""


def read_patient_rows(database: Any, query: PatientQuery, after: dict | None, count: int,
                      stop_at: str = "") -> PageResult:
    """`count` rows after `after` (None: from the start): the present names (ids) first, then the
    blank ones. Runs on the model's worker thread; `stop_at`: keep reading pages until that
    patient is among them (a patient to select further down the list)."""
    from ..database import patient_page

    total = int(database.counts()["patients"])
    if query.sort_key:
        if total > SORT_IN_MEMORY_LIMIT:
            refused = query.sort_key
            query = PatientQuery(words=query.words, date_from=query.date_from, date_to=query.date_to,
                                 modality=query.modality, description_words=query.description_words)
            result = read_patient_rows(database, query, after, count, stop_at)
            result.refused = refused
            return result
        if after is not None:
            return PageResult([], True, total)
        rows = [dict(row, _blank=False) for row in patient_page(database, limit=total + 1, **query.page_filters())]
        rows += [dict(row, _blank=True) for row in
                 patient_page(database, limit=total + 1, blank=True, **query.page_filters())]
        filled = [row for row in rows if not _is_blank(row.get(query.sort_key))]
        empty = [row for row in rows if _is_blank(row.get(query.sort_key))]
        if query.numeric:
            filled.sort(key=lambda row: _number(row.get(query.sort_key)), reverse=query.descending)
        else:
            filled.sort(key=lambda row: str(row.get(query.sort_key) or "").lower(), reverse=query.descending)
        return PageResult(filled + empty, True, total)
    rows: list[dict] = []
    blank = bool(after and after.get("_blank"))
    while True:
        wanted = max(count - len(rows), PAGE if stop_at else 0)
        page = patient_page(database, limit=wanted, after=after, order=query.order, descending=query.descending,
                            blank=blank, **query.page_filters())
        rows += [dict(row, _blank=blank) for row in page]
        if len(page) == wanted:
            after = rows[-1]
            if stop_at and all(row["PatientUID"] != stop_at for row in page):
                continue
            return PageResult(rows, False, total)
        if blank:
            return PageResult(rows, True, total)
        blank, after = True, None  # the named run ended: the blank run follows


class PagedPatientModel(PatientModel):
    """The patient table, read from the database a page at a time on a worker thread.

    Why: holding every patient cost 0.1-0.35 s of SQL per (re)load at 10,000 patients, on the GUI
    thread. Here the first page is shown when it arrives, `fetchMore` (the view scrolling to the
    end) reads the next one by keyset, and the name/ID order, the search words and the study
    filters are the query's (database.patient_page). After a commit, `refresh` re-reads only as
    many rows as are loaded and changes nothing when they are the same. Only one read runs at a
    time; a read of a query replaced meanwhile (a keystroke, a database switch) is dropped.
    Signals: `pagesRead` after every read (first page, further page, re-read; the panel selects
    again what a reset dropped), `sortRefused(column key)`.
    """

    pagesRead = QtCore.Signal()
    sortRefused = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None):
        from .workers import JobRunner

        super().__init__(parent)
        self.jobs = JobRunner(max_threads=1, parent=self)
        self.jobs.finished.connect(self._read_done)
        self.jobs.failed.connect(self._read_failed)
        self.database: Any = None
        self.query = PatientQuery()
        self._generation = 0
        self._busy = False
        self._complete = True
        self._total = 0
        self._waiting: list[tuple[str, str]] = []  # reads asked for while one ran: ("more"|"refresh"|"find", uid)
        self.reads = 0  # pages and refreshes read (tests and benchmarks)

    # --- what to show ----------------------------------------------------------------------------
    def set_database(self, database: Any) -> None:
        """Show another database's patients (from the first page)."""
        self.database = database
        self._restart()

    def set_query(self, **changes: Any) -> None:
        """Change the order or the filters; the rows shown stay until the new first page arrives."""
        query = dataclasses.replace(self.query, **changes)
        if query != self.query:
            self.query = query
            self._restart()

    def set_source(self, fetch: Callable[[], list[dict]] | None) -> None:
        raise TypeError("the patient table reads pages from its database: use set_database")

    def reload(self) -> None:
        self.refresh()

    def set_filter(self, text: str) -> None:
        """Keep patients whose name or ID contains every word of `text` (case-insensitive): the
        database's `patient_words` filter, in the query (read from the trigram indexes when a
        word has a rare trigram)."""
        self.set_query(words=tuple(text.strip().lower().replace("^", " ").split()))

    def set_allowed(self, uids: set[str] | None) -> None:
        raise TypeError("the patient table filters in its query: use set_query")

    def sort(self, column: int, order: QtCore.Qt.SortOrder = QtCore.Qt.SortOrder.AscendingOrder) -> None:
        """Name and ID are paged by their index in either direction; other columns sort in memory
        for small databases (SORT_IN_MEMORY_LIMIT), else `sortRefused` and name order."""
        if not 0 <= column < len(self.columns):
            return
        key = self.columns[column].key
        descending = order == QtCore.Qt.SortOrder.DescendingOrder
        if key in PAGED_ORDERS:
            self.set_query(order=PAGED_ORDERS[key], descending=descending, sort_key="", numeric=False)
        else:
            self.set_query(order="name", descending=descending, sort_key=key, numeric=self.columns[column].numeric)

    def refresh(self) -> None:
        """Re-read the rows loaded (at least a page) on the thread; apply them only where they changed."""
        self._ask("refresh")

    def find(self, uid: str) -> None:
        """Read on until the patient `uid` is loaded (then `rowsAppended`), unless it is already."""
        if self.row_of_uid(uid) < 0 and not self._complete:
            self._ask("find", uid)

    # --- state -------------------------------------------------------------------------------------
    @property
    def total_count(self) -> int:
        """Patients in the database (counted with each read)."""
        return self._total

    @property
    def complete(self) -> bool:
        """Every row of the query is loaded."""
        return self._complete

    @property
    def busy(self) -> bool:
        return self._busy

    def canFetchMore(self, parent: QtCore.QModelIndex) -> bool:
        return not parent.isValid() and not self._complete and self.database is not None

    def fetchMore(self, parent: QtCore.QModelIndex) -> None:
        if not parent.isValid() and self.canFetchMore(parent):
            self._ask("more")

    # --- reading on the thread -----------------------------------------------------------------------
    def _restart(self) -> None:
        self._generation += 1
        self.jobs.clear()
        self._busy = False
        self._waiting.clear()
        self._complete = False
        self._submit("first", None, PAGE)

    def _ask(self, kind: str, uid: str = "") -> None:
        if self.database is None:
            return
        if self._busy:
            if (kind, uid) not in self._waiting:
                self._waiting.append((kind, uid))
            return
        if kind == "more":
            self._submit("more", self._rows[-1] if self._rows else None, PAGE)
        elif kind == "find":
            self._submit("find", self._rows[-1] if self._rows else None, PAGE, uid)
        else:
            self._submit("refresh", None, max(len(self._rows), PAGE))

    def _submit(self, kind: str, after: dict | None, count: int, stop_at: str = "") -> None:
        if self.database is None:
            return
        database, query = self.database, self.query

        def read() -> PageResult:
            try:
                return read_patient_rows(database, query, after, count, stop_at)
            except sqlite3.Error as error:  # e.g. the database was closed by a switch meanwhile
                raise RuntimeError(f"reading patients of {database.folder}: {error}") from error

        self._busy = True
        self.jobs.submit(f"{kind}:{self._generation}:{len(self._rows)}:{stop_at}", read)

    def _read_done(self, key: str, result: PageResult) -> None:
        kind, generation = key.split(":")[:2]
        if int(generation) != self._generation:
            return
        self._busy = False
        self.reads += 1
        self._total = result.total
        if kind == "first":
            self._replace(result.rows)
            self._complete = result.complete
            if result.refused:
                self.sortRefused.emit(result.refused)
        elif kind == "refresh":
            self._apply_refresh(result.rows)
            self._complete = result.complete
        else:
            self._complete = result.complete
            known = {str(row.get(self.uid_key)) for row in self._rows}
            new = [row for row in result.rows if str(row.get(self.uid_key)) not in known]
            if new:
                self.beginInsertRows(QtCore.QModelIndex(), len(self._rows), len(self._rows) + len(new) - 1)
                self._rows.extend(new)
                self._index_rows()
                self.endInsertRows()
        self._next()
        self.pagesRead.emit()

    def _read_failed(self, key: str, message: str) -> None:
        if int(key.split(":")[1]) == self._generation:
            self._busy = False
            self._complete = True  # no endless retries; Refresh asks again
            logger.warning("Patients could not be read: %s", message)
            self.pagesRead.emit()

    def _next(self) -> None:
        if self._waiting:
            kind, uid = self._waiting.pop(0)
            self._ask(kind, uid)

    def _index_rows(self) -> None:
        self._visible = list(range(len(self._rows)))
        self._exposed = len(self._rows)

    def _replace(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self._rows = rows
        self._index_rows()
        self.endResetModel()

    def _apply_refresh(self, rows: list[dict]) -> bool:
        """The re-read rows in place: nothing when equal, `dataChanged` when only values changed,
        else a reset (the panel then selects again). True when the rows changed."""
        if rows == self._rows:
            return False
        if [row.get(self.uid_key) for row in rows] == [row.get(self.uid_key) for row in self._rows]:
            changed = [number for number, (new, old) in enumerate(zip(rows, self._rows)) if new != old]
            self._rows = rows
            for number in changed:
                self.dataChanged.emit(self.index(number, 0), self.index(number, len(self.columns) - 1))
            return False
        self._replace(rows)
        return True


class StudyModel(RowTableModel):
    formatters = {"StudyDate": dicom_date}

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__([
            Column("Study date", "StudyDate", searchable=True, blank="(no date)"),
            Column("Description", "StudyDescription", searchable=True, blank="(no description)"),
            Column("Modalities", "ModalitiesInStudy", searchable=True),
            Column("Accession", "AccessionNumber", searchable=True),
            Column("Series", "NumberOfSeries", numeric=True),
            Column("Instances", "NumberOfInstances", numeric=True),
        ], uid_key="StudyInstanceUID", parent=parent)


class SeriesModel(RowTableModel):
    """Series rows plus a geometry verdict column, filled in as verdicts arrive."""

    GEOMETRY_KEY = "_geometry"

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__([
            Column("#", "SeriesNumber", numeric=True),
            Column("Modality", "Modality", searchable=True),
            Column("Description", "SeriesDescription", searchable=True, blank="(no description)"),
            Column("Body part", "BodyPartExamined", searchable=True),
            Column("Instances", "NumberOfInstances", numeric=True),
            Column("Geometry", self.GEOMETRY_KEY),
        ], uid_key="SeriesInstanceUID", parent=parent)
        self.verdicts: dict[str, tuple[str, str, bool]] = {}  # uid -> (verdict, details, is_problem)

    def set_verdict(self, uid: str, verdict: str, details: str, problem: bool) -> None:
        self.verdicts[uid] = (verdict, details, problem)
        row = self.row_of_uid(uid)
        if row >= 0:
            column = len(self.columns) - 1
            index = self.index(row, column)
            self.dataChanged.emit(index, index)

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        column = self.columns[index.column()] if index.isValid() else None
        if column is not None and column.key == self.GEOMETRY_KEY and index.row() < self._exposed:
            uid = self.uid(index.row())
            verdict = self.verdicts.get(uid)
            if role == QtCore.Qt.ItemDataRole.DisplayRole:
                return verdict[0] if verdict else "…"
            if role == QtCore.Qt.ItemDataRole.ToolTipRole:
                return verdict[1] if verdict else "geometry not examined yet"
            if role == QtCore.Qt.ItemDataRole.ForegroundRole and verdict and verdict[2]:
                return QtGui.QBrush(QtGui.QColor(180, 60, 0))
        return super().data(index, role)


class LoadableModel(QtCore.QAbstractTableModel):
    """The loadables of the selected series: checkable, named as a user reads them, warnings highlighted.

    The plugin's own name, the plugin and its confidence are in the columns an advanced user
    shows (the browser hides them by default); the whole text is in the detail pane.
    """

    HEADERS = ["Load", "Loadable", "Series", "Warning", "Plugin", "Confidence"]
    ADVANCED = (4, 5)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.loadables: list[Any] = []

    def set_loadables(self, loadables: list[Any]) -> None:
        self.beginResetModel()
        self.loadables = list(loadables)
        self.endResetModel()

    def selected(self) -> list[Any]:
        return [loadable for loadable in self.loadables if loadable.selected]

    def rowCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.loadables)

    def columnCount(self, parent: QtCore.QModelIndex = QtCore.QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if orientation == QtCore.Qt.Orientation.Horizontal and role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def flags(self, index: QtCore.QModelIndex) -> QtCore.Qt.ItemFlag:
        flags = QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0:
            flags |= QtCore.Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QtCore.QModelIndex, role: int = QtCore.Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        loadable = self.loadables[index.row()]
        column = index.column()
        if role == QtCore.Qt.ItemDataRole.CheckStateRole and column == 0:
            return QtCore.Qt.CheckState.Checked if loadable.selected else QtCore.Qt.CheckState.Unchecked
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if column == 1:
                return readable_name(loadable)
            if column == 2:
                return series_label(loadable)
            if column == 3:
                return (loadable.warning or "").split(". ")[0]
            if column == 4:
                return loadable.plugin.replace("DICOM", "").replace("Plugin", "")
            if column == 5:
                return f"{float(loadable.confidence):.2f}"
            return ""
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            return details_text(loadable, self.loadables)
        if role == QtCore.Qt.ItemDataRole.BackgroundRole and loadable.warning:
            return QtGui.QBrush(QtGui.QColor(255, 236, 179))
        return None

    def setData(self, index: QtCore.QModelIndex, value: Any, role: int = QtCore.Qt.ItemDataRole.EditRole) -> bool:
        if index.isValid() and index.column() == 0 and role == QtCore.Qt.ItemDataRole.CheckStateRole:
            checked = value in (QtCore.Qt.CheckState.Checked, QtCore.Qt.CheckState.Checked.value, 2, True)
            self.loadables[index.row()].selected = bool(checked)
            self.dataChanged.emit(index, index)
            return True
        return False
